#include "bench/many_skus.hpp"

#include "bench/hot_sku.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "harness/processes.hpp"
#include "client/client.hpp"
#include "harness/node_process.hpp"

namespace holdfast::bench {
namespace {

using steady = std::chrono::steady_clock;

double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

// Anonymous resident memory of a process, bytes: the heap, not LMDB's file mapping.
int64_t rss_anon_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  int64_t kb = 0;
  while (in >> key) {
    if (key == "RssAnon:") {
      in >> kb;
      return kb * 1024;
    }
    in.ignore(1 << 12, '\n');
  }
  return -1;
}

std::string sku_name(int64_t i) { return "s" + std::to_string(i); }

// The node's heap once it has settled: idle actors passivated (after `idle_ms`), the
// overlay snapshotted and trimmed, the allocator's freed pages returned (its dirty decay,
// cli/allocator.cpp), so two reads a poll apart differ by under 0.5%.
constexpr double allocator_decay_s = 10;
int64_t settled_rss(pid_t pid, int64_t idle_ms) {
  auto start = steady::now();
  int64_t rss = rss_anon_bytes(pid), previous = -1;
  wait_until(
    [&] {
      previous = rss;
      rss = rss_anon_bytes(pid);
      return previous >= 0 && std::llabs(rss - previous) < previous / 200 &&
             seconds_since(start) > std::max(2.0 * idle_ms / 1000 + 2, allocator_decay_s + 2);
    },
    std::chrono::seconds(120));
  return rss;
}

// Runs `total` calls made by `make(i)`, keeping `outstanding` in flight over `clients`,
// and prints progress every second. Returns the number that came back ok.
template <class Make>
int64_t drive(kj::AsyncIoContext& io, std::vector<kj::Own<client>>& clients, int64_t total,
              int outstanding, const char* what, bool quiet, Make make) {
  int64_t next = 0, done = 0, ok = 0;
  auto start = steady::now();
  auto last_report = start;
  std::function<kj::Promise<void>(size_t)> loop = [&](size_t lane) -> kj::Promise<void> {
    if (next >= total) return kj::READY_NOW;
    auto i = next++;
    return make(*clients[lane % clients.size()], i).then([&, lane](bool good) {
      ++done;
      if (good) ++ok;
      if (!quiet && seconds_since(last_report) >= 1) {
        last_report = steady::now();
        std::printf("  %-10s %9lld / %lld  (%.0f/s)\n", what, (long long)done, (long long)total,
                    static_cast<double>(done) / seconds_since(start));
        std::fflush(stdout);
      }
      return loop(lane);
    });
  };
  auto loops = kj::heapArrayBuilder<kj::Promise<void>>(static_cast<size_t>(outstanding));
  for (int l = 0; l < outstanding; ++l) loops.add(loop(static_cast<size_t>(l)).eagerlyEvaluate(nullptr));
  kj::joinPromises(loops.finish()).wait(io.waitScope);
  return ok;
}

}  // namespace

