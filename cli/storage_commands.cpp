// Storage commands: `holdfast backup` (a hot copy of a node's directory, safe while
// the node runs) and `holdfast check` (reads every record and reports what is wrong).
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <iostream>

#include "cli/commands.hpp"
#include "persistence/data_directory.hpp"
#include "persistence/storage.hpp"

namespace holdfast::cli {
namespace {

// Opens an existing Holdfast directory for reading: no lock (a running node keeps
// its), nothing created.
std::unique_ptr<storage> open_existing(const std::string& path, std::string& error,
                                       bool replay_log = true) {
  storage_options options;
  options.path = path;
  options.read_only = true;
  options.replay_log = replay_log;
  return storage::open(options, error);
}

// Runs the check in a child process: LMDB keeps no page checksums and may abort or fault
// on a damaged page, and a check must report that rather than die of it.
nlohmann::json checked(const std::string& path) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    close(fds[0]);
    nlohmann::json j;
    std::string error;
    if (auto env = open_existing(path, error)) {
      auto r = env->check();
      j = {{"status", r.problems.empty() ? "ok" : "damaged"},
           {"skus", r.skus},
           {"active_holds", r.active_holds},
           {"finished_holds", r.finished_holds},
           {"index_entries", r.index_entries}, {"records", r.records},
           {"snapshot_position", r.snapshot_position},
           {"log_records", r.log_records},
           {"log_torn_bytes", r.log_torn_bytes},
           {"problems", r.problems}};
    } else {
      j = {{"status", "damaged"}, {"problems", {error}}};
    }
    auto text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    for (size_t done = 0; done < text.size();) {
      auto n = write(fds[1], text.data() + done, text.size() - done);
      if (n <= 0) _exit(3);
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string text;
  char buf[65536];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return nlohmann::json::parse(text);
  auto why = WIFSIGNALED(status) ? std::string("signal ") + strsignal(WTERMSIG(status))
                                 : "exit status " + std::to_string(WEXITSTATUS(status));
  return {{"status", "damaged"},
          {"problems",
           {"data.mdb cannot be read through: LMDB stopped on a damaged page (" + why +
            "); restore the directory from a backup"}}};
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
      // The log is copied, not replayed: a running node may be appending to it.
      auto env = open_existing(*data, error, false);
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
      // Nothing there is not damage: a mistyped path is a usage error (exit 2).
      std::error_code ec;
      if (!std::filesystem::exists(*data, ec))
        return fail(ctx, "invalid", *data + ": no such directory (nothing to check)");
      // A running node changes the data between the check's reads: check a backup.
      if (data_directory::in_use(*data))
        return fail(ctx, "in_use",
                    *data + " is in use by a running node: check a copy (holdfast backup --data " +
                      *data + " --to DIR) or stop the node");
      auto j = checked(*data);
      bool sound = j["status"] == "ok";
      if (ctx.as_json) {
        std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      } else {
        if (j.contains("skus"))
          std::cout << *data << ": " << j["skus"] << " SKUs, " << j["active_holds"]
                    << " active holds, " << j["finished_holds"] << " finished holds, "
                    << j["index_entries"] << " hold ids indexed; snapshot at log record "
                    << j["snapshot_position"] << ", " << j["log_records"]
                    << " log records after it\n";
        if (j.value("log_torn_bytes", 0) > 0)
          std::cout << "note: the log ends in a torn record of " << j["log_torn_bytes"]
                    << " bytes (an append that never returned); the next start cuts it\n";
        for (auto& p : j["problems"]) std::cout << "problem: " << p.get<std::string>() << "\n";
        std::cout << (sound ? "ok" : "DAMAGED") << "\n";
      }
      return sound ? 0 : exit_refused;
    };
  });
}

}  // namespace holdfast::cli
