// Flash sale: 10,000 buyers race for 100 units of one SKU over Cap'n Proto RPC.
// Each buyer tries to reserve one unit; one who gets a hold confirms it (pays), releases
// it (changes their mind) or abandons it (closes the tab: the hold expires). Buyers
// who find the SKU out of stock retry with backoff, so released and expired units are
// sold again. The report checks the promises: nothing oversold, every hold ended.
#include "examples/flash_sale.hpp"

#include <kj/async-io.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>

#include "client/client.hpp"
#include "client/placement.hpp"
#include "harness/local_cluster.hpp"
#include "harness/node_process.hpp"
#include "harness/processes.hpp"

namespace holdfast {
namespace {

using steady = std::chrono::steady_clock;

double ms_since(steady::time_point t) {
  return std::chrono::duration<double, std::milli>(steady::now() - t).count();
}

struct sale {
  sale(const demo_options& options, std::string name, kj::Timer& t)
    : o(options), sku(std::move(name)), run(sku.substr(sku.rfind('-') + 1)), timer(t), rng(options.seed) {}
  const demo_options& o;
  std::string sku;
  // This run's stamp, in every hold id: hold ids are node-wide, so a second run against
  // the same node (--use-node) must not meet the first run's holds (hold_conflict).
  std::string run;
  kj::Timer& timer;
  std::vector<kj::Own<client>> clients;
  std::mt19937_64 rng;
  steady::time_point start = steady::now();
  std::vector<double> reserve_latency_ms;
  int64_t reserve_calls = 0, granted = 0, confirmed = 0, released = 0, late_confirms = 0;
  int64_t refused = 0, errors = 0, gave_up = 0, buyers_done = 0;
  double sold_out_ms = -1;  // when the last unit's confirm came back; -1: never
  std::vector<std::string> abandoned;
  // The long tail: SKUs spread over every node, bought alongside the hot one.
  std::vector<std::string> tail;
  int64_t tail_sold = 0, tail_refused = 0, tail_errors = 0;

