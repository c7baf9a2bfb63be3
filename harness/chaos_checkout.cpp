#include "harness/chaos_checkout.hpp"

#include <algorithm>
#include <chrono>
#include <random>
#include <sstream>
#include <thread>

#include "protocol/order_wire.hpp"

namespace holdfast {
namespace {

using clock_type = std::chrono::steady_clock;

bool paid(order_state s) {
  return s == order_state::captured || s == order_state::shipped || s == order_state::delivered;
}

bool no_answer(code c) { return c == code::unavailable || c == code::outcome_unknown; }

}  // namespace

checkout_workload::checkout_workload(const chaos_options& options, const local_cluster& cluster,
                                     std::vector<std::string> skus, std::string prefix, int64_t limit_per_user)
  : o_(options), cluster_(cluster), skus_(std::move(skus)), prefix_(std::move(prefix)), limit_(limit_per_user) {}

void checkout_workload::run(int index, const std::atomic<bool>& stop) {
  std::mt19937_64 rng(o_.seed * 7919 + static_cast<uint64_t>(index));
  auto ids = cluster_.ids();
  uint32_t entry = ids[static_cast<size_t>(index) % ids.size()];
  std::unique_ptr<blocking_client> c;
  std::vector<std::string> placed;  // this shopper's orders, for cancels and the warehouse
  uint64_t n = 0;
  auto count = [&](const std::string& what) {
    std::lock_guard<std::mutex> g(mutex_);
    ++counts_[what];
  };
  auto lost = [&] {
    c.reset();  // reconnect, maybe elsewhere
    entry = ids[rng() % ids.size()];
  };
  // One call through the current entry; false when no answer came (the connection is
  // dropped and the next call goes elsewhere).
  auto call = [&](auto&& f) {
    auto t0 = clock_type::now();
    bool answered = true;
    try {
      if (!c) c = std::make_unique<blocking_client>(cluster_.address(entry), cluster_.client_config(o_.call_timeout_ms));
      f(*c);
    } catch (const std::exception&) {
      lost();
      answered = false;
    }
    std::lock_guard<std::mutex> g(mutex_);
    max_latency_ms_ = std::max(max_latency_ms_, std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    return answered;
  };
  auto mark = [&](const char* outcome) {
    std::lock_guard<std::mutex> g(mutex_);
    timeline_.emplace_back(std::chrono::duration<double>(clock_type::now() - started_).count(), outcome);
  };
  while (!stop) {
    // Users are shared by every shopper: two may fill one cart, and checkouts of one
    // user race on the per-user limit.
    auto user = prefix_ + "user-" + std::to_string(rng() % 16);
    for (int k = 0, lines = 1 + static_cast<int>(rng() % 2); k < lines; ++k) {
      cart_op add{cart_op_kind::add, user, skus_[rng() % skus_.size()], 1 + static_cast<int64_t>(rng() % 2), 0, 0, {}};
      if (!call([&](blocking_client& b) { b.cart(add); })) count("cart_no_answer");
    }
    auto key = prefix_ + "w" + std::to_string(index) + "-" + std::to_string(n++);
    auto order_id = checkout_order_id(user, key);
    // No answer: asked again with the same key (the same order, never a second one).
    checkout_result r;
    bool answered = false;
    for (int attempt = 0; attempt < 5 && !stop; ++attempt) {
      bool got = call([&](blocking_client& b) { r = b.checkout(user, "tok_visa", key); });
      if (got && !no_answer(r.status)) {
        answered = true;
        break;
      }
      count("checkout_retried");
      std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));  // retry backoff
    }
    mark(!answered ? "unknown" : r.status != code::ok ? "unavailable" : r.order.order_id.empty() ? "refused" : "ok");
    if (!answered) {
      std::lock_guard<std::mutex> g(mutex_);
      ++counts_["checkout_no_answer"];
      orders_.emplace(order_id, order_seen{user, false});  // it may have been placed
      continue;
    }
    if (r.status != code::ok) {
      count(std::string("checkout_") + to_string(r.status));
      continue;
    }
    if (r.empty_cart) {
      count("empty_cart");  // another shopper checked this user's cart out first
      continue;
    }
    if (!r.changed.empty()) {
      count("sold_out_at_checkout");
      call([&](blocking_client& b) {
        b.cart(cart_op{cart_op_kind::clear, user, {}, 0, 0, 0, {}});
        // The warehouse restocks now and then, so the sale goes on for the whole run.
        if (rng() % 2 == 0)
          for (auto& l : r.changed) b.restock(l.sku, 10);
      });
      continue;
    }
    {
      std::lock_guard<std::mutex> g(mutex_);
      ++counts_["placed"];
      if (r.order.order_id != order_id) ++counts_["order_id_mismatch"];
      orders_[r.order.order_id] = order_seen{user, true};
    }
    placed.push_back(r.order.order_id);
    auto dice = rng() % 100;
    if (dice < 10) {
      call([&](blocking_client& b) {
        auto answer = b.order(order_op_on(order_op_kind::cancel, r.order.order_id));
        count(answer.status == code::ok ? "cancel_accepted" : "cancel_refused");
      });
    } else if (dice < 20 && placed.size() > 3) {
      // An older order leaves the warehouse, or fails to (then it is refunded).
      auto old = placed[rng() % (placed.size() - 1)];
      auto kind = rng() % 3 == 0 ? order_op_kind::shipping_failed : order_op_kind::ship;
      call([&](blocking_client& b) {
        auto answer = b.order(order_op_on(kind, old, "lost in chaos"));
        if (answer.status == code::ok) count(kind == order_op_kind::ship ? "shipped" : "shipping_failed");
      });
    }
  }
}

