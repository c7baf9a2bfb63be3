// `holdfast`: one binary, one subcommand per job. Exit status: 0 success, 1 a domain
// refusal (out of stock, unknown SKU, ...), 2 usage or connection errors.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

#include "bench/hot_sku.hpp"
#include "bench/many_skus.hpp"
#include "cluster/client.hpp"
#include "cluster/node.hpp"
#include "examples/flash_sale.hpp"
#include "persistence/lmdb_env.hpp"

using namespace holdfast;
using json = nlohmann::json;

namespace {

constexpr int exit_refused = 1;
constexpr int exit_usage = 2;

json to_json(const hold_info& h) {
  return {{"hold", h.hold_id},     {"sku", h.sku},
          {"qty", h.qty},          {"state", to_string(h.state)},
          {"deadline_ms", h.deadline_ms}};
}

json to_json(const sku_info& s) {
  return {{"sku", s.sku},           {"on_hand", s.on_hand},   {"reserved", s.reserved},
          {"available", s.available()}, {"price", s.price_cents}, {"sold", s.sold},
          {"stocked", s.stocked},   {"active_holds", s.active_holds}};
}

int exit_code(code c) {
  if (c == code::ok) return 0;
  return c == code::invalid ? exit_usage : exit_refused;
}

int print(const hold_result& r, bool as_json, const char* verb) {
  bool has_hold = r.status == code::ok || r.status == code::hold_expired ||
                  r.status == code::hold_conflict || r.status == code::wrong_state;
  if (as_json) {
    json j{{"status", to_string(r.status)}};
    if (has_hold) j.update(to_json(r.hold));
    if (r.status == code::out_of_stock) j["available"] = r.available;
    if (!r.message.empty()) j["error"] = r.message;
    std::cout << j.dump() << "\n";
  } else if (r.status == code::ok) {
    std::cout << verb << " hold " << r.hold.hold_id << ": " << r.hold.qty << " x " << r.hold.sku
              << ", state " << to_string(r.hold.state) << ", deadline_ms " << r.hold.deadline_ms
              << "\n";
  } else {
    std::cerr << to_string(r.status);
    if (r.status == code::out_of_stock) std::cerr << ": " << r.available << " available";
    if (has_hold)
      std::cerr << ": hold " << r.hold.hold_id << " on " << r.hold.sku << " is "
                << to_string(r.hold.state);
    if (!r.message.empty()) std::cerr << ": " << r.message;
    std::cerr << "\n";
  }
  return exit_code(r.status);
}

int print(const sku_result& r, bool as_json) {
  bool has_sku = r.status == code::ok || r.status == code::sku_exists ||
                 r.status == code::insufficient;
  if (as_json) {
    json j{{"status", to_string(r.status)}};
    if (has_sku) j.update(to_json(r.sku));
    if (!r.message.empty()) j["error"] = r.message;
    std::cout << j.dump() << "\n";
  } else if (r.status == code::ok) {
    const auto& s = r.sku;
    std::cout << s.sku << ": on_hand " << s.on_hand << ", reserved " << s.reserved
              << ", available " << s.available() << ", price " << s.price_cents
              << " cents, sold " << s.sold << ", active holds " << s.active_holds << "\n";
  } else {
    std::cerr << to_string(r.status) << (r.message.empty() ? "" : ": " + r.message) << "\n";
  }
  return exit_code(r.status);
}

// Usage and connection errors: exit 2, and under --json still one object on stdout.
int fail(bool as_json, const char* status, const std::string& message) {
  if (as_json) std::cout << json{{"status", status}, {"error", message}}.dump() << "\n";
  std::cerr << message << "\n";
  return exit_usage;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Holdfast: sells the last unit exactly once"};
  app.require_subcommand(1);
  app.fallthrough();  // --node and --json also work after the subcommand
  std::string node_address = "127.0.0.1:7400";
  bool as_json = false;
  app.add_option("--node", node_address, "node to talk to, HOST:PORT")->capture_default_str();
  app.add_flag("--json", as_json, "one JSON object per command on stdout");

  // -- node --------------------------------------------------------------------
  node_options node;
  auto* node_cmd = app.add_subcommand("node", "run a node");
  node_cmd->add_option("--data", node.data_dir, "data directory (LMDB)")->required();
  node_cmd->add_option("--listen", node.server.listen, "HOST:PORT to serve (port 0: any)")
    ->capture_default_str();
  node_cmd->add_option("--map-size-mb", node.map_size_mb, "LMDB map size, MiB")
    ->capture_default_str();
  node_cmd->add_option("--idle-ms", node.idle_ms, "passivate SKU actors idle this long, ms")
    ->capture_default_str();
  node_cmd->add_option("--scheduler", node.scheduler, "CAF scheduler policy")
    ->check(CLI::IsMember({"sharing", "stealing"}))
    ->capture_default_str();
  node_cmd->add_option("--worker-threads", node.worker_threads,
                       "CAF worker threads (0: CAF's default)")
    ->capture_default_str();
  node_cmd->add_option("--request-timeout-ms", node.server.request_timeout_ms,
                       "answer outcome_unknown after this long, ms")
    ->capture_default_str();
  node_cmd->add_option("--inflight-max", node.server.inflight_max,
                       "calls in flight before callers get OVERLOADED")
    ->capture_default_str();
  node_cmd->add_option("--batch-max", node.server.limits.batch_size_max,
                       "most operations in one batch call")
    ->capture_default_str();

  // -- demo --------------------------------------------------------------------
  demo_options demo;
  std::string demo_ttl = "1500ms";
  auto* demo_cmd = app.add_subcommand("demo", "flash-sale demo: buyers race for a hot SKU");
  demo_cmd->add_option("--buyers", demo.buyers)->capture_default_str();
  demo_cmd->add_option("--stock", demo.stock)->capture_default_str();
  demo_cmd->add_option("--ttl", demo_ttl, "hold TTL")->capture_default_str();
  demo_cmd->add_option("--seed", demo.seed)->capture_default_str();
  demo_cmd->add_option("--data", demo.data_dir, "keep the node's data here (default: temporary)");
  demo_cmd->add_option("--use-node", demo.node_address,
                       "race on this running node instead of starting one");

  // -- inventory commands --------------------------------------------------------
  auto* sku_cmd = app.add_subcommand("sku", "create or show an SKU");
  sku_cmd->require_subcommand(1);
  std::string sku;
  int64_t stock = 0, price = 0, qty = 0;
  auto* sku_create = sku_cmd->add_subcommand("create", "create an SKU");
  sku_create->add_option("SKU", sku)->required();
  sku_create->add_option("--stock", stock, "units on hand")->required();
  sku_create->add_option("--price", price, "price in cents")->required();
  auto* sku_show = sku_cmd->add_subcommand("show", "show an SKU");
  sku_show->add_option("SKU", sku)->required();

  std::string hold_id, ttl = "15m";
  auto* reserve_cmd = app.add_subcommand("reserve", "hold units of an SKU");
  reserve_cmd->add_option("SKU", sku)->required();
  reserve_cmd->add_option("QTY", qty)->required();
  reserve_cmd->add_option("--hold", hold_id, "hold id (idempotency key)")->required();
  reserve_cmd->add_option("--ttl", ttl, "how long the hold lasts: 500ms, 30s, 15m, 2h")
    ->capture_default_str();
  auto* confirm_cmd = app.add_subcommand("confirm", "turn a hold into a sale");
  confirm_cmd->add_option("HOLD", hold_id)->required();
  confirm_cmd->add_option("--sku", sku, "the hold's SKU (saves a lookup)");
  auto* release_cmd = app.add_subcommand("release", "give a hold's units back");
  release_cmd->add_option("HOLD", hold_id)->required();
  release_cmd->add_option("--sku", sku, "the hold's SKU (saves a lookup)");
  auto* hold_cmd = app.add_subcommand("hold", "inspect holds");
  hold_cmd->require_subcommand(1);
  auto* hold_show = hold_cmd->add_subcommand("show", "show a hold");
  hold_show->add_option("HOLD", hold_id)->required();
  hold_show->add_option("--sku", sku, "the hold's SKU");
  auto* restock_cmd = app.add_subcommand("restock", "add units to an SKU");
  restock_cmd->add_option("SKU", sku)->required();
  restock_cmd->add_option("QTY", qty)->required();
  auto* adjust_cmd = app.add_subcommand("adjust", "set an SKU's on-hand count (stock take)");
  adjust_cmd->add_option("SKU", sku)->required();
  adjust_cmd->add_option("ON_HAND", qty)->required();

  // -- bench -------------------------------------------------------------------
  auto* bench_cmd = app.add_subcommand("bench", "benchmarks");
  bench_cmd->require_subcommand(1);
  bench::hot_sku_options hot;
  auto* hot_cmd = bench_cmd->add_subcommand(
    "hot-sku", "durable reservations on one SKU: Holdfast, Redis + Lua, PostgreSQL side by side");
  hot_cmd->add_option("--seconds", hot.seconds, "measured time per row")->capture_default_str();
  hot_cmd->add_option("--callers", hot.callers, "concurrent callers")->capture_default_str();
  hot_cmd->add_option("--depth", hot.depth_pipelined, "calls outstanding per caller in row 1b")
    ->capture_default_str();
  hot_cmd->add_option("--connections", hot.connections, "load generator connections per thread")
    ->capture_default_str();
  hot_cmd->add_option("--threads", hot.threads, "load generator threads")->capture_default_str();
  hot_cmd->add_option("--png", hot.png, "picture to write (empty: none)")->capture_default_str();
  hot_cmd->add_option("--use-node", hot.node_address, "measure a running node at HOST:PORT");
  bool no_peers = false;
  hot_cmd->add_flag("--no-peers", no_peers, "skip the Redis and PostgreSQL rows");

  bench::many_skus_options many;
  auto* many_cmd = bench_cmd->add_subcommand(
    "many-skus", "a large catalog: create, random reserves, memory per idle SKU, restart time");
  many_cmd->add_option("--skus", many.skus, "SKUs to create")->capture_default_str();
  many_cmd->add_option("--holds", many.holds, "random reservations, left outstanding")
    ->capture_default_str();
  many_cmd->add_option("--outstanding", many.outstanding, "calls in flight")->capture_default_str();
  many_cmd->add_option("--idle-ms", many.idle_ms, "node's SKU actor idle time before passivation")
    ->capture_default_str();

  std::string backup_data, backup_to;
  auto* backup_cmd = app.add_subcommand("backup", "consistent hot copy of a node's data");
  backup_cmd->add_option("--data", backup_data, "the node's data directory")->required();
  backup_cmd->add_option("--to", backup_to, "an empty directory for the copy")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_usage;
  }

