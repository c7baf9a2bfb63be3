// `holdfast`: one binary, one subcommand per job (see cli/commands.hpp).
#include "cli/commands.hpp"

#include <nlohmann/json.hpp>

#include <iostream>

namespace holdfast::cli {

int fail(const context& ctx, const char* status, const std::string& message) {
  if (ctx.as_json)
    std::cout << nlohmann::json{{"status", status}, {"error", message}}.dump(
                   -1, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
  std::cerr << message << "\n";
  return exit_usage;
}

}  // namespace holdfast::cli

// jemalloc (linked into this binary) reads its options from this symbol: a background
// thread returns freed pages after a second, so an idle node's resident size follows
// what it holds rather than its peak (MALLOC_CONF in the environment still overrides).
extern "C" const char* malloc_conf;
const char* malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";

int main(int argc, char** argv) {
  using namespace holdfast::cli;
  CLI::App app{"Holdfast: sells the last unit exactly once"};
  app.require_subcommand(1);
  app.fallthrough();  // --node, --json and --timeout also work after the subcommand
  context ctx;
  app.add_option("--node", ctx.node_address, "node to talk to, HOST:PORT")->capture_default_str();
  app.add_flag("--json", ctx.as_json, "one JSON object per command on stdout");
  app.add_option("--timeout-ms", ctx.timeout_ms,
                 "give up on a call after this long, ms (a mutation is then outcome_unknown)")
    ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}))
    ->capture_default_str();

  app.add_option("--tls-ca", ctx.tls_ca,
                 "connect with TLS; the node's certificate must chain to this CA (PEM file)");

  add_node_command(app, ctx);
  add_demo_command(app, ctx);
  add_inventory_commands(app, ctx);
  add_bench_commands(app, ctx);
  add_storage_commands(app, ctx);
  add_restore_command(app, ctx);
  add_cluster_commands(app, ctx);
  add_chaos_command(app, ctx);
  add_cart_commands(app, ctx);
  add_gateway_command(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_usage;
  }
  if (!ctx.action) return exit_usage;
  return ctx.action();
}