std::vector<std::map<std::string, int>> checkout_workload::per_second(int seconds) {
  std::lock_guard<std::mutex> g(mutex_);
  std::vector<std::map<std::string, int>> out(static_cast<size_t>(std::max(seconds, 1)));
  for (auto& [at, outcome] : timeline_) ++out[static_cast<size_t>(std::clamp(int(at), 0, int(out.size()) - 1))][outcome];
  return out;
}

double checkout_workload::max_latency_ms() {
  std::lock_guard<std::mutex> g(mutex_);
  return max_latency_ms_;
}

std::string checkout_workload::progress() {
  std::lock_guard<std::mutex> g(mutex_);
  std::ostringstream line;
  line << "checkouts: placed " << counts_["placed"] << ", sold out " << counts_["sold_out_at_checkout"]
       << ", no answer " << counts_["checkout_no_answer"];
  return line.str();
}

std::vector<chaos_verdict> checkout_workload::check(const ledger_reader& read_ledger, std::chrono::seconds limit) {
  chaos_verdict terminal{"every order ended (checkout)", true, {}}, acked{"every acknowledged order present", true, {}},
    one_capture{"at most one capture per order (gateway ledger)", true, {}},
    captured_confirmed{"captured <=> paid order; sold == units of paid orders (checkout SKUs)", true, {}},
    conserved{"stock conserved: sold + on_hand == stocked, nothing held (checkout SKUs)", true, {}},
    within_limit{"per-user limit never exceeded", true, {}};
  std::map<std::string, order_record> final;
  std::map<std::string, order_seen> orders;
  {
    std::lock_guard<std::mutex> g(mutex_);
    orders = orders_;
  }
  blocking_client c(cluster_.address(cluster_.ids().front()), cluster_.client_config(10'000));
  auto deadline = clock_type::now() + limit;
  std::string open_example;
  for (;;) {
    size_t open = 0;
    for (auto& [id, seen] : orders) {
      if (final.count(id) && final[id].phase == saga_phase::done) continue;
      auto r = c.order(order_op_on(order_op_kind::show, id));
      if (r.status == code::unknown_order) {
        if (seen.acked) {
          acked.ok = false;
          acked.detail = "acknowledged order " + id + " is unknown";
        }
        final.erase(id);
        continue;
      }
      if (r.status != code::ok || r.order.phase != saga_phase::done) {
        ++open;
        open_example = id + ": " + (r.status != code::ok ? std::string(to_string(r.status)) + " " + r.message
                                                          : std::string(to_string(r.order.state)) + " in its " +
                                                              to_string(r.order.phase) + " step, " + r.order.last_error);
        if (r.status == code::ok) final[id] = r.order;
        continue;
      }
      final[id] = r.order;
    }
    if (open == 0) break;
    if (clock_type::now() > deadline) {
      terminal.ok = false;
      terminal.detail = std::to_string(open) + " orders still running, e.g. " + open_example;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // polling pacing
  }
  // The ledger against the orders, read once they all ended (on a thread of its own:
  // this one runs the client's event loop).
  ledger_view ledger;
  std::string ledger_error;
  bool read = false;
  std::thread([&] { read = read_ledger(ledger, ledger_error); }).join();
  if (!read) {
    one_capture.ok = captured_confirmed.ok = false;
    one_capture.detail = captured_confirmed.detail = "the gateway's ledger could not be read: " + ledger_error;
  }
  for (auto& [id, r] : final) {
    auto n = ledger.captures.count(id) ? ledger.captures.at(id) : 0;
    if (n > 1) {
      one_capture.ok = false;
      one_capture.detail = id + " captured " + std::to_string(n) + " times";
    }
    if (r.phase != saga_phase::done) continue;
    bool charged = paid(r.state) || r.state == order_state::refunded;
    if (charged ? n != 1 : n != 0) {
      captured_confirmed.ok = false;
      captured_confirmed.detail = id + " is " + to_string(r.state) + " with " + std::to_string(n) + " captures";
    }
  }
  for (auto& [order, n] : ledger.captures)
    if (n > 0 && !final.count(order)) {
      captured_confirmed.ok = false;
      captured_confirmed.detail = "the gateway captured " + order + ", an order no member knows";
    }
  // The books against the paid orders.
  std::map<std::string, int64_t> units;
  std::map<std::string, int64_t> limited_by_user;
  for (auto& [id, r] : final) {
    ++ended_[to_string(r.state)];
    if (!paid(r.state)) continue;
    for (auto& l : r.lines) {
      units[l.sku] += l.qty;
      if (l.sku == skus_.front()) limited_by_user[r.user] += l.qty;
    }
  }
  for (auto& [user, qty] : limited_by_user)
    if (qty > limit_) {
      within_limit.ok = false;
      within_limit.detail = user + " bought " + std::to_string(qty) + " of " + skus_.front() + ", limit " + std::to_string(limit_);
    }
  for (auto& sku : skus_) {
    auto q = c.query_sku(sku);
    if (q.status != code::ok) {
      conserved.ok = false;
      conserved.detail = sku + ": " + to_string(q.status) + " " + q.message;
      continue;
    }
    auto& s = q.sku;
    if (s.sold + s.on_hand + s.written_off != s.stocked || s.reserved != 0 || s.active_holds != 0) {
      conserved.ok = false;
      conserved.detail = sku + ": sold " + std::to_string(s.sold) + " + on_hand " + std::to_string(s.on_hand) +
                         " vs stocked " + std::to_string(s.stocked) + ", " + std::to_string(s.reserved) + " held";
    }
    if (s.sold != units[sku]) {
      captured_confirmed.ok = false;
      captured_confirmed.detail = sku + ": sold " + std::to_string(s.sold) + ", paid orders hold " + std::to_string(units[sku]);
    }
  }
  {
    std::lock_guard<std::mutex> g(mutex_);
    if (counts_["order_id_mismatch"]) {
      acked.ok = false;
      acked.detail = "a checkout answered an order id its key does not name";
    }
  }
  return {terminal, acked, one_capture, captured_confirmed, conserved, within_limit};
}

std::string checkout_workload::summary() {
  std::lock_guard<std::mutex> g(mutex_);
  std::ostringstream out;
  out << "checkout: " << orders_.size() << " orders (placed " << counts_["placed"] << ", answer lost "
      << counts_["checkout_no_answer"] << "), sold out at checkout " << counts_["sold_out_at_checkout"]
      << ", empty carts " << counts_["empty_cart"] << ", checkouts retried " << counts_["checkout_retried"]
      << "\n  cancels " << counts_["cancel_accepted"] << " accepted / " << counts_["cancel_refused"]
      << " refused; shipped " << counts_["shipped"] << ", shipping failed " << counts_["shipping_failed"]
      << "\n  orders ended:";
  for (auto& [state, n] : ended_) out << " " << state << " " << n;
  return out.str();
}

nlohmann::json checkout_workload::json() {
  std::lock_guard<std::mutex> g(mutex_);
  nlohmann::json j{{"orders", orders_.size()}};
  for (auto& [k, v] : counts_) j["counts"][k] = v;
  for (auto& [k, v] : ended_) j["ended"][k] = v;
  return j;
}

}  // namespace holdfast