  // One long-tail purchase: reserve a unit of a random tail SKU and pay for it.
  kj::Promise<void> tail_buy(int64_t i) {
    if (tail.empty()) return kj::READY_NOW;
    auto& c = *clients[static_cast<size_t>(i + 1) % clients.size()];
    auto sku_name = tail[rng() % tail.size()];
    auto hold_id = "tail-" + run + "-" + std::to_string(i);
    return c.reserve({hold_op_kind::reserve, sku_name, hold_id, 1, 60'000, {}})
      .then([this, &c, hold_id, sku_name](hold_result r) -> kj::Promise<void> {
        if (r.status == code::out_of_stock) {
          ++tail_refused;
          return kj::READY_NOW;
        }
        if (r.status != code::ok) {
          ++tail_errors;
          return kj::READY_NOW;
        }
        return c.confirm(hold_id, sku_name).then([this](hold_result r) {
          (r.status == code::ok ? tail_sold : tail_errors) += 1;
        });
      });
  }

  bool sold_out() const { return confirmed >= o.stock; }

  kj::Promise<void> buyer(int64_t i, int attempt) {
    auto hold_id = "buyer-" + run + "-" + std::to_string(i);
    auto& c = *clients[static_cast<size_t>(i) % clients.size()];
    auto t0 = steady::now();
    hold_op op{hold_op_kind::reserve, sku, hold_id, 1, o.hold_ttl_ms, {}};
    return c.reserve(op).then([this, i, attempt, t0, hold_id, &c](hold_result r)
                                -> kj::Promise<void> {
      reserve_latency_ms.push_back(ms_since(t0));
      ++reserve_calls;
      if (r.status == code::ok) {
        ++granted;
        double dice = std::uniform_real_distribution<double>(0, 1)(rng);
        auto think = timer.afterDelay((5 + rng() % 40) * kj::MILLISECONDS);
        if (dice < o.confirm_share)
          return think.then([this, hold_id, &c] { return c.confirm(hold_id, sku); })
            .then([this](hold_result r) {
              if (r.status == code::ok) {
                if (++confirmed == o.stock) sold_out_ms = ms_since(start);
              } else if (r.status == code::hold_expired) {
                ++late_confirms;
              } else {
                ++errors;
              }
              ++buyers_done;
            });
        if (dice < o.confirm_share + o.release_share)
          return think.then([this, hold_id, &c] { return c.release(hold_id, sku); })
            .then([this](hold_result r) {
              (r.status == code::ok ? released : errors) += 1;
              ++buyers_done;
            });
        abandoned.push_back(hold_id);
        ++buyers_done;
        return kj::READY_NOW;
      }
      if (r.status != code::out_of_stock) {
        ++errors;
        ++buyers_done;
        return kj::READY_NOW;
      }
      ++refused;
      if (sold_out() || attempt + 1 >= o.attempts_max) {
        ++gave_up;
        ++buyers_done;
        return kj::READY_NOW;
      }
      // Exponential backoff with jitter, as a well-behaved client would do.
      auto base_ms = uint64_t{50} << std::min(attempt, 5);
      auto backoff = (base_ms + rng() % base_ms) * kj::MILLISECONDS;
      return timer.afterDelay(backoff).then([this, i, attempt]() -> kj::Promise<void> {
        if (sold_out()) {  // the shop page says so; no call needed
          ++gave_up;
          ++buyers_done;
          return kj::READY_NOW;
        }
        return buyer(i, attempt + 1);
      });
    });
  }

  kj::Promise<void> progress() {
    return timer.afterDelay(500 * kj::MILLISECONDS).then([this]() -> kj::Promise<void> {
      std::printf("  %5.1fs  reserve calls %7lld  holds granted %5lld  confirmed %4lld  "
                  "released %3lld  abandoned %3zu  buyers done %5lld/%lld\n",
                  ms_since(start) / 1000, (long long)reserve_calls, (long long)granted,
                  (long long)confirmed, (long long)released, abandoned.size(),
                  (long long)buyers_done, (long long)o.buyers);
      std::fflush(stdout);
      return progress();
    });
  }
};

}  // namespace

int run_demo(const demo_options& o) {
  std::string data_dir = o.data_dir;
  bool temporary = false;
  std::unique_ptr<node_process> node;
  std::unique_ptr<local_cluster> cluster;
  std::vector<std::string> entries{o.node_address};  // where buyers connect
  if (o.node_address.empty()) {
    if (data_dir.empty()) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "holdfast-demo-XXXXXX").string();
      data_dir = mkdtemp(tmpl.data());
      remove_on_interrupt(data_dir);  // an interrupted run leaves no data behind
      remove_on_interrupt(data_dir + ".log");
      temporary = true;
    }
    if (o.nodes > 1) {
      std::printf("starting a local %d-node cluster (mutual TLS between nodes) in %s ...\n", o.nodes,
                  data_dir.c_str());
      cluster = std::make_unique<local_cluster>(self_executable(), data_dir + "/cluster", o.nodes);
      if (!cluster->wait_links_up(std::chrono::seconds(30))) {
        std::fprintf(stderr, "the cluster's links did not come up; logs in %s/cluster\n", data_dir.c_str());
        return 2;
      }
      entries.clear();
      for (auto id : cluster->ids()) entries.push_back(cluster->address(id));
    } else {
      std::printf("starting a node on %s ...\n", data_dir.c_str());
      node = std::make_unique<node_process>(self_executable(), data_dir);
      entries = {node->address()};
    }
  }
  auto address = entries.front();
  int status = 0;
  {
    blocking_client admin(address);
    auto& io = admin.io();
    sale s{o, "flash-tee-" + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count()),
           io.provider->getTimer()};
    auto created = admin.create_sku(s.sku, o.stock, 2'999);
    if (created.status != code::ok) {
      std::fprintf(stderr, "cannot create the SKU: %s\n", to_string(created.status));
      return 2;
    }
    // The long tail, created in one batch call; the entry node splits it by owner.
    std::vector<sku_op> tail_ops;
    for (int i = 0; i < o.tail_skus; ++i) {
      s.tail.push_back(s.sku + "-tail-" + std::to_string(i));
      tail_ops.push_back({sku_op_kind::create, s.tail.back(), 5, 1'500, {}});
    }
    if (!tail_ops.empty())
      for (auto& r : admin.create_skus(tail_ops))
        if (r.status != code::ok) {
          std::fprintf(stderr, "cannot create the long tail: %s %s\n", to_string(r.status), r.message.c_str());
          return 2;
        }
    // Buyers enter at every node: most calls are forwarded to the SKU's owner.
    for (int i = 0; i < o.connections; ++i)
      s.clients.push_back(
        client::connect(*io.provider, entries[static_cast<size_t>(i) % entries.size()]).wait(io.waitScope));
    std::printf("%zu node(s): hot SKU %s with %lld units, %d long-tail SKUs, %lld buyers, hold TTL %lld ms\n",
                entries.size(), s.sku.c_str(), (long long)o.stock, o.tail_skus, (long long)o.buyers,
                (long long)o.hold_ttl_ms);
    if (cluster) {
      placement where(cluster->ids());
      std::map<uint32_t, int> owned;
      for (auto& t : s.tail) ++owned[where.owner(t)];
      std::printf("  the hot SKU lives on node %u; long tail per node:", where.owner(s.sku));
      for (auto& [id, n] : owned) std::printf(" node %u %d", id, n);
      std::printf("\n");
    }
    s.start = steady::now();
    auto builder = kj::heapArrayBuilder<kj::Promise<void>>(static_cast<size_t>(o.buyers));
    // Eager: a buyer's continuations (counting a sale) run when its answer arrives, not
    // when the whole join is collected; buyers stop retrying once they see the sell-out.
    for (int64_t i = 0; i < o.buyers; ++i) {
      auto both = s.buyer(i, 0);
      if (i % 2 == 0) both = both.then([&s, i] { return s.tail_buy(i); });
      builder.add(both.eagerlyEvaluate(nullptr));
    }
    kj::joinPromises(builder.finish()).exclusiveJoin(s.progress()).wait(io.waitScope);
    double race_ms = ms_since(s.start);

    // Abandoned holds end by their deadline; wait for the node to release them.
    std::printf("race over after %.1fs; waiting for abandoned holds to expire ...\n",
                race_ms / 1000);
    auto deadline = steady::now() + std::chrono::milliseconds(o.hold_ttl_ms + 10'000);
    sku_info final_state;
    for (;;) {
      final_state = admin.query_sku(s.sku).sku;
      if (final_state.reserved == 0 || steady::now() > deadline) break;
      io.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).wait(io.waitScope);
    }
    int64_t expired = 0;
    for (auto& h : s.abandoned)
      if (admin.query_hold(h, s.sku).hold.state == hold_state::expired) ++expired;
    // Abandoned holds whose units were then re-sold to others still expired themselves.
    int64_t oversold = std::max<int64_t>(0, final_state.sold - o.stock);
    bool consistent = final_state.on_hand + final_state.sold == final_state.stocked &&
                      final_state.sold == s.confirmed && final_state.reserved == 0 &&
                      expired == static_cast<int64_t>(s.abandoned.size());
    // The long tail's books: what buyers were told they bought is what each owner sold.
    int64_t tail_sold_books = 0;
    bool tail_consistent = true;
    if (!s.tail.empty()) {
      for (auto& t : s.tail) {
        auto q = admin.query_sku(t);
        tail_sold_books += q.sku.sold;
        tail_consistent = tail_consistent && q.status == code::ok && q.sku.sold + q.sku.on_hand == q.sku.stocked &&
                          q.sku.sold <= 5;
      }
    }
    consistent = consistent && tail_consistent && tail_sold_books == s.tail_sold;
    double rate = static_cast<double>(s.reserve_calls) / (race_ms / 1000);
    std::sort(s.reserve_latency_ms.begin(), s.reserve_latency_ms.end());
    double p50 = percentile_of_sorted(s.reserve_latency_ms, 0.50);
    double p99 = percentile_of_sorted(s.reserve_latency_ms, 0.99);
    if (o.json) {
      std::printf("{\"sku\":\"%s\",\"stock\":%lld,\"buyers\":%lld,\"sold\":%lld,\"released\":%lld,"
                  "\"expired\":%lld,\"oversold\":%lld,\"reserve_calls\":%lld,"
                  "\"reservations_per_s\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
                  "\"race_s\":%.3f,\"sold_out_s\":%.3f,\"unexpected_answers\":%lld,"
                  "\"nodes\":%zu,\"tail_skus\":%zu,\"tail_sold\":%lld,"
                  "\"consistent\":%s}\n",
                  s.sku.c_str(), (long long)o.stock, (long long)o.buyers,
                  (long long)final_state.sold, (long long)s.released, (long long)expired,
                  (long long)oversold, (long long)s.reserve_calls, rate, p50, p99, race_ms / 1000,
                  s.sold_out_ms / 1000, (long long)(s.errors + s.tail_errors), entries.size(),
                  s.tail.size(), (long long)s.tail_sold, consistent ? "true" : "false");
    } else {
      std::printf("\n=== flash sale report ===\n");
      std::printf("  units in stock          %8lld\n", (long long)o.stock);
      std::printf("  buyers                  %8lld\n", (long long)o.buyers);
      std::printf("  reserve calls           %8lld  (%lld refused out of stock)\n",
                  (long long)s.reserve_calls, (long long)s.refused);
      std::printf("  holds granted           %8lld\n", (long long)s.granted);
      std::printf("  sold (confirmed)        %8lld\n", (long long)final_state.sold);
      std::printf("  released by buyers      %8lld\n", (long long)s.released);
      std::printf("  expired (abandoned)     %8lld\n", (long long)expired);
      std::printf("  confirms too late       %8lld\n", (long long)s.late_confirms);
      std::printf("  buyers who gave up      %8lld\n", (long long)s.gave_up);
      std::printf("  oversold                %8lld  %s\n", (long long)oversold,
                  oversold == 0 ? "(none, as promised)" : "(BROKEN PROMISE)");
      std::printf("  stock left / reserved   %8lld / %lld\n", (long long)final_state.on_hand,
                  (long long)final_state.reserved);
      std::printf("  books balance           %8s  (on_hand + sold == stocked, every hold ended)\n",
                  consistent ? "yes" : "NO");
      if (s.sold_out_ms >= 0)
        std::printf("  sold out after          %8.1fs\n", s.sold_out_ms / 1000);
      std::printf("  reservations/s          %8.0f  over %.1fs\n", rate, race_ms / 1000);
      std::printf("  reserve latency         p50 %.2f ms, p99 %.2f ms (durable: after fsync)\n",
                  p50, p99);
      if (!s.tail.empty())
        std::printf("  long tail sold          %8lld  units over %zu SKUs (%lld asks found none left); "
                    "books agree: %s\n",
                    (long long)s.tail_sold, s.tail.size(), (long long)s.tail_refused,
                    tail_sold_books == s.tail_sold && tail_consistent ? "yes" : "NO");
      if (s.errors + s.tail_errors)
        std::printf("  unexpected answers      %8lld\n", (long long)(s.errors + s.tail_errors));
      if (cluster) {
        std::printf("\n  per node   calls served  forwarded to owners  SKU actors  links\n");
        for (auto id : cluster->ids()) {
          auto c = client::connect(*io.provider, cluster->address(id), cluster->client_config(3'000))
                     .wait(io.waitScope);
          auto st = c->status().wait(io.waitScope);
          std::string links;
          for (auto& l : st.links) links += std::to_string(l.node) + ":" + l.state + " ";
          std::printf("  node %-4u %12llu  %19llu  %10lld  %s\n", id, (unsigned long long)st.calls_total,
                      (unsigned long long)st.forwarded_total, (long long)st.skus_active, links.c_str());
        }
      }
    }
    status = oversold == 0 && consistent && s.errors + s.tail_errors == 0 ? 0 : 1;
  }
  if (node) node->terminate();
  if (temporary) {
    std::filesystem::remove_all(data_dir);
    std::filesystem::remove(data_dir + ".log");  // the node's log, beside its directory
  }
  return status;
}

}  // namespace holdfast
