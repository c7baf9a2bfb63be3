// `holdfast node`: run a node in this process; `holdfast token new`: a token for it.
#include "cli/commands.hpp"

#include <nlohmann/json.hpp>

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>

#include "client/cluster_file.hpp"
#include "cluster/node.hpp"
#include "cluster/roles.hpp"
#include "cli/version.hpp"

namespace holdfast::cli {

void add_node_command(CLI::App& app, context& ctx) {
  auto node = std::make_shared<node_options>();
  auto* cmd = app.add_subcommand("node", "run a node");
  node->server.version = holdfast_version;
  auto config_file = std::make_shared<std::string>();  // read before parsing: cli/options.cpp
  cmd->add_option("--config", *config_file, "read options from this TOML file: every long flag is a key, without its "
                              "dashes (examples/node.toml); flags given here override it")
    ->check(CLI::ExistingFile);
  cmd->add_option("--data", node->data_dir, "data directory (LMDB)")->required();
  auto* listen = cmd->add_option("--listen", node->server.listen, "HOST:PORT to serve (port 0: any)")
    ->capture_default_str();
  cmd->add_option("--map-size-mb", node->map_size_mb, "LMDB map size, MiB")
    ->check(CLI::Range(size_t{16}, size_t{1} << 24))
    ->capture_default_str();
  add_duration_ms(cmd, "--idle-ms", node->idle_ms, "passivate SKU and cart actors idle this long", 1, 86'400'000);
  cmd->add_option("--payment-decline-rate", node->payment_decline_rate,
                  "the in-process simulated gateway declines this share of authorizations")
    ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--payment-seed", node->payment_seed, "the in-process simulated gateway's seed");
  cmd->add_option("--gateway", node->gateway_url,
                  "the payment gateway process, http://HOST:PORT (default: the simulated gateway in-process)");
  add_duration_ms(cmd, "--payment-timeout-ms", node->payment_timeout_ms,
                  "a payment call not answered by then is unknown (looked up by its key)",
                  1, 3'600'000);
  cmd->add_option("--http", node->server.http_listen,
                  "HOST:PORT of the node's HTTP endpoint (/metrics, /health, /ready, payment webhooks); port 0: any");
  cmd->add_option("--webhook-secret", node->server.webhook_secret,
                  "payment webhooks must be signed with this secret")
    ->envname("HOLDFAST_WEBHOOK_SECRET");
  cmd->add_option("--order-events-retention", node->order_events_retention,
                  "order events kept (the outbox `order events` reads); older ones are deleted")
    ->check(CLI::Range(uint64_t{1000}, uint64_t{1'000'000'000}))
    ->capture_default_str();
  cmd->add_option("--crash-at", node->crash_at,
                  "TESTS ONLY: die at a saga step (reserve, authorize, confirm, capture; "
                  "STEP:answered dies when its answer arrives, before it is written)")
    ->group("Testing");
  cmd->add_option("--scheduler", node->scheduler, "CAF scheduler policy")
    ->check(CLI::IsMember({"sharing", "stealing"}))
    ->capture_default_str();
  cmd->add_option("--worker-threads", node->worker_threads,
                  "CAF worker threads (0: the cores less two, at least 1)")
    ->check(CLI::Range(0, 1024))
    ->capture_default_str();
  add_duration_ms(cmd, "--request-timeout-ms", node->server.request_timeout_ms,
                  "answer outcome_unknown after this long",
                  1, 3'600'000);
  cmd->add_option("--inflight-max", node->server.inflight_max,
                  "operations in flight before callers get OVERLOADED")
    ->check(CLI::Range(size_t{1}, size_t{100'000'000}))
    ->capture_default_str();
  cmd->add_option("--batch-max", node->server.limits.batch_size_max,
                  "most hold or SKU operations in one batch call, at least a cart's " +
                    std::to_string(cart_lines_max) + " lines (a checkout holds them in one batch); cart and "
                    "order batches: at most " + std::to_string(entity_batch_max))
    ->check(CLI::Range(cart_lines_max, hold_batch_limit))
    ->capture_default_str();
  cmd->add_option("--connection-inflight-max", node->server.connection_inflight_max,
                  "operations in flight from one connection before it gets OVERLOADED")
    ->check(CLI::Range(size_t{1}, size_t{100'000'000}))
    ->capture_default_str();
  cmd->add_option("--connection-unfinished-max", node->server.connection_unfinished_max,
                  "calls a connection has not sent Finish for before it is closed")
    ->check(CLI::Range(size_t{1}, size_t{100'000'000}))
    ->capture_default_str();
  cmd->add_option("--connections-max", node->server.connections_max,
                  "open client connections; more are closed at once")
    ->check(CLI::Range(size_t{1}, size_t{1'000'000}))
    ->capture_default_str();
  add_duration_ms(cmd, "--idle-timeout-ms", node->server.idle_timeout_ms,
                  "close a connection with nothing in flight and no bytes for this long",
                  1, 7 * 86'400'000);
  add_duration_ms(cmd, "--frame-timeout-ms", node->server.frame_timeout_ms,
                  "close a connection that begins a frame (or an HTTP body) and does not finish it",
                  1, 3'600'000);
  cmd->add_option("--read-budget-mb", node->server.read_budget_mb,
                  "MiB of request frames being read at once over every connection; a frame that would pass "
                  "it closes its connection (at least one largest frame and 1 MiB, 33)")
    // One largest frame beside the small ones in progress (which are never refused).
    ->check(CLI::Range(uint64_t{(wire_words_max * 8 >> 20) + 1}, uint64_t{1} << 20))
    ->capture_default_str();
  add_duration_ms(cmd, "--write-stall-timeout-ms", node->server.write_stall_timeout_ms,
                  "close a connection that does not read its answers for this long",
                  1, 3'600'000);
  add_duration_ms(cmd, "--finished-hold-retention", node->finished_hold_retention_ms,
                  "finished holds answer repeated calls this long, then are deleted", 1, 3650LL * 86'400'000);
  cmd->add_option("--log-level", node->log_level, "trace, debug, info, warn, error, off")
    ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
    ->capture_default_str();
  cmd->add_option("--log-format", node->log_format,
                  "text, or json: each log line one JSON object (time UTC, level, thread, msg) for log shippers")
    ->check(CLI::IsMember({"text", "json"}))
    ->capture_default_str();
  cmd->add_option("--log-segment-mb", node->log_segment_mb,
                  "preallocated size of a log segment, MiB")
    ->check(CLI::Range(1, 4096));
  add_duration_ms(cmd, "--snapshot-interval-ms", node->snapshot_interval_ms,
                  "changes wait at most this long in the log before an LMDB snapshot",
                  10, 3'600'000);
  auto tokens_file = std::make_shared<std::string>();
  cmd->add_option("--tokens", *tokens_file,
                  "bearer tokens and their roles (TOML, `holdfast token new`): clients must log in "
                  "with one (holdfast --token); without it every client may do everything")
    ->check(CLI::ExistingFile);
  cmd->add_option("--cluster", node->cluster_file,
                  "cluster file (TOML) shared by every member; with --id");
  cmd->add_option("--id", node->node_id, "this node's id in the cluster file")
    ->check(CLI::Range(1, 65535));
  cmd->add_flag("--fault-hooks", node->fault_hooks,
                "TESTS ONLY: let `holdfast chaos` cut this node's peer links")
    ->group("Testing");
  cmd->add_flag("--unsafe-no-sync", node->unsafe_no_sync,
                "TESTS ONLY: do not fsync commits (acknowledged writes can be lost)")
    ->group("Testing");
  cmd->callback([&ctx, node, listen, config_file, tokens_file] {  // config_file: kept alive for CLI11
    ctx.action = [&ctx, node, listen, tokens_file] {
      if (!tokens_file->empty()) {
        auto tokens = std::make_shared<token_table>();
        if (auto why = load_tokens(*tokens_file, *tokens); !why.empty()) return fail(ctx, "invalid", why);
        node->server.tokens = std::move(tokens);
      }
      if (node->cluster_file.empty() != (node->node_id == 0))
        return fail(ctx, "invalid", "--cluster and --id go together");
      if (!node->cluster_file.empty() && listen->count() > 0)
        return fail(ctx, "invalid",
                    "--listen does not apply with --cluster: the node serves the client "
                    "address its [[node]] entry names");
      // Out of memory or threads (ulimit -v, a container's limits) throws from wherever it
      // happens, most often while the node starts (its storage, CAF's scheduler): refuse
      // to start with why rather than abort. Nothing unlogged was acknowledged, and other
      // threads may be running, so exit without unwinding them.
      try {
        return run_node(*node);
      } catch (const std::exception& e) {
        spdlog::critical("holdfast node: refusing to start (or stopping) on {}: {}", node->data_dir,
                         dynamic_cast<const std::bad_alloc*>(&e) ? "out of memory" : e.what());
        spdlog::shutdown();
        std::_Exit(2);
      }
    };
  });

  // `holdfast token new`: a token for --tokens, and the entry that grants it.
  auto* token_cmd = app.add_subcommand("token", "bearer tokens for a node started with --tokens");
  token_cmd->require_subcommand(1);
  auto made = std::make_shared<std::pair<std::string, std::string>>("", "client");
  auto* token_new = token_cmd->add_subcommand(
    "new", "print a new random token (give it to the client) and its [[token]] entry (append it to the tokens file)");
  token_new->add_option("--name", made->first, "who holds it, e.g. shop-1: 1..64 letters, digits, '.', '_', '-'")
    ->required()
    ->check(CLI::Validator(
      [](std::string& name) -> std::string {
        return valid_token_name(name) ? "" : "'" + name + "': 1..64 letters, digits, '.', '_' or '-'";
      },
      "NAME"));
  token_new->add_option("--role", made->second, "admin or client")
    ->check(CLI::IsMember({"admin", "client"}))
    ->capture_default_str();
  token_new->callback([&ctx, made] {
    ctx.action = [&ctx, made] {
      auto token = new_token();
      auto entry = "[[token]]\nname = \"" + made->first + "\"\nrole = \"" + made->second + "\"\nsha256 = \"" +
                   sha256_hex(token) + "\"\n";
      if (ctx.as_json)
        std::cout << nlohmann::json{{"status", "ok"}, {"token", token}, {"name", made->first},
                                    {"role", made->second}, {"entry", entry}}.dump()
                  << "\n";
      else
        std::cout << "token: " << token << "\n\n# append to the node's tokens file (--tokens):\n" << entry;
      return 0;
    };
  });
}

}  // namespace holdfast::cli
