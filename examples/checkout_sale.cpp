// The checkout flash sale: see checkout_sale.hpp. Users shop concurrently over Cap'n
// Proto, entering at every member; their orders' sagas run on the orders' owners, which
// hold lines on the SKUs' owners over the peer links and pay through the gateway process.
#include "examples/checkout_sale.hpp"

#include <kj/async-io.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "client/client.hpp"
#include "protocol/order_wire.hpp"
#include "harness/checkout_cluster.hpp"
#include "harness/node_process.hpp"
#include "harness/processes.hpp"

namespace holdfast {
namespace {

using steady = std::chrono::steady_clock;
using json = nlohmann::json;

double ms_since(steady::time_point t) { return std::chrono::duration<double, std::milli>(steady::now() - t).count(); }

bool paid(order_state s) {
  return s == order_state::captured || s == order_state::shipped || s == order_state::delivered;
}

struct shop {
  shop(const checkout_demo_options& options, kj::Timer& t) : o(options), timer(t), rng(options.seed) {}
  const checkout_demo_options& o;
  kj::Timer& timer;
  std::vector<kj::Own<client>> clients;
  std::mt19937_64 rng;
  std::string hot;
  // This run's stamp, in every user's name: users (and so their idempotency keys and
  // order ids) of an earlier run on the same --data are never this run's.
  std::string run;
  std::vector<std::string> tail;
  steady::time_point start = steady::now();

  int64_t next_user = 0, users_done = 0;
  std::vector<double> checkout_ms;
  std::map<std::string, std::string> orders;  // order id -> user
  int64_t changed_at_checkout = 0, nothing_left = 0, twice_same = 0, twice_other = 0;
  int64_t cancels_asked = 0, cancels_accepted = 0, cancels_too_late = 0;
  int64_t errors = 0;
  std::vector<std::string> error_samples;

  double dice() { return std::uniform_real_distribution<double>(0, 1)(rng); }
  client& via(int64_t user, int64_t hop = 0) { return *clients[static_cast<size_t>(user + hop) % clients.size()]; }
  void error(const std::string& what) {
    ++errors;
    if (error_samples.size() < 5) error_samples.push_back(what);
  }

  // One user: fill the cart, check out (sold-out lines taken out and tried again once),
  // perhaps check out twice with the same key, perhaps cancel.
  kj::Promise<void> shopper() {
    if (next_user >= o.users) return kj::READY_NOW;
    auto i = next_user++;
    return one_user(i).then([this] {
      ++users_done;
      return shopper();
    });
  }

  kj::Promise<void> one_user(int64_t i) {
    auto user = "user-" + run + "-" + std::to_string(i);
    std::vector<cart_op> adds;
    int64_t hot_qty = dice() < o.over_limit_share ? o.limit_per_user + 1
                                                  : 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(o.limit_per_user));
    if (dice() < 0.85) adds.push_back({cart_op_kind::add, user, hot, hot_qty, 0, 0, {}});
    for (int k = 0, n = static_cast<int>(rng() % 3); k < n && !tail.empty(); ++k)
      adds.push_back({cart_op_kind::add, user, tail[rng() % tail.size()], 1, 0, 0, {}});
    if (adds.empty()) adds.push_back({cart_op_kind::add, user, hot, 1, 0, 0, {}});
    auto& c = via(i);
    return c.cart_ops(adds).then([this, i, user](std::vector<cart_result> rs) -> kj::Promise<void> {
      for (auto& r : rs)
        if (r.status != code::ok) error("cart add for " + user + ": " + to_string(r.status) + " " + r.message);
      return check_out(i, user, 0);
    });
  }

