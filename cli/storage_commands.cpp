// Offline and hot storage commands: `holdfast backup` and `holdfast check`.
#include <iostream>

#include "cli/commands.hpp"
#include "persistence/lmdb_env.hpp"

namespace holdfast::cli {

void add_storage_commands(CLI::App& app, context& ctx) {
  auto data = std::make_shared<std::string>();
  auto to = std::make_shared<std::string>();
  auto* backup_cmd = app.add_subcommand("backup", "consistent hot copy of a node's data");
  backup_cmd->add_option("--data", *data, "the node's data directory")->required();
  backup_cmd->add_option("--to", *to, "an empty directory for the copy")->required();
  backup_cmd->callback([&ctx, data, to] {
    ctx.action = [&ctx, data, to] {
      std::string error;
      lmdb_options options;
      options.path = *data;
      auto env = lmdb_env::open(options, error);
      if (!env || env->backup(*to, error) != store_status::ok)
        return fail(ctx, "failed", "backup failed: " + error);
      std::cout << "backup of " << *data << " written to " << *to << "\n";
      return 0;
    };
  });
}

}  // namespace holdfast::cli
