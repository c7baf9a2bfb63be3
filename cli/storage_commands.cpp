// Storage commands: `holdfast backup` (a hot copy of a node's directory, safe while
// the node runs) and `holdfast check` (reads every record and reports what is wrong).
#include <nlohmann/json.hpp>

#include <iostream>

#include "cli/commands.hpp"
#include "persistence/lmdb_env.hpp"

namespace holdfast::cli {
namespace {

// Opens an existing Holdfast directory for reading: no lock (a running node keeps
// its), nothing created.
std::unique_ptr<lmdb_env> open_existing(const std::string& path, std::string& error) {
  lmdb_options options;
  options.path = path;
  options.read_only = true;
  return lmdb_env::open(options, error);
}

}  // namespace

void add_storage_commands(CLI::App& app, context& ctx) {
  auto data = std::make_shared<std::string>();
  auto to = std::make_shared<std::string>();
  auto* backup_cmd = app.add_subcommand("backup", "consistent hot copy of a node's data");
  backup_cmd->add_option("--data", *data, "the node's data directory")->required();
  backup_cmd->add_option("--to", *to, "a new or empty directory for the copy")->required();
  backup_cmd->callback([&ctx, data, to] {
    ctx.action = [&ctx, data, to] {
      std::string error;
      auto env = open_existing(*data, error);
      if (!env || env->backup(*to, error) != store_status::ok)
        return fail(ctx, "failed", "backup failed: " + error);
      if (ctx.as_json)
        std::cout << nlohmann::json{{"status", "ok"}, {"data", *data}, {"to", *to}}.dump() << "\n";
      else
        std::cout << "backup of " << *data << " written to " << *to << "\n";
      return 0;
    };
  });

  auto* check_cmd = app.add_subcommand(
    "check", "verify a data directory: checksums, SKU invariants, holds, the hold-id index");
  check_cmd->add_option("--data", *data, "the data directory")->required();
  check_cmd->callback([&ctx, data] {
    ctx.action = [&ctx, data] {
      std::string error;
      auto env = open_existing(*data, error);
      if (!env) {
        if (ctx.as_json)
          std::cout << nlohmann::json{{"status", "damaged"}, {"problems", {error}}}.dump(
                         -1, ' ', false, nlohmann::json::error_handler_t::replace)
                    << "\n";
        else
          std::cerr << "check " << *data << ": " << error << "\n";
        return exit_refused;
      }
      auto report = env->check();
      bool sound = report.problems.empty();
      if (ctx.as_json) {
        nlohmann::json j{{"status", sound ? "ok" : "damaged"},
                         {"skus", report.skus},
                         {"active_holds", report.active_holds},
                         {"finished_holds", report.finished_holds},
                         {"index_entries", report.index_entries},
                         {"log_blocks", report.log_blocks},
                         {"problems", report.problems}};
        std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      } else {
        std::cout << *data << ": " << report.skus << " SKUs, " << report.active_holds
                  << " active holds, " << report.finished_holds << " finished holds, "
                  << report.index_entries << " hold ids indexed, " << report.log_blocks
                  << " hold-log blocks\n";
        for (auto& p : report.problems) std::cout << "problem: " << p << "\n";
        std::cout << (sound ? "ok" : "DAMAGED") << "\n";
      }
      return sound ? 0 : exit_refused;
    };
  });
}

}  // namespace holdfast::cli
