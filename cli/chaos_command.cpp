// `holdfast chaos`: failure simulation on a local cluster of real processes
// (harness/chaos.cpp).
#include "cli/commands.hpp"
#include "harness/chaos.hpp"
#include "harness/node_process.hpp"

namespace holdfast::cli {

void add_chaos_command(CLI::App& app, context& ctx) {
  auto o = std::make_shared<chaos_options>();
  auto* cmd = app.add_subcommand(
    "chaos", "kill -9, SIGSTOP and partition a local cluster under load, then check every promise");
  cmd->add_option("--seed", o->seed, "nemesis and workload seed (0: from the clock)")->capture_default_str();
  cmd->add_option("--seconds", o->seconds, "workload and faults for this long")
    ->check(CLI::Range(1.0, 86400.0))
    ->capture_default_str();
  cmd->add_option("--nodes", o->nodes, "nodes of its own cluster")->check(CLI::Range(1, 16))->capture_default_str();
  cmd->add_option("--replicas", o->replicas,
                  "the number of nodes: its own cluster replicates the SKUs on Raft, and the run ends by killing "
                  "the leader and checking every hold again")
    ->check(CLI::Range(1, 16))
    ->capture_default_str();
  add_snapshot_entries(cmd, o->snapshot_entries,
                       "small values make followers the nemesis kept away catch up through a sent state");
  cmd->add_option("--skus", o->skus)->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--stock", o->stock, "units per SKU")->check(CLI::Range(1, 1000000))->capture_default_str();
  cmd->add_option("--workers", o->workers, "client threads")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--dir", o->dir, "keep the cluster, its logs and the ops log here (default: temporary, "
                                   "removed after a pass)");
  cmd->add_option("--attach", o->attach,
                  "run against the cluster `holdfast cluster up --dir DIR` started (left running)");
  cmd->add_option("--workload", o->workload,
                  "holds (reserve/confirm/release), checkout (carts, orders, the gateway process) or mixed")
    ->check(CLI::IsMember({"holds", "checkout", "mixed"}))
    ->capture_default_str();
  cmd->add_option("--png", o->png, "timeline picture (empty: none)")->capture_default_str();
  cmd->callback([&ctx, o] {
    ctx.action = [&ctx, o] {
      o->json = ctx.as_json;
      o->binary = self_executable();
      return run_chaos(*o);
    };
  });
}

}  // namespace holdfast::cli
