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
#include <random>

#include "cluster/client.hpp"
#include "harness/node_process.hpp"
#include "harness/processes.hpp"

namespace holdfast {
namespace {

using steady = std::chrono::steady_clock;

double ms_since(steady::time_point t) {
  return std::chrono::duration<double, std::milli>(steady::now() - t).count();
}

struct sale {
  const demo_options& o;
  std::string sku;
  kj::Timer& timer;
  std::vector<kj::Own<client>> clients;
  std::mt19937_64 rng;
  steady::time_point start = steady::now();
  std::vector<double> reserve_latency_ms;
  int64_t reserve_calls = 0, granted = 0, confirmed = 0, released = 0, late_confirms = 0;
  int64_t refused = 0, errors = 0, gave_up = 0, buyers_done = 0;
  double sold_out_ms = -1;  // when the last unit's confirm came back; -1: never
  std::vector<std::string> abandoned;

  bool sold_out() const { return confirmed >= o.stock; }

  kj::Promise<void> buyer(int64_t i, int attempt) {
    auto hold_id = "buyer-" + std::to_string(i);
    auto& c = *clients[static_cast<size_t>(i) % clients.size()];
    auto t0 = steady::now();
    hold_op op{hold_op_kind::reserve, sku, hold_id, 1, o.hold_ttl_ms};
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
  std::string address = o.node_address;
  if (address.empty()) {
    if (data_dir.empty()) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "holdfast-demo-XXXXXX").string();
      data_dir = mkdtemp(tmpl.data());
      temporary = true;
    }
    std::printf("starting a node on %s ...\n", data_dir.c_str());
    node = std::make_unique<node_process>(self_executable(), data_dir);
    address = node->address();
  }
  int status = 0;
  {
    blocking_client admin(address);
    auto& io = admin.io();
    sale s{o, "flash-tee-" + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count()),
           io.provider->getTimer()};
    s.rng.seed(o.seed);
    auto created = admin.create_sku(s.sku, o.stock, 2'999);
    if (created.status != code::ok) {
      std::fprintf(stderr, "cannot create the SKU: %s\n", to_string(created.status));
      return 2;
    }
    for (int i = 0; i < o.connections; ++i)
      s.clients.push_back(client::connect(*io.provider, address).wait(io.waitScope));
    std::printf("node %s: SKU %s with %lld units, %lld buyers, hold TTL %lld ms\n",
                address.c_str(), s.sku.c_str(), (long long)o.stock, (long long)o.buyers,
                (long long)o.hold_ttl_ms);
    s.start = steady::now();
    auto builder = kj::heapArrayBuilder<kj::Promise<void>>(static_cast<size_t>(o.buyers));
    // Eager: a buyer's continuations (counting a sale) run when its answer arrives, not
    // when the whole join is collected; buyers stop retrying once they see the sell-out.
    for (int64_t i = 0; i < o.buyers; ++i) builder.add(s.buyer(i, 0).eagerlyEvaluate(nullptr));
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
    double rate = static_cast<double>(s.reserve_calls) / (race_ms / 1000);
    std::sort(s.reserve_latency_ms.begin(), s.reserve_latency_ms.end());
    double p50 = percentile_of_sorted(s.reserve_latency_ms, 0.50);
    double p99 = percentile_of_sorted(s.reserve_latency_ms, 0.99);
    if (o.json) {
      std::printf("{\"sku\":\"%s\",\"stock\":%lld,\"buyers\":%lld,\"sold\":%lld,\"released\":%lld,"
                  "\"expired\":%lld,\"oversold\":%lld,\"reserve_calls\":%lld,"
                  "\"reservations_per_s\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
                  "\"race_s\":%.3f,\"sold_out_s\":%.3f,\"unexpected_answers\":%lld,"
                  "\"consistent\":%s}\n",
                  s.sku.c_str(), (long long)o.stock, (long long)o.buyers,
                  (long long)final_state.sold, (long long)s.released, (long long)expired,
                  (long long)oversold, (long long)s.reserve_calls, rate, p50, p99, race_ms / 1000,
                  s.sold_out_ms / 1000, (long long)s.errors,
                  consistent ? "true" : "false");
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
      if (s.errors) std::printf("  unexpected answers      %8lld\n", (long long)s.errors);
    }
    status = oversold == 0 && consistent && s.errors == 0 ? 0 : 1;
  }
  if (node) node->terminate();
  if (temporary) std::filesystem::remove_all(data_dir);
  return status;
}

}  // namespace holdfast
