#include "bench/checkout_bench.hpp"

#include <kj/async-io.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <random>

#include "bench/cpu.hpp"
#include "client/client.hpp"
#include "bench/progress.hpp"
#include "harness/checkout_cluster.hpp"
#include "harness/local_cluster.hpp"
#include "harness/node_process.hpp"
#include "harness/processes.hpp"

namespace holdfast::bench {
namespace {

using steady = std::chrono::steady_clock;


double ms_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct checkout_row {
  std::string id, what;
  int64_t checkouts = 0;          // placed (durable) within the measured window
  double seconds = 0, per_second = 0;
  double p50_ms = 0, p99_ms = 0;  // the checkout call: cart -> durable order
  int64_t orders = 0, ended = 0, paid = 0;
  double drain_s = 0;             // after the window: until every order's saga ended
  double ended_per_second = 0;    // orders / (warmup + window + drain)
  std::vector<std::pair<std::string, double>> cpu_us;  // per checkout, by process
  double busy = 0;                // the machine's CPU busy over the window
  std::string error;
};

struct checkout_target {
  std::vector<std::string> entries;  // client addresses
  client_options options;
  std::vector<std::pair<std::string, pid_t>> processes;  // whose CPU is counted
};

checkout_row measure(const checkout_bench_options& o, const std::string& id, const std::string& what,
                     const checkout_target& t) {
  checkout_row row;
  row.id = id;
  row.what = what;
  blocking_client admin(t.entries.front(), t.options);
  auto& io = admin.io();
  auto& timer = io.provider->getTimer();
  auto stamp = id + "-" + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
  // Stock enough never to sell out: what is measured is checkout, not refusals.
  const int64_t units = 1'000'000'000;
  std::string hot = "bench-hot-" + stamp;
  std::vector<std::string> tail;
  std::vector<sku_op> creates{{sku_op_kind::create, hot, units, 4'900, "Hot item", 0}};
  for (int i = 0; i < o.tail_skus; ++i) {
    tail.push_back("bench-tail-" + stamp + "-" + std::to_string(i));
    creates.push_back({sku_op_kind::create, tail.back(), units, 1'000, "Tail item", 0});
  }
  for (size_t at = 0; at < creates.size(); at += 500) {
    std::vector<sku_op> chunk(creates.begin() + static_cast<long>(at),
                              creates.begin() + static_cast<long>(std::min(creates.size(), at + 500)));
    for (auto& r : admin.create_skus(chunk))
      if (r.status != code::ok) throw std::runtime_error(std::string("cannot create the SKUs: ") + to_string(r.status));
  }
  std::vector<kj::Own<client>> clients;
  for (auto& e : t.entries)
    for (int k = 0; k < 4; ++k) clients.push_back(client::connect(*io.provider, e, t.options).wait(io.waitScope));

  std::mt19937_64 rng(42);
  auto start = steady::now();
  auto measure_from = start + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(o.warmup_seconds));
  auto measure_to = measure_from + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(o.seconds));
  std::vector<double> latencies;
  std::vector<std::string> orders;
  int64_t failures = 0;
  std::string failure;
  std::vector<double> cpu_before;
  std::pair<double, double> machine_before;
  bool sampled = false;
  uint64_t n = 0;
  std::function<kj::Promise<void>(int)> shopper = [&](int k) -> kj::Promise<void> {
    auto now = steady::now();
    if (now >= measure_to) return kj::READY_NOW;
    if (!sampled && now >= measure_from) {
      sampled = true;
      for (auto& [name, pid] : t.processes) cpu_before.push_back(cpu_seconds(pid));
      cpu_before.push_back(cpu_seconds(getpid()));
      machine_before = machine_cpu();
    }
    auto user = "bench-" + stamp + "-u" + std::to_string(n++);
    std::vector<cart_op> adds;
    int lines = 1 + static_cast<int>(rng() % 3);
    if (rng() % 2 == 0) adds.push_back({cart_op_kind::add, user, hot, 1, 0, 0, {}});
    while (static_cast<int>(adds.size()) < lines)
      adds.push_back({cart_op_kind::add, user, tail[rng() % tail.size()], 1, 0, 0, {}});
    auto& c = *clients[static_cast<size_t>(k) % clients.size()];
    auto& entry = *clients[static_cast<size_t>(k + 1) % clients.size()];
    return c.cart_ops(adds).then([&, user, k](std::vector<cart_result>) {
      auto t0 = steady::now();
      return entry.checkout(user, "tok_visa", "bench").then([&, t0, k](checkout_result r) {
        auto t1 = steady::now();
        if (r.status != code::ok || r.order.order_id.empty()) {
          ++failures;
          if (failure.empty()) failure = std::string(to_string(r.status)) + " " + r.message;
        } else {
          orders.push_back(r.order.order_id);
          if (t0 >= measure_from && t1 <= measure_to) latencies.push_back(ms_between(t0, t1));
        }
        return shopper(k);
      });
    });
  };
  auto all = kj::heapArrayBuilder<kj::Promise<void>>(static_cast<size_t>(o.shoppers));
  for (int k = 0; k < o.shoppers; ++k) all.add(shopper(k).eagerlyEvaluate(nullptr));
  // The window's end sampled on time, whatever is in flight.
  std::vector<double> cpu_after;
  std::pair<double, double> machine_after;
  auto end_sample = timer.afterDelay(static_cast<uint64_t>(ms_between(steady::now(), measure_to)) * kj::MILLISECONDS)
                      .then([&] {
                        for (auto& [name, pid] : t.processes) cpu_after.push_back(cpu_seconds(pid));
                        cpu_after.push_back(cpu_seconds(getpid()));
                        machine_after = machine_cpu();
                      })
                      .eagerlyEvaluate(nullptr);
  kj::joinPromises(all.finish()).wait(io.waitScope);
  end_sample.wait(io.waitScope);
  row.checkouts = static_cast<int64_t>(latencies.size());
  row.seconds = o.seconds;
  row.per_second = static_cast<double>(row.checkouts) / o.seconds;
  std::sort(latencies.begin(), latencies.end());
  row.p50_ms = percentile_of_sorted(latencies, 0.5);
  row.p99_ms = percentile_of_sorted(latencies, 0.99);
  auto names = t.processes;
  names.emplace_back("load", getpid());
  for (size_t i = 0; i < names.size() && i < cpu_before.size() && i < cpu_after.size(); ++i)
    row.cpu_us.emplace_back(names[i].first, row.checkouts ? (cpu_after[i] - cpu_before[i]) * 1e6 /
                                                              static_cast<double>(row.checkouts)
                                                          : 0);
  if (machine_after.second > machine_before.second)
    row.busy = (machine_after.first - machine_before.first) / (machine_after.second - machine_before.second);
  if (failures) row.error = std::to_string(failures) + " checkouts failed, e.g. " + failure;

  // Every order's saga to its end: paid, nothing left running.
  auto drain_from = steady::now();
  std::vector<std::string> open = orders;
  row.orders = static_cast<int64_t>(orders.size());
  while (!open.empty() && ms_between(drain_from, steady::now()) < 120'000) {
    std::vector<std::string> still;
    for (size_t at = 0, k = 0; at < open.size(); at += 500, ++k) {
      std::vector<order_op> ops;
      for (size_t j = at; j < std::min(open.size(), at + 500); ++j) ops.push_back(order_op_on(order_op_kind::show, open[j]));
      auto rs = clients[k % clients.size()]->order_ops(ops).wait(io.waitScope);
      for (size_t j = 0; j < rs.size(); ++j) {
        if (rs[j].status == code::ok && rs[j].order.phase == saga_phase::done) {
          ++row.ended;
          row.paid += rs[j].order.state == order_state::captured;
        } else {
          still.push_back(ops[j].order_id);
        }
      }
    }
    open.swap(still);
    if (!open.empty()) timer.afterDelay(100 * kj::MILLISECONDS).wait(io.waitScope);
  }
  row.drain_s = ms_between(drain_from, steady::now()) / 1000;
  row.ended_per_second = static_cast<double>(row.ended) / (ms_between(start, steady::now()) / 1000);
  if (!open.empty() && row.error.empty()) row.error = std::to_string(open.size()) + " orders never ended";
  else if (row.paid != row.ended && row.error.empty())
    row.error = std::to_string(row.ended - row.paid) + " orders ended unpaid";
  return row;
}

std::string cpu_text(const checkout_row& r) {
  std::string out;
  double total = 0;
  for (auto& [name, us] : r.cpu_us) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s%s %.0f", out.empty() ? "" : ", ", name.c_str(), us);
    out += buf;
    total += us;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "; total %.0f", total);
  return out + buf;
}

}  // namespace

int run_checkout_bench(const checkout_bench_options& o) {
  set_progress_quiet(o.json);
  auto dir = make_temp_dir("holdfast-bench-checkout");
  remove_on_interrupt(dir);  // an interrupted run leaves no data behind
  std::vector<checkout_row> rows;
  auto report_row = [&](const checkout_row& r) {
    char line[256];
    std::snprintf(line, sizeof line, "(%s) %.0f checkouts/s, p50 %.1f ms, p99 %.1f ms; %lld orders ended in +%.1fs",
                  r.id.c_str(), r.per_second, r.p50_ms, r.p99_ms, (long long)r.ended, r.drain_s);
    progress(line);
  };
  progress("checkout benchmark: " + std::to_string(o.shoppers) + " checkouts in flight, carts of 1-3 lines over a hot SKU and " +
      std::to_string(o.tail_skus) + " tail SKUs; " + std::to_string(int(o.seconds)) + " s per row; in " + dir);
  {
    progress("(a) one node, in-process gateway at zero latency ...");
    node_process node(self_executable(), dir + "/a");
    rows.push_back(measure(o, "a", "one node, in-process gateway", {{node.address()}, {}, {{"node", node.pid()}}}));
    report_row(rows.back());
  }
  {
    progress("(b) a " + std::to_string(o.nodes) + "-node cluster (mutual TLS), in-process gateway on each node ...");
    local_cluster cluster(self_executable(), dir + "/b", o.nodes);
    if (!cluster.wait_links_up(std::chrono::seconds(30))) throw std::runtime_error("the cluster's links stayed down");
    checkout_target t;
    t.options = cluster.client_config(15'000);
    for (auto id : cluster.ids()) {
      t.entries.push_back(cluster.address(id));
      t.processes.emplace_back("node " + std::to_string(id), cluster.process(id)->pid());
    }
    rows.push_back(measure(o, "b", std::to_string(o.nodes) + " nodes, in-process gateway", t));
    report_row(rows.back());
  }
  if (o.gateway_process) {
    progress("(c) the same cluster paying through the gateway process (HTTP, signed webhooks, no faults) ...");
    checkout_cluster_options co;
    co.nodes = o.nodes;
    checkout_cluster cluster(self_executable(), dir + "/c", co);
    checkout_target t;
    t.options = cluster.nodes().client_config(15'000);
    for (auto id : cluster.nodes().ids()) {
      t.entries.push_back(cluster.nodes().address(id));
      t.processes.emplace_back("node " + std::to_string(id), cluster.nodes().process(id)->pid());
    }
    t.processes.emplace_back("gateway", cluster.gateway().pid());
    rows.push_back(measure(o, "c", std::to_string(o.nodes) + " nodes, gateway process", t));
    report_row(rows.back());
  }
  std::filesystem::remove_all(dir);

  const auto& a = rows.front();
  bool ok = std::all_of(rows.begin(), rows.end(), [](auto& r) { return r.error.empty() && r.checkouts > 0; });
  if (o.json) {
    nlohmann::json j{{"shoppers", o.shoppers}, {"tail_skus", o.tail_skus}, {"seconds", o.seconds}, {"ok", ok}};
    for (auto& r : rows) {
      nlohmann::json cpu;
      for (auto& [name, us] : r.cpu_us) cpu[name] = us;
      j["rows"].push_back({{"id", r.id}, {"system", r.what}, {"checkouts", r.checkouts},
                           {"checkouts_per_s", r.per_second}, {"p50_ms", r.p50_ms}, {"p99_ms", r.p99_ms},
                           {"orders", r.orders}, {"ended", r.ended}, {"paid", r.paid}, {"drain_s", r.drain_s},
                           {"ended_per_s", r.ended_per_second}, {"ratio_to_a", a.per_second > 0 ? r.per_second / a.per_second : 0},
                           {"cpu_us_per_checkout", cpu}, {"machine_busy", r.busy}, {"error", r.error}});
    }
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("\n=== checkout benchmark (%d in flight, %.0f s per row, this machine: %ld cores) ===\n", o.shoppers,
                o.seconds, sysconf(_SC_NPROCESSORS_ONLN));
    std::printf("%-4s %-34s %12s %9s %9s %8s %10s %10s\n", "row", "system", "checkouts/s", "p50 ms", "p99 ms",
                "vs (a)", "drain s", "ended/s");
    for (auto& r : rows)
      std::printf("%-4s %-34s %12.0f %9.1f %9.1f %7.2fx %10.1f %10.0f\n", r.id.c_str(), r.what.c_str(), r.per_second,
                  r.p50_ms, r.p99_ms, a.per_second > 0 ? r.per_second / a.per_second : 0, r.drain_s,
                  r.ended_per_second);
    std::printf("\nCPU per checkout (us, from /proc over the window; the sagas' own steps included):\n");
    for (auto& r : rows)
      std::printf("  (%s) %s   [machine %.0f%% busy]\n", r.id.c_str(), cpu_text(r).c_str(), r.busy * 100);
    std::printf("\nchecked: every checkout placed a durable order; every order's saga ended paid "
                "(reserve, authorize, confirm, capture) before the row's figures were taken.\n");
    for (auto& r : rows)
      if (!r.error.empty()) std::printf("  (%s) PROBLEM: %s\n", r.id.c_str(), r.error.c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace holdfast::bench
