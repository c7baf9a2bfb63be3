// `holdfast restore`: makes a directory a node can start from a backup. A backup never
// starts as it is (it may be older than what its member acknowledged since, and a second
// live copy of a member would sell its stock twice); a restore first makes sure the member
// it was taken from is gone (it does not answer, and no peer has a live link to it), copies
// the backup into a new directory, and tells every member the next generation of that
// member (cluster/announce.hpp) before marking the copy startable. Members record the
// newest generation they accepted, so the replaced directory never serves again.
#include <nlohmann/json.hpp>

#include <iostream>

#include "cli/commands.hpp"
#include "harness/replace_member.hpp"
#include "client/client.hpp"
#include "client/cluster_file.hpp"
#include "persistence/identity.hpp"
#include "persistence/storage.hpp"

namespace holdfast::cli {

namespace {

struct restore_args {
  std::string from, data, cluster_file;
  bool force = false;
};

int restore(const context& ctx, const restore_args& a) {
  directory_identity identity;
  std::string error;
  if (!read_identity(a.from, identity, error)) return fail(ctx, "invalid", error);
  if (!identity.backup)
    return fail(ctx, "invalid", a.from + " is not a backup made by `holdfast backup` (it is " +
                                  identity.describe() + ")");
  uint64_t generation = identity.generation;
  cluster_config cfg_loaded;
  if (identity.kind == directory_identity::role::member) {
    if (a.cluster_file.empty())
      return fail(ctx, "invalid", a.from + " is a backup of " + identity.describe() +
                                    ": --cluster FILE names the cluster, whose members are asked first");
    cluster_config cfg;
    if (!load_cluster_file(a.cluster_file, cfg, error)) return fail(ctx, "invalid", error);
    std::vector<uint32_t> ids;
    for (auto& m : cfg.members) ids.push_back(m.id);
    if (cfg.name != identity.cluster_name || (!identity.cluster_id.empty() && cfg.id != identity.cluster_id) ||
        !cfg.member(identity.member) || (!identity.members.empty() && ids != identity.members))
      return fail(ctx, "invalid", a.cluster_file + " is not the cluster of this backup (" + identity.describe() + ")");
    auto o = connection_options(ctx, &cfg);
    o.call_timeout_ms = std::min<int64_t>(ctx.timeout_ms, 3'000);
    auto said = ask_members(cfg, identity.member, o);
    if (!said.alive.empty())
      return fail(ctx, "refused", "refusing to restore: " + said.alive +
                                    "; stop it (and be sure its directory is lost) before restoring a backup of it");
    if (said.answered < (cfg.members.size() - 1) / 2 + 1 && cfg.members.size() > 1 && !a.force)
      return fail(ctx, "refused", "refusing to restore: " + std::to_string(said.answered) +
                                    " other members answered, fewer than a majority, so too little shows node " +
                                    std::to_string(identity.member) +
                                    " is gone and which generation is newest; bring them up, or pass --force if you "
                                    "know it is gone");
    generation = std::max(generation, said.generation_seen);
    cfg_loaded = std::move(cfg);
  }
  // The copy goes through the backup path: the snapshot, then the log after it, opened
  // to prove it recovers.
  storage_options source;
  source.path = a.from;
  source.read_only = true;
  source.replay_log = false;
  auto env = storage::open(source, error);
  if (!env || env->backup(a.data, error) != store_status::ok)
    return fail(ctx, "failed", "restore failed: " + error);
  identity.generation = generation + 1;
  identity.lineage.clear();
  identity.extend_lineage();
  if (identity.kind == directory_identity::role::member && cfg_loaded.members.size() > 1) {
    if (auto why = announce_successor(cfg_loaded, identity, a.force, std::min<int64_t>(ctx.timeout_ms, 3'000), a.data + " stays a backup (it does not start)");
        !why.empty())
      return fail(ctx, "refused", why);
  }
  identity.backup = false;
  identity.backup_taken.clear();
  if (!write_identity(a.data, identity, error)) return fail(ctx, "failed", "restore failed: " + error);
  if (ctx.as_json)
    std::cout << nlohmann::json{{"status", "ok"}, {"data", a.data}, {"generation", identity.generation}}.dump()
              << "\n";
  else
    std::cout << "restored " << a.from << " into " << a.data << " as " << identity.describe()
              << "; what the member acknowledged after the backup was taken is not in it\n";
  return 0;
}

}  // namespace

void add_restore_command(CLI::App& app, context& ctx) {
  auto a = std::make_shared<restore_args>();
  auto* cmd = app.add_subcommand("restore", "make a startable data directory from a backup");
  cmd->add_option("--from", a->from, "the backup (made by holdfast backup)")->required();
  cmd->add_option("--data", a->data, "a new or empty directory for the restored node")->required();
  cmd->add_option("--cluster", a->cluster_file, "the cluster file (for a backup of a cluster member)");
  cmd->add_flag("--force", a->force, "restore though no other member answered to confirm the member is gone");
  cmd->callback([&ctx, a] { ctx.action = [&ctx, a] { return restore(ctx, *a); }; });
}

}  // namespace holdfast::cli