  if (node_cmd->parsed()) return run_node(node);
  if (demo_cmd->parsed()) {
    demo.hold_ttl_ms = parse_duration_ms(demo_ttl);
    if (demo.hold_ttl_ms <= 0) {
      std::cerr << "--ttl: expected a duration such as 500ms, 30s, 15m\n";
      return exit_usage;
    }
    demo.json = as_json;
    try {
      return run_demo(demo);
    } catch (const std::exception& e) {
      std::cerr << "demo failed: " << e.what() << "\n";
      return exit_usage;
    }
  }
  if (hot_cmd->parsed()) {
    hot.json = as_json;
    hot.peers = !no_peers;
    try {
      return bench::run_hot_sku(hot);
    } catch (const std::exception& e) {
      return fail(as_json, "failed", std::string("bench failed: ") + e.what());
    }
  }
  if (many_cmd->parsed()) {
    many.json = as_json;
    try {
      return bench::run_many_skus(many);
    } catch (const std::exception& e) {
      return fail(as_json, "failed", std::string("bench failed: ") + e.what());
    }
  }
  if (backup_cmd->parsed()) {
    std::string error;
    lmdb_options options;
    options.path = backup_data;
    auto env = lmdb_env::open(options, error);
    if (!env || env->backup(backup_to, error) != store_status::ok) {
      std::cerr << "backup failed: " << error << "\n";
      return exit_usage;
    }
    std::cout << "backup of " << backup_data << " written to " << backup_to << "\n";
    return 0;
  }

