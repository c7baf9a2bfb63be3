// `holdfast`: one binary, one subcommand per job (see cli/commands.hpp).
#include "cli/commands.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <vector>

#include "cli/version.hpp"

namespace holdfast::cli {

int fail(const context& ctx, const char* status, const std::string& message) {
  if (ctx.as_json)
    std::cout << nlohmann::json{{"status", status}, {"error", message}}.dump(
                   -1, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
  std::cerr << message << "\n";
  // A role's refusal is a domain outcome (exit 1), like code::forbidden's.
  return std::string(status) == "forbidden" ? exit_refused : exit_usage;
}

const char* refusal_status(const std::string& text, const char* otherwise) {
  return text.rfind("forbidden: ", 0) == 0 ? "forbidden" : otherwise;
}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

// The first word that is neither an option nor a global option's value, when it names
// no command: "unknown command", with the nearest one, instead of CLI11's "A subcommand
// is required".
std::string unknown_command(CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    if (word == "--") return {};
    if (word.rfind("-", 0) == 0) {
      // A global option that takes a value, given apart from it: skip the value.
      if (word.find('=') == std::string::npos) {
        auto* option = app.get_option_no_throw(word);
        if (option && option->get_type_size() != 0 && option->get_expected_min() > 0) ++i;
      }
      continue;
    }
    std::vector<std::string> names;
    for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) names.push_back(sub->get_name());
    if (std::find(names.begin(), names.end(), word) != names.end()) return {};
    std::string nearest;
    size_t best = 3;  // at most two edits away
    for (auto& n : names)
      if (auto d = edit_distance(word, n); d < best) {
        best = d;
        nearest = n;
      }
    if (nearest.empty())  // `sku-create`: a command and more
      for (auto& n : names)
        if (word.rfind(n, 0) == 0 && n.size() > nearest.size()) nearest = n;
    std::string all;
    for (auto& n : names) all += (all.empty() ? "" : ", ") + n;
    return "unknown command '" + word + "'" + (nearest.empty() ? "." : "; did you mean '" + nearest + "'?") +
           " The commands: " + all + " (holdfast --help)";
  }
  return {};
}

}  // namespace holdfast::cli

int main(int argc, char** argv) {
  using namespace holdfast::cli;
  CLI::App app{"Holdfast: sells the last unit exactly once"};
  app.set_version_flag("--version", std::string("holdfast ") + holdfast_version);
  app.require_subcommand(1);
  app.fallthrough();  // --node, --json and --timeout also work after the subcommand
  context ctx;
  app.add_option("--node", ctx.node_address, "node to talk to, HOST:PORT")->capture_default_str();
  app.add_flag("--json", ctx.as_json, "one JSON object per command on stdout");
  add_duration_ms(&app, "--timeout-ms", ctx.timeout_ms,
                  "give up on a call after this long (a mutation is then outcome_unknown)", 1, 3'600'000);

  app.add_option("--token", ctx.token, "log in with this bearer token (a node started with --tokens)")
    ->envname("HOLDFAST_TOKEN");
  app.add_option("--tls-ca", ctx.tls_ca,
                 "connect with TLS; the node's certificate must chain to this CA (PEM file)");
  app.add_option("--tls-cert", ctx.tls_cert,
                 "with --tls-ca: present this client certificate (PEM, holdfast cluster cert): its role applies")
    ->envname("HOLDFAST_TLS_CERT");
  app.add_option("--tls-key", ctx.tls_key, "the client certificate's key (PEM)")->envname("HOLDFAST_TLS_KEY");

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

  // `holdfast node --config node.toml`: the file's keys become flags before parsing.
  std::vector<std::string> args(argv, argv + argc);
  bool json_given = std::find(args.begin() + 1, args.end(), std::string("--json")) != args.end();
  std::vector<std::pair<std::string, std::string>> from_file;  // option name, file:line
  if (auto why = expand_config_file(app, args, from_file); !why.empty()) {
    ctx.as_json = json_given;
    return fail(ctx, "invalid", why);
  }
  std::vector<char*> words;
  for (auto& a : args) words.push_back(a.data());
  argc = static_cast<int>(words.size());
  argv = words.data();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    ctx.as_json = ctx.as_json || json_given;
    if (app.get_subcommands().empty())
      if (auto why = unknown_command(app, argc, argv); !why.empty()) return fail(ctx, "invalid", why);
    // A value from the config file is refused naming where it came from.
    std::string why = e.what();
    for (auto& [name, where] : from_file)
      if (why.rfind(name + ":", 0) == 0 || why.find(name + " ") != std::string::npos) {
        why = "--config " + where + ": " + why;
        break;
      }
    if (why != e.what()) return fail(ctx, "invalid", why);
    // Under --json an argument error is one JSON object too (with CLI11's text on stderr).
    if (ctx.as_json) return fail(ctx, "invalid", e.what());
    app.exit(e);
    return exit_usage;
  }
  if (!ctx.action) return exit_usage;
  return ctx.action();
}