  kj::Promise<void> check_out(int64_t i, std::string user, int round) {
    auto key = "key-" + user;
    auto t0 = steady::now();
    // The checkout enters at another member than the cart's: it finds the cart's owner.
    return via(i, 1).checkout(user, "tok_visa", key).then([this, i, user, key, round, t0](checkout_result r) -> kj::Promise<void> {
      checkout_ms.push_back(ms_since(t0));
      if (r.status != code::ok) {
        error("checkout of " + user + ": " + to_string(r.status) + " " + r.message);
        return kj::READY_NOW;
      }
      if (r.empty_cart) {
        ++nothing_left;
        return kj::READY_NOW;
      }
      if (!r.changed.empty()) {
        // Sold out (or repriced) since the cart was filled: nothing was ordered. The
        // user takes those lines out and checks out what is left, once.
        ++changed_at_checkout;
        if (round > 0) return kj::READY_NOW;
        std::vector<cart_op> removes;
        for (auto& l : r.changed) removes.push_back({cart_op_kind::remove, user, l.sku, 0, 0, 0, {}});
        return via(i).cart_ops(removes).then([this, i, user](std::vector<cart_result>) {
          return check_out(i, user, 1);
        });
      }
      auto order = r.order.order_id;
      orders[order] = user;
      kj::Promise<void> then = kj::READY_NOW;
      if (dice() < o.twice_share) {
        // The user's browser retried: the same key is the same order, never a second one.
        then = via(i, 2).checkout(user, "tok_visa", key).then([this, order](checkout_result again) {
          (again.status == code::ok && again.order.order_id == order ? twice_same : twice_other) += 1;
        });
      }
      if (dice() < o.cancel_share) {
        then = then.then([this, i, order] {
          return timer.afterDelay((rng() % 200) * kj::MILLISECONDS).then([this, i, order] {
            ++cancels_asked;
            return via(i, 2).order_ops({order_op_on(order_op_kind::cancel, order)}).then([this](std::vector<order_result> rs) {
              auto& r = rs.at(0);
              if (r.status == code::ok) ++cancels_accepted;
              else if (r.status == code::wrong_state) ++cancels_too_late;
              else error("cancel: " + std::string(to_string(r.status)) + " " + r.message);
            });
          });
        });
      }
      return then;
    });
  }

  // Every order's record, asked of the members in batches.
  kj::Promise<std::map<std::string, order_record>> records(std::vector<std::string> ids) {
    std::vector<kj::Promise<std::vector<order_result>>> calls;
    const size_t chunk = 200;
    for (size_t at = 0, k = 0; at < ids.size(); at += chunk, ++k) {
      std::vector<order_op> ops;
      for (size_t j = at; j < std::min(ids.size(), at + chunk); ++j) ops.push_back(order_op_on(order_op_kind::show, ids[j]));
      calls.push_back(clients[k % clients.size()]->order_ops(ops));
    }
    auto builder = kj::heapArrayBuilder<kj::Promise<std::vector<order_result>>>(calls.size());
    for (auto& c : calls) builder.add(kj::mv(c));
    return kj::joinPromises(builder.finish()).then([](kj::Array<std::vector<order_result>> pages) {
      std::map<std::string, order_record> out;
      for (auto& page : pages)
        for (auto& r : page)
          if (r.status == code::ok) out[r.order.order_id] = r.order;
      return out;
    });
  }
};

struct outcome_counts {
  int64_t paid = 0, shipped = 0, delivered = 0, cancelled = 0, refunded = 0, open = 0;
  std::map<std::string, int64_t> why;  // cancelled/refunded orders by reason
  std::vector<double> settle_ms;       // placed -> paid
};

std::string reason_class(const order_record& r) {
  auto& s = r.reason;
  if (s.find("shipping failed") != std::string::npos) return "shipping failed: refunded, restocked";
  if (s.find("cancelled by the user") != std::string::npos) return "cancelled by the user";
  if (s.find("declined") != std::string::npos) return "payment declined";
  if (s.find("limit_reached") != std::string::npos) return "per-user limit reached";
  if (s.find("out_of_stock") != std::string::npos || s.find("sold_out") != std::string::npos)
    return "sold out between checkout and hold";
  if (s.find("found no answer") != std::string::npos) return "a step found no answer (gave up)";
  return "other: " + s.substr(0, 80);
}

outcome_counts count(const std::map<std::string, order_record>& final) {
  outcome_counts c;
  for (auto& [id, r] : final) {
    if (r.phase != saga_phase::done) {
      ++c.open;
      continue;
    }
    switch (r.state) {
      case order_state::captured: ++c.paid; break;
      case order_state::shipped: ++c.paid, ++c.shipped; break;
      case order_state::delivered: ++c.paid, ++c.delivered; break;
      case order_state::cancelled: ++c.cancelled; break;
      case order_state::refunded: ++c.refunded; break;
      default: ++c.open; break;
    }
    if (r.state == order_state::cancelled || r.state == order_state::refunded) c.why[reason_class(r)]++;
  }
  return c;
}

}  // namespace

