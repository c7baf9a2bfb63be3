// The `holdfast` binary's command groups. Each file registers its subcommands on the
// app; the one that parsed sets `action`, which main runs. Exit status everywhere:
// 0 success, 1 a domain refusal (out of stock, unknown SKU, a hold that already ended,
// ...), 2 usage errors and calls whose outcome is not known (node unreachable, no
// answer in time).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace holdfast {
class blocking_client;
struct client_options;
struct cluster_config;
enum class code : uint8_t;
}  // namespace holdfast

namespace holdfast::cli {

constexpr int exit_refused = 1;
constexpr int exit_usage = 2;

struct context {
  std::string node_address = "127.0.0.1:7400";
  bool as_json = false;
  int64_t timeout_ms = 15'000;  // a call with no answer by then: outcome_unknown
  std::string tls_ca;           // connect with TLS, trusting this CA (PEM)
  std::string tls_cert;         // ...presenting this client certificate (PEM, `cluster cert`)
  std::string tls_key;          // ...and its key
  std::string token;            // log in with this bearer token (a node with --tokens)
  std::function<int()> action;
};

// How the CLI connects: --timeout-ms, --token, --tls-ca (else, for a cluster file whose
// clients use TLS, its CA), --tls-cert and --tls-key.
client_options connection_options(const context& ctx, const cluster_config* cfg = nullptr);

void add_node_command(CLI::App& app, context& ctx);
void add_inventory_commands(CLI::App& app, context& ctx);
void add_demo_command(CLI::App& app, context& ctx);
void add_bench_commands(CLI::App& app, context& ctx);
void add_storage_commands(CLI::App& app, context& ctx);
void add_restore_command(CLI::App& app, context& ctx);
void add_cluster_commands(CLI::App& app, context& ctx);
void add_chaos_command(CLI::App& app, context& ctx);
void add_cart_commands(CLI::App& app, context& ctx);
void add_gateway_command(CLI::App& app, context& ctx);

// Connects to --node, runs `call`, returns its exit status. A call that reached the node
// but lost its connection is not "unreachable": a mutation's outcome is then unknown.
int with_node(const context& ctx, bool mutation, const std::function<int(blocking_client&)>& call);
// A subcommand whose callback runs `call` against the node.
void on_node(CLI::App* cmd, context& ctx, bool mutation, std::function<int(blocking_client&)> call);
// The exit status of a domain outcome.
int exit_code(code c);

// A wall-clock time in Unix ms as people read it: "2026-12-06 18:45:12 UTC".
std::string utc_text(int64_t unix_ms);
// A span of seconds: "45s", "14m59s", "3h2m", "2d4h".
std::string span_text(int64_t seconds);
// "90s", "15m", "24h", "1500ms": the largest unit that divides `ms` whole.
std::string duration_text(int64_t ms);
// --snapshot-entries of a command that makes its own replicated cluster (bench cluster,
// chaos): the cluster file's raft_snapshot_entries, within its bounds; 0 (not given) keeps
// the file's default. `what` says what small values do there.
CLI::Option* add_snapshot_entries(CLI::App* cmd, int& entries, const std::string& what);
// A duration option, in ms: "1500" (a bare number is ms, the old spelling), "1500ms",
// "30s", "15m", "24h", within [min_ms, max_ms]. A `--x-ms` flag is also named `--x`.
CLI::Option* add_duration_ms(CLI::App* cmd, const std::string& flag, int64_t& ms, const std::string& description,
                             int64_t min_ms, int64_t max_ms);
// `holdfast CMD --config FILE` for a command with a --config option: the file's keys
// (TOML, every long flag a key, without its dashes) are inserted into `args` as flags,
// except those the command line (or an option's environment variable) gives itself.
// `origins`: each inserted option's name and the file:line it came from. Returns why the
// file cannot be used, or "".
std::string expand_config_file(CLI::App& app, std::vector<std::string>& args,
                               std::vector<std::pair<std::string, std::string>>& origins);

// Usage and connection errors: exit 2 (status "forbidden": 1, a role's refusal), and
// under --json still one object on stdout.
int fail(const context& ctx, const char* status, const std::string& message);
// "forbidden" for a refusal text a node sent for the connection's role ("forbidden: ..."),
// else `otherwise`.
const char* refusal_status(const std::string& text, const char* otherwise);

}  // namespace holdfast::cli
