// `holdfast bench hot-sku | many-skus | finished-holds | cluster | checkout` (bench/).
#include "bench/checkout_bench.hpp"
#include "bench/finished_holds.hpp"
#include "bench/hot_sku.hpp"
#include "bench/many_skus.hpp"
#include "bench/cluster_bench.hpp"
#include "cli/commands.hpp"

namespace holdfast::cli {
namespace {

// Runs a benchmark; a failure to run it is one line (JSON too), exit 2.
template <class Run>
int guarded(const context& ctx, Run run) {
  try {
    return run();
  } catch (const std::exception& e) {
    return fail(ctx, "failed", std::string("bench failed: ") + e.what());
  }
}

}  // namespace

void add_bench_commands(CLI::App& app, context& ctx) {
  auto* bench_cmd = app.add_subcommand("bench", "benchmarks");
  bench_cmd->require_subcommand(1);

  auto hot = std::make_shared<bench::hot_sku_options>();
  auto no_peers = std::make_shared<bool>(false);
  auto* hot_cmd = bench_cmd->add_subcommand(
    "hot-sku", "durable reservations on one SKU: Holdfast, Redis + Lua, PostgreSQL side by side");
  hot_cmd->add_option("--seconds", hot->seconds, "measured time per row")->capture_default_str();
  hot_cmd->add_option("--callers", hot->callers, "concurrent callers")->capture_default_str();
  hot_cmd->add_option("--depth", hot->depth_pipelined, "calls outstanding per caller in row 1b")
    ->capture_default_str();
  hot_cmd->add_option("--connections", hot->connections, "load generator connections per thread")
    ->capture_default_str();
  hot_cmd->add_option("--threads", hot->threads, "load generator threads")->capture_default_str();
  hot_cmd->add_option("--repeat", hot->repeat,
                      "runs of each Holdfast/peer pair, alternating; ratios are medians")
    ->check(CLI::Range(1, 99))
    ->capture_default_str();
  hot_cmd->add_option("--png", hot->png, "picture to write (empty: none)")->capture_default_str();
  hot_cmd->add_option("--use-node", hot->node_address, "measure a running node at HOST:PORT");
  hot_cmd->add_flag("--no-peers", *no_peers, "skip the Redis and PostgreSQL rows");
  hot_cmd->add_option("--node-cpus", hot->node_cpus,
                      "run the servers (node, redis-server, postgres) on these CPUs (taskset list, e.g. 1)");
  hot_cmd->add_option("--load-cpus", hot->load_cpus, "run the load generators on these CPUs (e.g. 0)");
  hot_cmd->footer(
    "Columns: reserv./s and p50/p99 latency per row; 'server us' and 'load us' are CPU time per\n"
    "reservation over the measured calls, read from /proc: the server's (the node; redis-server;\n"
    "postgres, postmaster and backends) and the load generator's (this bench's own threads;\n"
    "redis-benchmark; pgbench). On a shared 2-core machine they are the steadiest figures: the\n"
    "table ends with the node's CPU per reservation as a multiple of Redis's and PostgreSQL's.\n"
    "JSON: server_cpu_us_per_reservation, load_cpu_us_per_reservation per row.");
  hot_cmd->add_option("--ids", hot->ids,
                      "hold ids: uuid (rows 1a/1b), sequential, or both (adds 1a-seq/1b-seq)")
    ->check(CLI::IsMember({"uuid", "sequential", "both"}))
    ->capture_default_str();
  hot_cmd->callback([&ctx, hot, no_peers] {
    ctx.action = [&ctx, hot, no_peers] {
      hot->json = ctx.as_json;
      hot->peers = !*no_peers;
      return guarded(ctx, [&] { return bench::run_hot_sku(*hot); });
    };
  });

  auto finished = std::make_shared<bench::finished_holds_options>();
  auto* finished_cmd = bench_cmd->add_subcommand(
    "finished-holds", "bytes per finished hold, and data.mdb across cycles of reserve+confirm "
                      "with collection after a short retention window");
  finished_cmd->add_option("--holds", finished->holds, "reserve+confirm per cycle")
    ->capture_default_str();
  finished_cmd->add_option("--cycles", finished->cycles)->capture_default_str();
  add_duration_ms(finished_cmd, "--retention-ms", finished->retention_ms, "the node's --finished-hold-retention", 1,
                  86'400'000);
  finished_cmd->callback([&ctx, finished] {
    ctx.action = [&ctx, finished] {
      finished->json = ctx.as_json;
      return guarded(ctx, [&] { return bench::run_finished_holds(*finished); });
    };
  });

  auto many = std::make_shared<bench::many_skus_options>();
  auto* many_cmd = bench_cmd->add_subcommand(
    "many-skus", "a large catalog: create, random reserves, memory per idle SKU and per hold, restart time");
  many_cmd->add_option("--skus", many->skus, "SKUs to create")->capture_default_str();
  many_cmd->add_option("--compare-seconds", many->compare_seconds,
                       "seconds of hot-SKU row 1a on the same node, for the ratio (0: skip)")
    ->capture_default_str();
  many_cmd->add_option("--create-batch", many->create_batch,
                       "SKUs per batch create call (0: one call per SKU)")
    ->capture_default_str();
  many_cmd->add_option("--holds", many->holds, "random reservations, left outstanding")
    ->capture_default_str();
  many_cmd->add_option("--outstanding", many->outstanding, "calls in flight")
    ->capture_default_str();
  add_duration_ms(many_cmd, "--idle-ms", many->idle_ms, "node's SKU actor idle time before passivation", 1,
                  86'400'000);
  many_cmd->callback([&ctx, many] {
    ctx.action = [&ctx, many] {
      many->json = ctx.as_json;
      return guarded(ctx, [&] { return bench::run_many_skus(*many); });
    };
  });

  auto co = std::make_shared<bench::checkout_bench_options>();
  auto no_gateway = std::make_shared<bool>(false);
  auto* checkout_cmd = bench_cmd->add_subcommand(
    "checkout", "end-to-end checkouts/s: one node vs the cluster, in-process gateway vs the gateway process");
  checkout_cmd->add_option("--seconds", co->seconds, "measured seconds per row")->check(CLI::Range(1.0, 3600.0))->capture_default_str();
  checkout_cmd->add_option("--shoppers", co->shoppers, "checkouts in flight")->check(CLI::Range(1, 4096))->capture_default_str();
  checkout_cmd->add_option("--tail-skus", co->tail_skus, "long-tail SKUs")->check(CLI::Range(1, 1'000'000))->capture_default_str();
  checkout_cmd->add_option("--nodes", co->nodes, "nodes of rows (b) and (c)")->check(CLI::Range(2, 16))->capture_default_str();
  checkout_cmd->add_flag("--no-gateway-process", *no_gateway, "skip row (c)");
  checkout_cmd->callback([&ctx, co, no_gateway] {
    ctx.action = [&ctx, co, no_gateway] {
      co->json = ctx.as_json;
      co->gateway_process = !*no_gateway;
      return guarded(ctx, [&] { return bench::run_checkout_bench(*co); });
    };
  });

  auto cl = std::make_shared<bench::cluster_bench_options>();
  auto* cluster_cmd = bench_cmd->add_subcommand(
    "cluster", "one node vs a 3-node cluster through a non-owner vs the cluster-aware client");
  cluster_cmd->add_option("--seconds", cl->seconds, "measured seconds per row")->capture_default_str();
  cluster_cmd->add_option("--callers", cl->callers, "concurrent callers")->capture_default_str();
  cluster_cmd->add_option("--skus", cl->skus)->capture_default_str();
  cluster_cmd->add_option("--nodes", cl->nodes)->check(CLI::Range(2, 16))->capture_default_str();
  cluster_cmd->add_option("--threads", cl->threads, "load generator threads")->capture_default_str();
  cluster_cmd->add_option("--replicas", cl->replicas,
                          "> 1: compare (a) with a replicated cluster (replicas = --nodes) at full and half load, "
                          "and measure failover over --trials kill -9s of its leader")
    ->check(CLI::Range(1, 16))
    ->capture_default_str();
  cluster_cmd->add_option("--trials", cl->trials, "failover trials with --replicas")
    ->check(CLI::Range(1, 1000))
    ->capture_default_str();
  add_snapshot_entries(cluster_cmd, cl->snapshot_entries, "the report counts the leader's during (r) and (r/2)");
  cluster_cmd->add_option("--worker-threads", cl->worker_threads,
                          "CAF worker threads per node, in every row (0: the node's default)")
    ->capture_default_str();
  cluster_cmd->callback([&ctx, cl] {
    ctx.action = [&ctx, cl] {
      cl->json = ctx.as_json;
      return guarded(ctx, [&] { return bench::run_cluster_bench(*cl); });
    };
  });
}

}  // namespace holdfast::cli
