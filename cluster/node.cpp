#include "cluster/node.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <cstdio>
#include <iostream>
#include <pthread.h>
#include <thread>

#include "cluster/certs.hpp"
#include "cluster/client.hpp"
#include "protocol/log.hpp"

namespace holdfast {
namespace {

// A data directory belongs to one member of one cluster, recorded in DIR/cluster-member
// at its first start in a cluster: a directory started as another member (swapped
// directories) or as a single node would serve SKUs placement gives to someone else, or
// hide the ones it has. Called with the directory locked.
// Checked before the storage opens (a refused start touches nothing); recorded after,
// with the directory locked.
std::string member_name(const cluster_role* role) {
  return role ? "cluster \"" + role->config.name + "\" node " + std::to_string(role->self) : "";
}

// The second line: the member ids placement ran over when the directory was first used.
// Holdfast moves no SKU between nodes, so another member list would give some of this
// node's SKUs to another node, which could create them again and sell their stock twice.
std::string member_list(const cluster_role* role) {
  std::string out = "members";
  for (size_t i = 0; role && i < role->config.members.size(); ++i)
    out += (i ? "," : " ") + std::to_string(role->config.members[i].id);
  return out;
}

std::pair<std::string, std::string> recorded_member(const std::string& dir) {
  std::string name, members;
  std::ifstream in(dir + "/cluster-member");
  std::getline(in, name);
  std::getline(in, members);
  return {name, members};
}

bool check_membership(const std::string& dir, const cluster_role* role, std::string& error) {
  auto [recorded, members] = recorded_member(dir);
  if (recorded.empty()) return true;
  if (recorded != member_name(role)) {
    error = "this directory holds " + recorded +
            (role ? ", not " + member_name(role) : " and must be started with that --cluster and --id");
    return false;
  }
  // Directories recorded before the member list was (one line) are not checked.
  if (!members.empty() && members != member_list(role)) {
    error = "this directory was written when the cluster had " + members + "; the cluster file now lists " +
            member_list(role).substr(8) + ". Holdfast does not move SKUs between nodes: with other members, " +
            "SKUs stored here would belong to another node, which could create them again and sell their "
            "stock twice. Keep the member list, or start a new cluster with new data directories";
    return false;
  }
  return true;
}

bool record_membership(const std::string& dir, const cluster_role* role, std::string& error) {
  if (!role || !recorded_member(dir).first.empty()) return true;
  auto path = dir + "/cluster-member";
  auto mine = member_name(role) + "\n" + member_list(role);
  auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << mine << "\n";
    out.flush();
    if (!out) {
      error = "cannot write " + tmp;
      return false;
    }
  }
  int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "cannot write " + path;
    return false;
  }
  int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d >= 0) {
    ::fsync(d);
    ::close(d);
  }
  return true;
}

}  // namespace

size_t effective_worker_threads(size_t requested) {
  if (requested > 0) return requested;
  size_t cores = std::thread::hardware_concurrency();
  return cores > 3 ? cores - 2 : 1;
}

