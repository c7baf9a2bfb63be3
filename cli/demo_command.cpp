// `holdfast demo`: the checkout flash sale (examples/checkout_sale.cpp); `demo holds`,
// the reservation race on one hot SKU (examples/flash_sale.cpp).
#include <iostream>

#include "cli/commands.hpp"
#include "examples/checkout_sale.hpp"
#include "examples/flash_sale.hpp"
#include "protocol/domain.hpp"

namespace holdfast::cli {

namespace {

void add_holds_demo(CLI::App& parent, context& ctx) {
  auto demo = std::make_shared<demo_options>();
  auto* cmd = parent.add_subcommand("holds", "the reservation race: buyers reserve, confirm, release, abandon holds");
  cmd->add_option("--buyers", demo->buyers, "buyers racing")->check(CLI::Range(1, 1'000'000))->capture_default_str();
  cmd->add_option("--stock", demo->stock, "units of the hot SKU")->check(CLI::Range(0, 1'000'000'000))->capture_default_str();
  add_duration_ms(cmd, "--ttl", demo->hold_ttl_ms, "hold TTL", 1, request_limits{}.hold_ttl_max_ms);
  cmd->add_option("--seed", demo->seed, "seed of the buyers' choices")->capture_default_str();
  cmd->add_option("--nodes", demo->nodes, "a local cluster of this many nodes (1: a single node)")
    ->check(CLI::Range(1, 16))
    ->capture_default_str();
  cmd->add_option("--tail-skus", demo->tail_skus, "long-tail SKUs (5 units each) spread over the nodes")
    ->check(CLI::Range(0, 100000))
    ->capture_default_str();
  cmd->add_option("--data", demo->data_dir, "keep the nodes' data here (default: temporary)");
  cmd->add_option("--use-node", demo->node_address, "race on this running node instead of starting one");
  cmd->callback([&ctx, demo] {
    ctx.action = [&ctx, demo] {
      demo->json = ctx.as_json;
      try {
        return run_demo(*demo);
      } catch (const std::exception& e) {
        return fail(ctx, "failed", std::string("demo failed: ") + e.what());
      }
    };
  });
}

}  // namespace

void add_demo_command(CLI::App& app, context& ctx) {
  auto demo = std::make_shared<checkout_demo_options>();
  auto* cmd = app.add_subcommand(
    "demo", "the checkout flash sale: users fill carts and check out on a local cluster with the payment gateway");
  cmd->add_option("--users", demo->users, "users shopping")->check(CLI::Range(1, 10'000'000))->capture_default_str();
  cmd->add_option("--stock", demo->hot_stock, "units of the hot SKU")->check(CLI::Range(1, 1'000'000'000))->capture_default_str();
  cmd->add_option("--limit-per-user", demo->limit_per_user, "of the hot SKU")->check(CLI::Range(1, 1000))->capture_default_str();
  cmd->add_option("--tail-skus", demo->tail_skus, "long-tail SKUs, 20 units each")->check(CLI::Range(0, 100'000))->capture_default_str();
  cmd->add_option("--concurrency", demo->concurrency, "users shopping at once")->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--nodes", demo->nodes, "a local cluster of this many nodes")->check(CLI::Range(1, 16))->capture_default_str();
  cmd->add_option("--decline-rate", demo->decline_rate, "the gateway declines this share")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--lost-reply-rate", demo->lost_reply_rate, "the gateway loses this share of replies")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--duplicate-webhook-rate", demo->duplicate_webhook_rate, "webhooks sent twice")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--seed", demo->seed, "seed of the users' choices and the gateway's faults")->capture_default_str();
  cmd->add_option("--data", demo->data_dir, "keep the nodes' data here (default: temporary)");
  add_holds_demo(*cmd, ctx);
  cmd->callback([&ctx, demo, cmd] {
    if (cmd->got_subcommand("holds")) return;
    ctx.action = [&ctx, demo] {
      demo->json = ctx.as_json;
      try {
        return run_checkout_demo(*demo);
      } catch (const std::exception& e) {
        return fail(ctx, "failed", std::string("demo failed: ") + e.what());
      }
    };
  });
}

}  // namespace holdfast::cli
