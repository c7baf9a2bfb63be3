// `holdfast demo`: the flash-sale demo (examples/flash_sale.cpp).
#include <iostream>

#include "cli/commands.hpp"
#include "examples/flash_sale.hpp"
#include "protocol/domain.hpp"

namespace holdfast::cli {

void add_demo_command(CLI::App& app, context& ctx) {
  auto demo = std::make_shared<demo_options>();
  auto ttl = std::make_shared<std::string>("1500ms");
  auto* cmd = app.add_subcommand("demo", "flash-sale demo: buyers race for a hot SKU");
  cmd->add_option("--buyers", demo->buyers)->capture_default_str();
  cmd->add_option("--stock", demo->stock)->capture_default_str();
  cmd->add_option("--ttl", *ttl, "hold TTL")->capture_default_str();
  cmd->add_option("--seed", demo->seed)->capture_default_str();
  cmd->add_option("--nodes", demo->nodes, "a local cluster of this many nodes (1: a single node)")
    ->check(CLI::Range(1, 16))
    ->capture_default_str();
  cmd->add_option("--tail-skus", demo->tail_skus, "long-tail SKUs (5 units each) spread over the nodes")
    ->check(CLI::Range(0, 100000))
    ->capture_default_str();
  cmd->add_option("--data", demo->data_dir, "keep the nodes' data here (default: temporary)");
  cmd->add_option("--use-node", demo->node_address,
                  "race on this running node instead of starting one");
  cmd->callback([&ctx, demo, ttl] {
    ctx.action = [&ctx, demo, ttl] {
      demo->hold_ttl_ms = parse_duration_ms(*ttl);
      if (demo->hold_ttl_ms <= 0)
        return fail(ctx, "invalid", "--ttl: expected a duration such as 500ms, 30s, 15m");
      demo->json = ctx.as_json;
      try {
        return run_demo(*demo);
      } catch (const std::exception& e) {
        return fail(ctx, "failed", std::string("demo failed: ") + e.what());
      }
    };
  });
}

}  // namespace holdfast::cli