  try {
    blocking_client c(node_address);
    if (sku_create->parsed()) return print(c.create_sku(sku, stock, price), as_json);
    if (sku_show->parsed()) return print(c.query_sku(sku), as_json);
    if (restock_cmd->parsed()) return print(c.restock(sku, qty), as_json);
    if (adjust_cmd->parsed()) return print(c.adjust(sku, qty), as_json);
    if (reserve_cmd->parsed()) {
      auto ttl_ms = parse_duration_ms(ttl);
      if (ttl_ms <= 0)
        return fail(as_json, "invalid", "--ttl: expected a duration such as 500ms, 30s, 15m");
      return print(c.reserve(sku, qty, hold_id, ttl_ms), as_json, "reserved");
    }
    if (confirm_cmd->parsed()) return print(c.confirm(hold_id, sku), as_json, "confirmed");
    if (release_cmd->parsed()) return print(c.release(hold_id, sku), as_json, "released");
    if (hold_show->parsed()) return print(c.query_hold(hold_id, sku), as_json, "");
  } catch (const std::exception& e) {
    return fail(as_json, "unreachable", e.what());
  } catch (const kj::Exception& e) {
    return fail(as_json, "unreachable",
                "node " + node_address + ": " + e.getDescription().cStr());
  }
  return exit_usage;
}
