// `holdfast cluster init|up|status|down|placement`: a local cluster on loopback and
// questions about any cluster.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "cluster/certs.hpp"
#include "client/client.hpp"
#include "client/placement.hpp"
#include "harness/local_cluster.hpp"
#include "harness/processes.hpp"
#include "harness/replace_member.hpp"

namespace holdfast::cli {
namespace {

struct cluster_args {
  int nodes = 3;
  int replicas = 1;
  std::string dir = "holdfast-cluster";
  std::string file;  // --cluster; default DIR/cluster.toml
  int base_port = 7401;
  std::string name = "holdfast-local";
  bool client_tls = false;
  bool client_certs = false;
  bool fault_hooks = false;
  std::vector<std::string> keys;
  uint32_t to = 0;  // rebalance: 0 = the preferred node
  bool force = false;  // replace: though fewer than a majority of the others answered
  std::string cluster_file() const { return file.empty() ? dir + "/cluster.toml" : file; }
};

std::string ms_text(int64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fms", us / 1000.0);
  return buf;
}

// Every member's status; a member that does not answer is "down".
int print_status(const context& ctx, const cluster_config& cfg) {
  nlohmann::json out = nlohmann::json::array();
  auto o = connection_options(ctx, &cfg);
  o.call_timeout_ms = std::min<int64_t>(ctx.timeout_ms, 3'000);
  if (!ctx.as_json)
    std::printf("cluster %s (file hash %s)\n%-5s %-6s %-21s %-9s %-8s %8s %10s %10s  %s\n", cfg.name.c_str(),
                cfg.hash.c_str(), "node", "state", "address", "version", "up", "skus", "calls/s", "forwarded",
                "links (peer:state rtt)");
  int down = 0;
  for (auto& m : cfg.members) {
    nlohmann::json j{{"node", m.id}, {"address", m.client}};
    std::string raft_lines;
    try {
      blocking_client c(m.client, o);
      auto s = c.status();
      j["state"] = s.file_hash != cfg.hash     ? "up, other cluster file"
                   : !s.not_serving.empty() ? "up, NOT SERVING"
                                            : "up";
      j["not_serving"] = s.not_serving;
      j["generation"] = s.generation;
      j["incarnation"] = s.incarnation;
      j["skus_active"] = s.skus_active;
      j["calls_per_second"] = s.calls_per_second;
      j["calls_total"] = s.calls_total;
      j["forwarded_total"] = s.forwarded_total;
      j["file_hash"] = s.file_hash;
      j["version"] = s.version;
      j["started"] = utc_text(s.started_ms);
      auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
      auto up = span_text(std::max<int64_t>(0, (now_ms - s.started_ms) / 1000));
      j["uptime"] = up;
      std::string links;
      nlohmann::json lj = nlohmann::json::array();
      for (auto& l : s.links) {
        links += std::to_string(l.node) + ":" + l.state +
                 (l.state == "up" ? " " + ms_text(l.rtt_us) : "") + "  ";
        lj.push_back({{"node", l.node}, {"state", l.state}, {"detail", l.detail}, {"generation", l.generation},
                      {"rtt_us", l.rtt_us}, {"incarnation", l.incarnation},
                      {"since_ms", l.since_ms}, {"forwarded", l.forwarded}, {"downs", l.downs}});
      }
      j["links"] = lj;
      if (s.raft.present) {
        auto& r = s.raft;
        nlohmann::json fj = nlohmann::json::array();
        std::string lags;
        for (auto& f : r.followers) {
          fj.push_back({{"node", f.node}, {"match_index", f.match_index}, {"lag", f.lag}});
          lags += " " + std::to_string(f.node) + ":" + std::to_string(f.lag);
        }
        nlohmann::json sj = nlohmann::json::array();
        std::string group;
        for (auto& v : r.servers) {
          sj.push_back({{"replica", v.replica}, {"node", v.node}, {"role", v.role}, {"address", v.address}});
          group += std::string(group.empty() ? "" : " ") + std::to_string(v.node) +
                   (v.replica != v.node ? "(replica " + std::to_string(v.replica) + ")" : "") +
                   (v.role != "voter" ? "(" + v.role + ")" : "");
        }
        j["raft"] = {{"state", r.state}, {"serving", r.serving}, {"term", r.term}, {"commit_index", r.commit_index},
                     {"replica", r.replica}, {"servers", sj},
                     {"last_applied", r.last_applied}, {"leader", r.leader}, {"followers", fj},
                     {"snapshot_index", r.snapshot_index}, {"snapshots_taken", r.snapshots_taken},
                     {"states_installed", r.states_installed}};
        raft_lines += "      sku group: " + r.state + (r.serving ? " (serving)" : "") + ", term " +
                      std::to_string(r.term) + ", commit " + std::to_string(r.commit_index) + ", applied " +
                      std::to_string(r.last_applied) + ", leader " +
                      (r.leader ? "node " + std::to_string(r.leader) : std::string("none")) +
                      (lags.empty() ? "" : ", lag per follower" + lags) +
                      (r.snapshot_index ? ", snapshot at " + std::to_string(r.snapshot_index) : std::string()) +
                      (r.states_installed ? ", " + std::to_string(r.states_installed) + " states installed"
                                          : std::string()) +
                      (r.state == "leader" ? ", members " + group : std::string()) + "\n";
      }
      if (!ctx.as_json)
        std::printf("%-5u %-6s %-21s %-9s %-8s %8lld %10.0f %10llu  %s\n", m.id, "up", m.client.c_str(),
                    s.version.c_str(), up.c_str(), static_cast<long long>(s.skus_active), s.calls_per_second,
                    static_cast<unsigned long long>(s.forwarded_total), links.c_str());
      if (!ctx.as_json && !s.not_serving.empty()) std::printf("      NOT SERVING: %s\n", s.not_serving.c_str());
      if (!ctx.as_json) std::printf("%s", raft_lines.c_str());
    } catch (const std::exception& e) {
      ++down;
      j["state"] = "down";
      j["error"] = e.what();
      if (!ctx.as_json) std::printf("%-5u %-6s %-21s\n", m.id, "down", m.client.c_str());
    }
    out.push_back(j);
  }
  if (ctx.as_json)
    std::cout << nlohmann::json{{"cluster", cfg.name}, {"file_hash", cfg.hash}, {"nodes", out}}.dump()
              << "\n";
  return down == 0 ? 0 : exit_refused;
}

// Moves the SKU group's leadership to node `to` (0: the preferred one, the first member):
// finds the leader from the members' statuses and asks it to transfer.
int rebalance(const context& ctx, const cluster_config& cfg, uint32_t to) {
  if (cfg.replicas <= 1) return fail(ctx, "invalid", "the cluster is not replicated ([cluster] replicas = 1)");
  if (to == 0) to = cfg.members.front().id;
  if (!cfg.member(to)) return fail(ctx, "invalid", "node " + std::to_string(to) + " is not a member");
  auto o = connection_options(ctx, &cfg);
  o.call_timeout_ms = std::min<int64_t>(ctx.timeout_ms, 3'000);
  uint32_t leader = find_raft_leader(cfg, o);
  nlohmann::json j{{"to", to}, {"leader_before", leader}};
  if (leader == 0) return fail(ctx, "unavailable", "no member leads the SKU group (is a majority up?)");
  if (leader == to) {
    j["leader"] = to;
    if (ctx.as_json) std::cout << j.dump() << "\n";
    else std::printf("node %u leads the SKU group already\n", to);
    return 0;
  }
  // The transfer takes up to an election timeout (the leader answers then).
  o.call_timeout_ms = std::max<int64_t>(ctx.timeout_ms, 4 * cfg.election_timeout_ms);
  std::pair<uint32_t, std::string> answer;
  try {
    blocking_client c(cfg.member(leader)->client, o);
    answer = c.transfer_leadership(to);
  } catch (const std::exception& e) {
    return fail(ctx, "unavailable", "node " + std::to_string(leader) + ", the leader: " + e.what());
  }
  if (!answer.second.empty())
    return fail(ctx, "refused", "node " + std::to_string(leader) + " did not hand over: " + answer.second);
  j["leader"] = answer.first;
  if (ctx.as_json) std::cout << j.dump() << "\n";
  else std::printf("the SKU group's leadership moved from node %u to node %u\n", leader, answer.first);
  return 0;
}

// `cluster replace --node N` (harness/replace_member.hpp), in a `cluster up` directory: the
// node's data goes in DIR/node-N and it is started as `cluster start` does.
int replace(const context& ctx, const cluster_args& a, const cluster_config& cfg, uint32_t n) {
  replace_options r;
  r.node = n;
  r.data_dir = a.dir + "/node-" + std::to_string(n);
  r.force = a.force;
  r.client = connection_options(ctx, &cfg);
  r.timeout_ms = ctx.timeout_ms;
  // A node a killed run started before it wrote the pid file is found by its directory's
  // lock, and recorded now, so `cluster down` stops it.
  if (auto pid = local_cluster::live_pid(a.dir, n)) {
    r.running = true;
    std::ofstream(local_cluster::pid_file(a.dir, n)) << pid << "\n";
  }
  r.start = [&] {
    std::vector<std::string> extra;
    if (a.fault_hooks) extra.push_back("--fault-hooks");
    local_cluster nodes(self_executable(), a.dir, static_cast<int>(cfg.members.size()), extra, false);
    nodes.start(n);
    nodes.release_to_pid_files();
  };
  r.progress = [&ctx](const std::string& line) {
    if (!ctx.as_json) std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  };
  auto done = replace_member(cfg, r);
  if (done.status != "ok") return fail(ctx, done.status.c_str(), done.message);
  if (ctx.as_json)
    std::cout << nlohmann::json{{"status", "ok"}, {"node", n}, {"replica", done.replica}, {"leader", done.leader}}.dump()
              << "\n";
  else
    std::printf("node %u's new replica %llu caught up and votes in the SKU group (leader: node %u)\n", n,
                static_cast<unsigned long long>(done.replica), done.leader);
  return 0;
}

bool load(const context& ctx, const cluster_args& a, cluster_config& cfg) {
  std::string error;
  if (!load_cluster_file(a.cluster_file(), cfg, error)) {
    fail(ctx, "invalid", error);
    return false;
  }
  return true;
}

}  // namespace

void add_cluster_commands(CLI::App& app, context& ctx) {
  auto a = std::make_shared<cluster_args>();
  auto* cluster = app.add_subcommand("cluster", "run a local cluster and ask about one");
  cluster->require_subcommand(1);

  auto* init = cluster->add_subcommand(
    "init", "write a cluster CA, a certificate per node and a ready cluster file into --dir");
  init->add_option("--nodes", a->nodes)->check(CLI::Range(1, 64))->capture_default_str();
  init->add_option("--dir", a->dir)->capture_default_str();
  init->add_option("--base-port", a->base_port,
                   "client ports from here, peer ports from here + 100 (0: any free ports)")
    ->check(CLI::Range(0, 65000))
    ->capture_default_str();
  init->add_option("--name", a->name, "the cluster's name")->capture_default_str();
  init->add_option("--replicas", a->replicas,
                   "1: every SKU on one node; the number of nodes: the SKUs are one Raft group on every node "
                   "(every acknowledged write on a majority's disks; a lost node's SKUs served again by another)")
    ->check(CLI::Range(1, 64))
    ->capture_default_str();
  init->add_flag("--client-tls", a->client_tls, "clients must connect with TLS too");
  init->add_flag("--client-certs", a->client_certs,
                 "clients must present a certificate from `cluster cert`, which gives their role (implies --client-tls; "
                 "writes admin-local.pem for the cluster commands)");
  init->callback([&ctx, a] {
    ctx.action = [&ctx, a] {
      cluster_config cfg;
      std::string error;
      if (!init_cluster_dir(a->dir, a->nodes, a->base_port, a->name, a->client_tls, cfg, error, a->client_certs,
                                    a->replicas))
        return fail(ctx, "invalid", error);
      if (ctx.as_json)
        std::cout << nlohmann::json{{"status", "ok"}, {"file", a->cluster_file()}, {"hash", cfg.hash}}
                       .dump()
                  << "\n";
      else
        std::printf("wrote %s (hash %s), ca.pem and a certificate per node in %s\n",
                    a->cluster_file().c_str(), cfg.hash.c_str(), a->dir.c_str());
      return 0;
    };
  });

  struct cert_args {
    std::string role, name;
    int days = 365;
  };
  auto c = std::make_shared<cert_args>();
  auto* cert = cluster->add_subcommand(
    "cert", "issue a client certificate signed by the cluster CA in --dir, for [tls] client_certs: "
            "a connection presenting it has its role");
  cert->add_option("--dir", a->dir, "the cluster's directory (its ca.pem and ca.key)")->capture_default_str();
  cert->add_option("--role", c->role, "admin or client")->required()->check(CLI::IsMember({"admin", "client"}));
  cert->add_option("--name", c->name, "who holds it: 1 to 64 of A-Z a-z 0-9 . _ -")->required();
  cert->add_option("--days", c->days, "valid this many days")->check(CLI::Range(1, 3650))->capture_default_str();
  cert->callback([&ctx, a, c] {
    ctx.action = [&ctx, a, c] {
      std::string written, error;
      if (!write_client_certificate(a->dir, c->role, c->name, c->days, written, error))
        return fail(ctx, "invalid", error);
      auto key = written.substr(0, written.size() - 4) + ".key";
      if (ctx.as_json)
        std::cout << nlohmann::json{{"status", "ok"}, {"cert", written}, {"key", key}, {"role", c->role}}.dump()
                  << "\n";
      else
        std::printf("wrote %s and %s (role %s, %d days)\nconnect with: holdfast --tls-ca %s/ca.pem --tls-cert %s "
                    "--tls-key %s ...\n",
                    written.c_str(), key.c_str(), c->role.c_str(), c->days, a->dir.c_str(), written.c_str(),
                    key.c_str());
      return 0;
    };
  });

  auto* new_id = cluster->add_subcommand(
    "new-id", "print a new random cluster id (for a hand-written cluster file's [cluster] id)");
  new_id->callback([&ctx] {
    ctx.action = [] {
      std::printf("%s\n", new_cluster_id().c_str());
      return 0;
    };
  });

  auto* up = cluster->add_subcommand(
    "up", "init (when --dir has no cluster file) and start every node on loopback");
  up->add_option("--nodes", a->nodes)->check(CLI::Range(1, 64))->capture_default_str();
  up->add_option("--dir", a->dir, "cluster files, node data (node-N/) and logs (node-N.log)")
    ->capture_default_str();
  up->add_option("--base-port", a->base_port, "as for init (0: any free ports)")
    ->check(CLI::Range(0, 65000))
    ->capture_default_str();
  up->add_option("--replicas", a->replicas, "as for init (a new cluster only)")->check(CLI::Range(1, 64))->capture_default_str();
  up->add_flag("--client-tls", a->client_tls, "as for init: clients must connect with TLS (a new cluster only)");
  up->add_flag("--client-certs", a->client_certs, "as for init: clients present certificates (a new cluster only)");
  up->add_flag("--fault-hooks", a->fault_hooks, "TESTS ONLY: let `holdfast chaos` cut links")
    ->group("Testing");
  up->callback([&ctx, a] {
    ctx.action = [&ctx, a] {
      std::string error;
      cluster_config cfg;
      bool fresh = ::access(a->cluster_file().c_str(), F_OK) != 0;
      if (fresh && !init_cluster_dir(a->dir, a->nodes, a->base_port, a->name, a->client_tls, cfg, error, a->client_certs,
                                    a->replicas))
        return fail(ctx, "invalid", error);
      if (!fresh && (a->client_tls || a->client_certs))
        std::fprintf(stderr, "holdfast cluster up: %s exists, so --client-tls and --client-certs change nothing: its "
                             "[tls] section decides\n", a->cluster_file().c_str());
      if (!load(ctx, *a, cfg)) return exit_usage;
      for (auto& m : cfg.members)
        if (auto pid = local_cluster::live_pid(a->dir, m.id))
          return fail(ctx, "invalid", "node " + std::to_string(m.id) + " already runs (pid " +
                                        std::to_string(pid) + "): `holdfast cluster down --dir " +
                                        a->dir + "` first, or start only the stopped members with "
                                        "`holdfast cluster start --dir " + a->dir + " --id N`");
      std::vector<std::string> extra;
      if (a->fault_hooks) extra.push_back("--fault-hooks");
      try {
        local_cluster nodes(self_executable(), a->dir, a->nodes, extra, false);
        for (auto id : nodes.ids()) {
          if (!ctx.as_json) std::printf("starting node %u (log %s/node-%u.log)\n", id, a->dir.c_str(), id);
          nodes.start(id);
        }
        if (!nodes.wait_links_up(std::chrono::seconds(30)))
          return fail(ctx, "failed", "the nodes started but their links did not all come up "
                                     "within 30 s; see the logs in " + a->dir);
        // Replicated: ready once the SKU group has a leader that serves (an election after
        // the links are up, since Raft talks only to members whose hello was accepted).
        if (cfg.replicas > 1 && nodes.raft_leader(std::chrono::seconds(30)) == 0)
          return fail(ctx, "failed", "the nodes started but the SKU group elected no leader within 30 s; see the "
                                     "logs in " + a->dir);
        nodes.release_to_pid_files();
      } catch (const std::exception& e) {
        return fail(ctx, "failed", e.what());
      }
      int status = print_status(ctx, cfg);
      if (!ctx.as_json)
        std::printf("cluster up: `holdfast --node %s ...` talks to it; `holdfast cluster down "
                    "--dir %s` stops it\n",
                    cfg.members.front().client.c_str(), a->dir.c_str());
      return status;
    };
  });

  // `cluster start --id N`: one member of a `cluster up` cluster back, after it stopped
  // or was killed, without touching the others.
  auto start_id = std::make_shared<uint32_t>(0);
  auto* start = cluster->add_subcommand("start", "start one stopped member of a `cluster up` cluster again");
  start->add_option("--dir", a->dir, "the cluster's directory (as for up)")->capture_default_str();
  start->add_option("--id", *start_id, "the member to start")->required()->check(CLI::Range(1, 65535));
  start->add_flag("--fault-hooks", a->fault_hooks, "TESTS ONLY: let `holdfast chaos` cut links")->group("Testing");
  start->callback([&ctx, a, start_id] {
    ctx.action = [&ctx, a, start_id] {
      cluster_config cfg;
      if (!load(ctx, *a, cfg)) return exit_usage;
      auto id = *start_id;
      if (!cfg.member(id)) return fail(ctx, "invalid", "the cluster in " + a->dir + " has no node " + std::to_string(id));
      if (auto pid = local_cluster::live_pid(a->dir, id))
        return fail(ctx, "invalid", "node " + std::to_string(id) + " already runs (pid " + std::to_string(pid) + ")");
      std::vector<std::string> extra;
      if (a->fault_hooks) extra.push_back("--fault-hooks");
      try {
        local_cluster nodes(self_executable(), a->dir, static_cast<int>(cfg.members.size()), extra, false);
        if (!ctx.as_json) std::printf("starting node %u (log %s/node-%u.log)\n", id, a->dir.c_str(), id);
        nodes.start(id);
        // With every other member running, its links come up at once: show them up.
        bool others_run = true;
        for (auto& m : cfg.members) others_run = others_run && (m.id == id || local_cluster::live_pid(a->dir, m.id));
        if (others_run) nodes.wait_links_up(std::chrono::seconds(10));
        nodes.release_to_pid_files();
      } catch (const std::exception& e) {
        return fail(ctx, "failed", e.what());
      }
      print_status(ctx, cfg);  // (exit 1 there means other members are down: not this command's)
      return 0;
    };
  });

  auto* status = cluster->add_subcommand("status", "each node: up/down, incarnation, SKUs, calls/s, links");
  status->add_option("--dir", a->dir)->capture_default_str();
  status->add_option("--cluster", a->file, "cluster file (default: DIR/cluster.toml)");
  status->callback([&ctx, a] {
    ctx.action = [&ctx, a] {
      cluster_config cfg;
      if (!load(ctx, *a, cfg)) return exit_usage;
      return print_status(ctx, cfg);
    };
  });

  auto* rebalance_cmd = cluster->add_subcommand(
    "rebalance", "a replicated cluster: move the SKU group's leadership back to its preferred node (the first "
                 "member), or to --to, by Raft's leadership transfer");
  rebalance_cmd->add_option("--dir", a->dir)->capture_default_str();
  rebalance_cmd->add_option("--cluster", a->file, "cluster file (default: DIR/cluster.toml)");
  rebalance_cmd->add_option("--to", a->to, "the node to lead (default: the first member)")
    ->check(CLI::Range(1, 65535));
  rebalance_cmd->callback([&ctx, a] {
    ctx.action = [&ctx, a] {
      cluster_config cfg;
      if (!load(ctx, *a, cfg)) return exit_usage;
      return rebalance(ctx, cfg, a->to);
    };
  });

  auto replace_node = std::make_shared<uint32_t>(0);
  auto* replace_cmd = cluster->add_subcommand(
    "replace", "replace a lost node's replica of the SKU group (its disk or machine) with a new one, at its addresses");
  replace_cmd->add_option("--dir", a->dir, "the cluster's directory (as for up)")->capture_default_str();
  replace_cmd->add_option("--node", *replace_node, "the node whose replica is lost")->required()->check(CLI::Range(1, 65535));
  replace_cmd->add_flag("--force", a->force, "go on though fewer than a majority of the other members answered");
  replace_cmd->add_flag("--fault-hooks", a->fault_hooks, "TESTS ONLY: let `holdfast chaos` cut links")->group("Testing");
  replace_cmd->callback([&ctx, a, replace_node] {
    ctx.action = [&ctx, a, replace_node] {
      cluster_config cfg;
      if (!load(ctx, *a, cfg)) return exit_usage;
      return replace(ctx, *a, cfg, *replace_node);
    };
  });

  auto* down = cluster->add_subcommand("down", "stop the nodes `cluster up` started (by PID)");
  down->add_option("--dir", a->dir)->capture_default_str();
  down->callback([&ctx, a] {
    ctx.action = [&ctx, a] {
      cluster_config cfg;
      if (!load(ctx, *a, cfg)) return exit_usage;
      // A chaos run attached to the cluster would restart what we stop.
      if (auto holder = local_cluster::attached_by(a->dir); holder != 0)
        return fail(ctx, "refused",
                    "holdfast chaos" + (holder > 0 ? " (pid " + std::to_string(holder) + ")" : std::string()) +
                      " is attached to " + a->dir + ": stop it first (it leaves the nodes running)");
      int stopped = 0;
      for (auto& m : cfg.members) {
        auto pid = local_cluster::live_pid(a->dir, m.id);
        if (pid) {
          ::kill(pid, SIGCONT);  // a SIGSTOPped node cannot handle SIGTERM
          ::kill(pid, SIGTERM);
          bool gone = wait_until([pid] { return process_gone(pid); }, std::chrono::seconds(30));
          if (!gone) ::kill(pid, SIGKILL);
          ++stopped;
          if (!ctx.as_json)
            std::printf("node %u (pid %d) %s\n", m.id, pid, gone ? "stopped" : "killed after 30 s");
        }
        ::unlink(local_cluster::pid_file(a->dir, m.id).c_str());
      }
      if (ctx.as_json) std::cout << nlohmann::json{{"status", "ok"}, {"stopped", stopped}}.dump() << "\n";
      else if (stopped == 0) std::printf("no node of %s was running\n", a->dir.c_str());
      return 0;
    };
  });

  auto* where = cluster->add_subcommand("placement", "which node owns each KEY (an SKU)");
  where->add_option("keys", a->keys, "SKU names")->required();
  where->add_option("--dir", a->dir)->capture_default_str();
  where->add_option("--cluster", a->file, "cluster file (default: DIR/cluster.toml)");
  where->callback([&ctx, a] {
    ctx.action = [&ctx, a] {
      cluster_config cfg;
      if (!load(ctx, *a, cfg)) return exit_usage;
      std::vector<uint32_t> ids;
      for (auto& m : cfg.members) ids.push_back(m.id);
      placement p(ids);
      nlohmann::json out = nlohmann::json::array();
      for (auto& k : a->keys) {
        auto id = p.owner(k);
        if (ctx.as_json) out.push_back({{"key", k}, {"node", id}, {"address", cfg.member(id)->client}});
        else std::printf("%s -> node %u (%s)\n", k.c_str(), id, cfg.member(id)->client.c_str());
      }
      if (ctx.as_json) std::cout << out.dump() << "\n";
      return 0;
    };
  });
}

}  // namespace holdfast::cli