int run_many_skus(const many_skus_options& o) {
  auto quiet = o.json;
  auto say = [&](const std::string& s) {
    std::fprintf(quiet ? stderr : stdout, "%s\n", s.c_str());
    std::fflush(quiet ? stderr : stdout);
  };
  auto dir = make_temp_dir("holdfast-bench-many");
  remove_on_interrupt(dir);  // an interrupted run leaves no data behind
  auto data = dir + "/node";
  std::vector<std::string> node_args{"--idle-ms", std::to_string(o.idle_ms)};
  nlohmann::json report;
  report["skus"] = o.skus;
  int status = 0;
  {
    auto node = std::make_unique<node_process>(self_executable(), data, node_args);
    say("holdfast bench many-skus: node " + node->address() + " on " + data);
    auto baseline = rss_anon_bytes(node->pid());
    double reserve_s = 0;
    int64_t catalog_rss = 0;
    auto t = steady::now();
    {
    auto io = kj::setupAsyncIo();
    std::vector<kj::Own<client>> clients;
    for (int i = 0; i < o.connections; ++i)
      clients.push_back(client::connect(*io.provider, node->address()).wait(io.waitScope));

    t = steady::now();
    int64_t created = 0;
    if (o.create_batch > 0) {
      // Batches of creates, a few in flight per connection.
      const int64_t per = o.create_batch;
      const int64_t batches = (o.skus + per - 1) / per;
      drive(io, clients, batches, 4 * static_cast<int>(clients.size()), "batches", quiet,
            [&](client& c, int64_t b) {
              std::vector<sku_op> ops;
              for (int64_t i = b * per; i < std::min(o.skus, (b + 1) * per); ++i)
                ops.push_back({sku_op_kind::create, sku_name(i), 1'000, 100, {}});
              return c.create_skus(ops).then([&created](std::vector<sku_result> rs) {
                for (auto& r : rs) created += r.status == code::ok;
                return true;
              });
            });
    } else {
      created = drive(io, clients, o.skus, o.outstanding, "created", quiet,
                      [](client& c, int64_t i) {
                        return c.sku({sku_op_kind::create, sku_name(i), 1'000, 100, {}})
                          .then([](sku_result r) { return r.status == code::ok; });
                      });
    }
    double create_s = seconds_since(t);
    report["create_per_s"] = static_cast<double>(created) / create_s;
    report["create_batch"] = o.create_batch;
    report["created"] = created;
    if (created != o.skus) status = 1;

    // What the catalog costs at rest: every SKU created, none holding anything.
    say("waiting for the node to settle (catalog, no holds) ...");
    catalog_rss = settled_rss(node->pid(), o.idle_ms);
    report["rss_anon_catalog_bytes"] = catalog_rss;
    report["rss_per_idle_sku_bytes"] = static_cast<double>(catalog_rss - baseline) / std::max<int64_t>(1, created);

    // Uniform random reservations, one unit each, left outstanding for the restart.
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<int64_t> pick(0, o.skus - 1);
    t = steady::now();
    auto granted = drive(io, clients, o.holds, o.outstanding, "reserved", quiet,
                         [&](client& c, int64_t i) {
                           hold_op op{hold_op_kind::reserve, sku_name(pick(rng)),
                                      "h" + std::to_string(i), 1, 3'600'000, {}};
                           return c.reserve(op).then(
                             [](hold_result r) { return r.status == code::ok; });
                         });
    reserve_s = seconds_since(t);
    report["reserve_per_s"] = static_cast<double>(granted) / reserve_s;
    report["holds_outstanding"] = granted;
    clients.clear();
    }
    // The same catalog with the holds outstanding, its actors passivated again: what
    // each hold adds (its id in the active-id index, its SKU's wake-up entry).
    say("waiting for idle SKU actors to passivate (holds outstanding) ...");
    auto rss = settled_rss(node->pid(), o.idle_ms);
    report["rss_anon_baseline_bytes"] = baseline;
    report["rss_anon_idle_bytes"] = rss;
    report["rss_per_outstanding_hold_bytes"] =
      static_cast<double>(rss - catalog_rss) / std::max<int64_t>(1, report["holds_outstanding"].get<int64_t>());

    // The hot-SKU row 1a on the same node, after the memory is read (its own holds would
    // count in the per-hold figure): the target is a ratio to it.
    if (o.compare_seconds > 0) {
      say("row 1a (one hot SKU, 50 callers x 1, UUID ids) for comparison ...");
      auto hot = measure_hot_sku_1a(node->address(), o.compare_seconds);
      report["hot_sku_1a_per_s"] = hot;
      report["uniform_vs_1a"] = hot > 0 ? report["reserve_per_s"].get<double>() / hot : 0.0;
    }

    // Restart: time from exec to the first answered query, every hold outstanding.
    node->kill9();
    auto restart_at = steady::now();
    node = std::make_unique<node_process>(self_executable(), data, node_args,
                                          std::chrono::seconds(300));
    blocking_client probe(node->address());
    auto s = probe.query_sku(sku_name(0));
    report["restart_to_serving_s"] = seconds_since(restart_at);
    report["restart_answer_ok"] = s.status == code::ok;
    if (s.status != code::ok) status = 1;
    // The books after restart: every acknowledged hold is back (sampled).
    int64_t sampled_reserved = 0;
    for (int64_t i = 0; i < std::min<int64_t>(o.skus, 1000); ++i)
      sampled_reserved += probe.query_sku(sku_name(i)).sku.reserved;
    report["reserved_in_first_1000_skus"] = sampled_reserved;
    node->terminate();
  }
  std::filesystem::remove_all(dir);
  if (o.json) {
    std::printf("%s\n", report.dump().c_str());
  } else {
    std::printf("\n=== many SKUs on one node ===\n");
    std::printf("  SKUs                       %12lld  created at %.0f/s%s\n",
                (long long)report["created"].get<int64_t>(), report["create_per_s"].get<double>(),
                report["created"].get<int64_t>() == o.skus
                  ? ""
                  : (" -- ONLY " + std::to_string(report["created"].get<int64_t>()) + " of " +
                     std::to_string(o.skus) + " (is --create-batch above the node's --batch-max?)")
                      .c_str());
    std::printf("  uniform random reserves    %12lld  granted at %.0f/s (durable)\n",
                (long long)report["holds_outstanding"].get<int64_t>(),
                report["reserve_per_s"].get<double>());
    if (report.contains("hot_sku_1a_per_s"))
      std::printf("  hot SKU row 1a, same node  %12.0f  /s; uniform is %.0f%% of it (target >= 50%%)\n",
                  report["hot_sku_1a_per_s"].get<double>(),
                  100 * report["uniform_vs_1a"].get<double>());
    std::printf("  heap per idle SKU          %12.0f  bytes (RssAnon %.1f MiB empty, %.1f MiB with the"
                " catalog; target <= 128)\n",
                report["rss_per_idle_sku_bytes"].get<double>(),
                report["rss_anon_baseline_bytes"].get<double>() / (1 << 20),
                report["rss_anon_catalog_bytes"].get<double>() / (1 << 20));
    std::printf("  heap per outstanding hold  %12.0f  bytes (RssAnon %.1f MiB with every hold"
                " outstanding, actors passivated)\n",
                report["rss_per_outstanding_hold_bytes"].get<double>(),
                report["rss_anon_idle_bytes"].get<double>() / (1 << 20));
    std::printf("  restart to first answer    %12.2f  s with every hold outstanding (target <= 2 s)\n",
                report["restart_to_serving_s"].get<double>());
    std::printf("  reserved, SKUs 0..999      %12lld  after the restart (expected about %.0f)\n",
                (long long)report["reserved_in_first_1000_skus"].get<int64_t>(),
                static_cast<double>(report["holds_outstanding"].get<int64_t>()) *
                  static_cast<double>(std::min<int64_t>(o.skus, 1000)) / static_cast<double>(o.skus));
  }
  return status;
}

}  // namespace holdfast::bench