int run_checkout_demo(const checkout_demo_options& o) {
  std::string dir = o.data_dir;
  bool temporary = false;
  if (dir.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "holdfast-demo-XXXXXX").string();
    dir = mkdtemp(tmpl.data());
    remove_on_interrupt(dir);  // an interrupted run leaves no data behind
    temporary = true;
  }
  std::printf("starting a local %d-node cluster (mutual TLS between nodes) and the payment gateway in %s ...\n",
              o.nodes, dir.c_str());
  std::fflush(stdout);
  checkout_cluster_options co;
  co.nodes = o.nodes;
  co.client_certs = true;  // shoppers hold the client role; only the catalog is made as admin
  auto rate = [](double r) { return std::to_string(r); };
  co.gateway_args = {"--seed", std::to_string(o.seed), "--decline-rate", rate(o.decline_rate),
                     "--lost-reply-rate", rate(o.lost_reply_rate), "--duplicate-webhook-rate",
                     rate(o.duplicate_webhook_rate), "--reorder-webhook-rate", rate(o.reorder_webhook_rate),
                     "--webhook-delay-max-ms", std::to_string(o.webhook_delay_max_ms), "--latency-ms",
                     std::to_string(o.gateway_latency_ms)};
  auto cluster = std::make_unique<checkout_cluster>(self_executable(), dir, co);
  auto& nodes = cluster->nodes();
  int status = 0;
  {
    blocking_client admin(nodes.address(nodes.ids().front()), nodes.client_config(10'000));
    auto& io = admin.io();
    shop s(o, io.provider->getTimer());
    auto stamp = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
    s.hot = "flash-sneaker-" + stamp;
    s.run = stamp;
    std::vector<sku_op> ops{{sku_op_kind::create, s.hot, o.hot_stock, 12'900, "Flash sneaker", o.limit_per_user}};
    for (int i = 0; i < o.tail_skus; ++i) {
      s.tail.push_back("tail-" + stamp + "-" + std::to_string(i));
      ops.push_back({sku_op_kind::create, s.tail.back(), 20, 500 + 10 * (i % 50), "Long-tail item " + std::to_string(i), 0});
    }
    for (size_t at = 0; at < ops.size(); at += 500) {
      std::vector<sku_op> chunk(ops.begin() + static_cast<long>(at), ops.begin() + static_cast<long>(std::min(ops.size(), at + 500)));
      for (auto& r : admin.create_skus(chunk))
        if (r.status != code::ok) {
          std::fprintf(stderr, "cannot create the catalog: %s %s\n", to_string(r.status), r.message.c_str());
          return 2;
        }
    }
    for (auto id : nodes.ids())
      for (int k = 0; k < 4; ++k)
        s.clients.push_back(client::connect(*io.provider, nodes.address(id), cluster->shop_config(15'000)).wait(io.waitScope));
    // The shoppers' connections hold the client role: a restock through one is refused (of
    // an SKU that does not exist: the role is checked first, and a broken check changes no stock).
    auto probe = s.clients.front()->sku({sku_op_kind::restock, s.hot + "-probe", 1, 0, {}}).wait(io.waitScope);
    bool shoppers_client_role = probe.status == code::forbidden;
    std::printf("shoppers connect with TLS and the client role (certificate client:%s: a restock through it is %s); "
                "the catalog was made as admin\n",
                co.shop_name.c_str(), shoppers_client_role ? "forbidden" : "NOT REFUSED");
    std::printf("%d nodes; hot SKU %s: %lld units, %lld per user; %d long-tail SKUs of 20; %lld users, %d at once\n"
                "gateway: %.0f%% declined, %.0f%% replies lost, %.0f%% webhooks twice, %.0f%% reordered, up to %lld ms late\n",
                o.nodes, s.hot.c_str(), (long long)o.hot_stock, (long long)o.limit_per_user, o.tail_skus,
                (long long)o.users, o.concurrency, o.decline_rate * 100, o.lost_reply_rate * 100,
                o.duplicate_webhook_rate * 100, o.reorder_webhook_rate * 100, (long long)o.webhook_delay_max_ms);
    std::fflush(stdout);

    // The shopping.
    s.start = steady::now();
    bool shopping = true;
    std::function<kj::Promise<void>()> progress = [&]() -> kj::Promise<void> {
      return s.timer.afterDelay(1000 * kj::MILLISECONDS).then([&]() -> kj::Promise<void> {
        if (!shopping) return kj::NEVER_DONE;
        std::printf("  %5.1fs  users done %5lld/%lld  orders placed %5zu  sold out at checkout %4lld  errors %lld\n",
                    ms_since(s.start) / 1000, (long long)s.users_done, (long long)o.users, s.orders.size(),
                    (long long)s.changed_at_checkout, (long long)s.errors);
        std::fflush(stdout);
        return progress();
      });
    };
    auto builder = kj::heapArrayBuilder<kj::Promise<void>>(static_cast<size_t>(o.concurrency));
    for (int k = 0; k < o.concurrency; ++k) builder.add(s.shopper().eagerlyEvaluate(nullptr));
    auto shop_done = kj::joinPromises(builder.finish()).then([&] { shopping = false; });
    shop_done.exclusiveJoin(progress()).wait(io.waitScope);
    double shop_ms = ms_since(s.start);
    std::printf("shopping over after %.1fs: %zu orders placed; waiting for every saga to end ...\n", shop_ms / 1000,
                s.orders.size());
    std::fflush(stdout);

    std::vector<std::string> ids;
    for (auto& [id, user] : s.orders) ids.push_back(id);
    auto settle = [&](const char* what) {
      auto deadline = steady::now() + std::chrono::milliseconds(o.settle_timeout_ms);
      auto last_print = steady::now();
      for (;;) {
        auto final = s.records(ids).wait(io.waitScope);
        auto c = count(final);
        bool done = c.open == 0 && final.size() == ids.size();
        if (done || steady::now() > deadline) return final;
        if (ms_since(last_print) > 1000) {
          std::printf("  %5.1fs  %s: %lld orders still running, %lld paid, %lld cancelled, %lld refunded\n",
                      ms_since(s.start) / 1000, what, (long long)c.open, (long long)c.paid, (long long)c.cancelled,
                      (long long)c.refunded);
          std::fflush(stdout);
          last_print = steady::now();
        }
        s.timer.afterDelay(250 * kj::MILLISECONDS).wait(io.waitScope);
      }
    };
    auto final = settle("sagas");
    // Placed to ended (paid, or walked back), before the warehouse touches them.
    std::vector<double> settle_ms;
    for (auto& [id, r] : final)
      if (r.phase == saga_phase::done) settle_ms.push_back(static_cast<double>(r.updated_ms - r.created_ms));
    // The warehouse (the admin role): most paid orders ship (half of those arrive), a few fail to ship.
    std::vector<order_op> warehouse, arrivals;
    for (auto& [id, r] : final) {
      if (r.state != order_state::captured) continue;
      if (s.dice() < o.shipping_failure_share) {
        warehouse.push_back(order_op_on(order_op_kind::shipping_failed, id, "parcel lost in the demo"));
      } else {
        warehouse.push_back(order_op_on(order_op_kind::ship, id));
        if (s.dice() < 0.5) arrivals.push_back(order_op_on(order_op_kind::deliver, id));
      }
    }
    int64_t shipping_failures = 0;
    for (auto* batch : {&warehouse, &arrivals})
      for (size_t at = 0; at < batch->size(); at += 200) {
        std::vector<order_op> chunk(batch->begin() + static_cast<long>(at),
                                    batch->begin() + static_cast<long>(std::min(batch->size(), at + 200)));
        for (auto& op : chunk) shipping_failures += op.kind == order_op_kind::shipping_failed;
        for (auto& r : admin.async().order_ops(chunk).wait(io.waitScope))  // ship, deliver: admin
          if (r.status != code::ok) s.error("warehouse: " + std::string(to_string(r.status)) + " " + r.message);
      }
    // Read again after the warehouse, refunds or not: shipped and delivered count too.
    final = settle(shipping_failures > 0 ? "refunds" : "shipping");
    double total_ms = ms_since(s.start);

    // The witnesses. The gateway's ledger: captures per order.
    ledger_view ledger;
    std::string ledger_error;
    std::thread([&] { cluster->gateway().ledger(ledger, ledger_error); }).join();
    auto outcomes = count(final);
    int64_t captures_wrong = 0;  // paid or refunded orders without exactly one capture, others with any
    for (auto& [id, r] : final) {
      size_t n = ledger.captures.count(id) ? ledger.captures.at(id) : 0;
      bool charged = paid(r.state) || r.state == order_state::refunded;
      if (charged ? n != 1 : n != 0) ++captures_wrong;
    }
    int64_t refunds = 0;
    for (auto& e : ledger.entries) refunds += e.op == payment_op::refund;
    // The books: units of paid orders are what each SKU sold; no user past the limit.
    std::map<std::string, int64_t> sold_by_orders;
    std::map<std::string, int64_t> hot_by_user;
    for (auto& [id, r] : final) {
      if (!paid(r.state)) continue;
      for (auto& l : r.lines) {
        sold_by_orders[l.sku] += l.qty;
        if (l.sku == s.hot) hot_by_user[r.user] += l.qty;
      }
    }
    int64_t limit_violations = 0;
    for (auto& [user, qty] : hot_by_user) limit_violations += qty > o.limit_per_user;
    // Holds of ended orders are released at once; what an order never reached ends by
    // its TTL: wait until nothing is reserved.
    int64_t oversold = 0, books_wrong = 0, reserved_left = 0;
    std::vector<std::string> all_skus{s.hot};
    all_skus.insert(all_skus.end(), s.tail.begin(), s.tail.end());
    auto reserved_now = [&] {
      int64_t n = 0;
      for (auto& sku : all_skus) n += admin.query_sku(sku).sku.reserved;
      return n;
    };
    wait_until([&] { return (reserved_left = reserved_now()) == 0; }, std::chrono::seconds(30));
    int64_t hot_sold = 0;
    for (auto& sku : all_skus) {
      auto q = admin.query_sku(sku).sku;
      int64_t stocked = sku == s.hot ? o.hot_stock : 20;
      if (sku == s.hot) hot_sold = q.sold;
      oversold += std::max<int64_t>(0, q.sold - stocked);
      bool balanced = q.on_hand + q.sold == q.stocked && q.stocked == stocked;
      bool agrees = q.sold == (sold_by_orders.count(sku) ? sold_by_orders.at(sku) : 0);
      if (!balanced || !agrees) ++books_wrong;
    }
    auto hooks = cluster->webhooks();
    std::sort(s.checkout_ms.begin(), s.checkout_ms.end());
    std::sort(settle_ms.begin(), settle_ms.end());
    double p50 = percentile_of_sorted(s.checkout_ms, 0.5), p99 = percentile_of_sorted(s.checkout_ms, 0.99);
    double checkouts_per_s = static_cast<double>(s.checkout_ms.size()) / (shop_ms / 1000);
    bool ok = ledger_error.empty() && ledger.max_captures() <= 1 && captures_wrong == 0 && oversold == 0 &&
              limit_violations == 0 && books_wrong == 0 && outcomes.open == 0 && s.errors == 0 &&
              s.twice_other == 0 && hooks.refused == 0 && reserved_left == 0 &&
              final.size() == ids.size() &&  // every acknowledged order was read back
              shoppers_client_role;
    if (o.json) {
      json why = json::object();
      for (auto& [k, v] : outcomes.why) why[k] = v;
      std::printf("%s\n", json{{"users", o.users}, {"orders", final.size()}, {"paid", outcomes.paid},
                               {"shipped", outcomes.shipped}, {"delivered", outcomes.delivered},
                               {"cancelled", outcomes.cancelled}, {"refunded", outcomes.refunded},
                               {"still_running", outcomes.open}, {"ended_because", why},
                               {"compensations", outcomes.cancelled + outcomes.refunded},
                               {"sold_out_at_checkout", s.changed_at_checkout},
                               {"same_key_same_order", s.twice_same}, {"same_key_other_answer", s.twice_other},
                               {"cancels_accepted", s.cancels_accepted}, {"cancels_too_late", s.cancels_too_late},
                               {"max_captures_per_order", ledger.max_captures()}, {"capture_mismatches", captures_wrong},
                               {"refunds", refunds}, {"hot_sold", hot_sold}, {"hot_stock", o.hot_stock},
                               {"oversold", oversold}, {"limit_violations", limit_violations},
                               {"books_disagree", books_wrong}, {"units_still_held", reserved_left}, {"webhooks_applied", hooks.applied},
                               {"webhook_duplicates_absorbed", hooks.duplicates}, {"webhooks_refused", hooks.refused},
                               {"lost_replies", ledger.stats.lost_replies}, {"checkouts_per_s", checkouts_per_s},
                               {"checkout_p50_ms", p50}, {"checkout_p99_ms", p99},
                               {"order_end_p50_ms", percentile_of_sorted(settle_ms, 0.5)},
                               {"order_end_p99_ms", percentile_of_sorted(settle_ms, 0.99)},
                               {"errors", s.errors}, {"shoppers_client_role", shoppers_client_role}, {"ok", ok}}
                                .dump()
                                .c_str());
    } else {
      std::printf("\n=== checkout flash sale report (%.1fs) ===\n", total_ms / 1000);
      std::printf("  users                         %7lld  (%lld found a line sold out at checkout)\n", (long long)o.users,
                  (long long)s.changed_at_checkout);
      std::printf("  orders placed                 %7zu\n", ids.size());
      if (final.size() != ids.size())
        std::printf("  ORDERS NOT READ BACK          %7zu (acknowledged, but `order show` failed)\n",
                    ids.size() - final.size());
      std::printf("    paid (captured)             %7lld  (%lld shipped, %lld of them delivered)\n",
                  (long long)outcomes.paid, (long long)(outcomes.shipped + outcomes.delivered),
                  (long long)outcomes.delivered);
      std::printf("    cancelled                   %7lld\n", (long long)outcomes.cancelled);
      std::printf("    refunded                    %7lld\n", (long long)outcomes.refunded);
      std::printf("    still running               %7lld  %s\n", (long long)outcomes.open,
                  outcomes.open == 0 ? "(every order ended)" : "(NOT ENDED)");
      std::printf("  compensations run             %7lld  orders walked back:\n",
                  (long long)(outcomes.cancelled + outcomes.refunded));
      for (auto& [k, v] : outcomes.why) std::printf("    %-40s %6lld\n", k.c_str(), (long long)v);
      std::printf("  same key checked out twice    %7lld  (the same order every time: %s)\n",
                  (long long)(s.twice_same + s.twice_other), s.twice_other == 0 ? "yes" : "NO");
      std::printf("  cancels asked                 %7lld  (%lld accepted, %lld too late: payment captured)\n",
                  (long long)s.cancels_asked, (long long)s.cancels_accepted, (long long)s.cancels_too_late);
      std::printf("  captures per order, max       %7zu  (the gateway's ledger; %lld orders charged otherwise than their state says)\n",
                  ledger.max_captures(), (long long)captures_wrong);
      std::printf("  refunds in the ledger         %7lld\n", (long long)refunds);
      std::printf("  hot SKU sold                  %7lld of %lld\n", (long long)hot_sold, (long long)o.hot_stock);
      std::printf("  oversold                      %7lld  %s\n", (long long)oversold,
                  oversold == 0 ? "(none, as promised)" : "(BROKEN PROMISE)");
      std::printf("  per-user limit violations     %7lld\n", (long long)limit_violations);
      std::printf("  books agree with orders       %7s  (every SKU: sold == units of its paid orders)\n",
                  books_wrong == 0 ? "yes" : "NO");
 std::printf("  units still held              %7lld\n", (long long)reserved_left);
      std::printf("  webhooks applied              %7llu  (%llu duplicates absorbed, %llu refused)\n",
                  (unsigned long long)hooks.applied, (unsigned long long)hooks.duplicates,
                  (unsigned long long)hooks.refused);
      std::printf("  gateway replies lost          %7llu  (resolved by key, never charged again)\n",
                  (unsigned long long)ledger.stats.lost_replies);
      std::printf("  checkouts/s                   %7.0f  over %.1fs of shopping\n", checkouts_per_s, shop_ms / 1000);
      std::printf("  checkout latency              p50 %.1f ms, p99 %.1f ms (cart -> durable order)\n", p50, p99);
      std::printf("  order placed to ended         p50 %.0f ms, p99 %.0f ms\n", percentile_of_sorted(settle_ms, 0.5),
                  percentile_of_sorted(settle_ms, 0.99));
      if (!ledger_error.empty()) std::printf("  ledger not read: %s\n", ledger_error.c_str());
      if (s.errors) {
        std::printf("  unexpected answers            %7lld, e.g.:\n", (long long)s.errors);
        for (auto& e : s.error_samples) std::printf("    %s\n", e.c_str());
      }
      std::printf("  verdict                       %s\n", ok ? "every promise held" : "A PROMISE WAS BROKEN");
    }
    status = ok ? 0 : 1;
  }
  cluster.reset();
  if (temporary) std::filesystem::remove_all(dir);
  return status;
}

}  // namespace holdfast