int run_node(const node_options& options) {
  // Every thread started from here on inherits the blocked signals; main waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // a hang-up (the terminal that started it went) stops it cleanly
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  spdlog::set_level(spdlog::level::from_str(options.log_level));
  node_options effective = options;
  if (!options.cluster_file.empty()) {
    auto role = std::make_shared<cluster_role>();
    std::string problem;
    if (!load_cluster_file(options.cluster_file, role->config, problem)) {
      spdlog::critical("holdfast node: {}", problem);
      return 2;
    }
    auto* me = role->config.member(options.node_id);
    if (!me) {
      spdlog::critical("holdfast node: --id {} is not a node of {}", options.node_id,
                       options.cluster_file);
      return 2;
    }
    if (!role->config.ca.empty()) {
      auto& cfg = role->config;
      std::string material;
      try {
        material = check_node_material(read_pem_file(cfg.path_of(cfg.ca)).cStr(),
                                       read_pem_file(cfg.path_of(me->cert)).cStr(),
                                       read_pem_file(cfg.path_of(me->key)).cStr(), options.node_id);
      } catch (const kj::Exception& e) {
        material = e.getDescription().cStr();
      }
      if (!material.empty()) {
        spdlog::critical("holdfast node: refusing to start: node {}'s TLS material ({}, {}, CA {}): {}",
                         options.node_id, cfg.path_of(me->cert), cfg.path_of(me->key), cfg.path_of(cfg.ca),
                         material);
        return 2;
      }
    }
    role->self = options.node_id;
    role->incarnation = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::system_clock::now().time_since_epoch())
        .count());
    role->fault_hooks = options.fault_hooks;
    if (options.fault_hooks) spdlog::warn("--fault-hooks: the chaos tool may cut this node's links");
    effective.server.listen = me->client;
    effective.server.cluster = role;
  }
  storage_options storage_cfg;
  storage_cfg.path = options.data_dir;
  storage_cfg.map_size_bytes = options.map_size_mb << 20;
  storage_cfg.sync = !options.unsafe_no_sync;
  storage_cfg.log_segment_bytes = uint64_t{options.log_segment_mb} << 20;
  storage_cfg.snapshot_interval_ms = options.snapshot_interval_ms;
  storage_cfg.finished_hold_retention_ms = options.finished_hold_retention_ms;
  if (options.unsafe_no_sync)
    spdlog::warn("--unsafe-no-sync: acknowledged writes are NOT durable (test use only)");
  std::string error;
  if (!check_membership(options.data_dir, effective.server.cluster.get(), error)) {
    spdlog::critical("holdfast node: refusing to start on {}: {}", options.data_dir, error);
    return 2;
  }
  std::shared_ptr<storage> env = storage::open(storage_cfg, error);
  if (!env) {
    spdlog::critical("holdfast node: refusing to start on {}: {}", options.data_dir, error);
    return 2;
  }
  // Checked again with the directory locked: another process may have started on it.
  if (!check_membership(options.data_dir, effective.server.cluster.get(), error) ||
      !record_membership(options.data_dir, effective.server.cluster.get(), error)) {
    spdlog::critical("holdfast node: refusing to start on {}: {}", options.data_dir, error);
    return 2;
  }

  caf::actor_system_config cfg;
  // Work sharing wakes an idle worker at once through a condition variable; CAF's
  // default work stealing lets idle workers sleep in polling rounds, which adds
  // latency to every hop of a reservation on a lightly loaded node.
  cfg.set("scheduler.policy", caf::atom_from_string(options.scheduler));
  cfg.set("scheduler.max-threads", effective_worker_threads(options.worker_threads));
  caf::actor_system sys{cfg};
  auto clock = std::make_shared<system_wall_clock>();
  auto store = sys.spawn<caf::detached>(store_behavior, env, store_config{});
  sku_context ctx;
  ctx.env = env;
  ctx.store = store;
  ctx.clock = clock;
  ctx.claims = std::make_shared<hold_claims>();
  directory_config directory_cfg;
  directory_cfg.limits = options.server.limits;
  directory_cfg.idle_ms = options.idle_ms;
  auto directory = sys.spawn(directory_behavior, ctx, directory_cfg);
  auto shutdown = [&] {
    caf::anon_send_exit(directory, caf::exit_reason::kill);
    caf::anon_send_exit(store, caf::exit_reason::kill);
  };

  // Holds that expired while the node was down end before any traffic is served.
  int64_t recovered = -1;
  {
    caf::scoped_actor self{sys};
    self->request(directory, caf::infinite, recover_atom_v)
      .receive([&](int64_t n) { recovered = n; },
               [&](caf::error& e) { error = sys.render(e); });
  }
  if (recovered < 0) {
    spdlog::critical("holdfast node: refusing to start on {}: {}; `holdfast check --data {}` "
                     "lists every problem",
                     options.data_dir, error, options.data_dir);
    shutdown();
    return 2;
  }

  auto bridge = spawn_bridge(sys, directory);
  rpc_server server(bridge, effective.server);
  auto address = server.start(error);
  if (address.empty()) {
    spdlog::critical("holdfast node: {}", error);
    caf::anon_send_exit(bridge, caf::exit_reason::kill);
    shutdown();
    return 2;
  }
  // Tests and the demo read this line to learn the port.
  std::printf("holdfast node listening on %s (data %s, %lld SKUs recovered with overdue holds)\n",
              address.c_str(), options.data_dir.c_str(), static_cast<long long>(recovered));
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  std::printf("holdfast node: signal %d, stopping\n", sig);
  std::fflush(stdout);
  bool failed = server.failed();
  server.stop();
  caf::anon_send_exit(bridge, caf::exit_reason::kill);
  shutdown();
  return failed ? 3 : 0;
}

}  // namespace holdfast
