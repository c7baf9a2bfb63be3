#include "cluster/node.hpp"

#include <systemd/sd-daemon.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <cstdio>
#include <iostream>
#include <pthread.h>
#include <thread>

#include "cluster/certs.hpp"
#include "client/client.hpp"
#include "cluster/replicated_skus.hpp"
#include "cluster/rpc_server.hpp"
#include "gateway/http_provider.hpp"
#include "gateway/in_process.hpp"
#include "gateway/webhook.hpp"
#include "protocol/files.hpp"
#include "persistence/identity.hpp"
#include "protocol/log.hpp"

namespace holdfast {
namespace {

// Client and HTTP connections may each take --connections-max descriptors; the log, LMDB,
// peer links and the runtime need the rest (fd_reserve). The soft limit is raised to the
// hard one, and a --connections-max the limit cannot hold beside the rest is lowered, said
// once at start: else a flood of connections would leave the log unable to open a segment.
size_t connections_within_fd_limit(size_t wanted, size_t members) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return wanted;
  if (lim.rlim_cur < lim.rlim_max) {
    auto raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  if (lim.rlim_cur == RLIM_INFINITY) return wanted;
  size_t reserve = fd_reserve + 4 * members;
  size_t room = std::max<size_t>(1, lim.rlim_cur > reserve ? (lim.rlim_cur - reserve) / 2 : 0);
  if (wanted <= room) return wanted;
  spdlog::warn("--connections-max {} lowered to {}: this process may open {} files (ulimit -n), keeps {} for "
               "its log, LMDB, peers and runtime, and the HTTP port may hold as many connections again",
               wanted, room, static_cast<uint64_t>(lim.rlim_cur), reserve);
  return room;
}

// What the directory must be for this start: a single node, or this member of this
// cluster (the member list placement runs over included: Holdfast moves no SKU between
// nodes, so under another list some SKUs stored here would belong to another node, which
// could create them again and sell their stock twice).
directory_identity wanted_identity(const cluster_role* role) {
  directory_identity id;
  if (!role) {
    id.kind = directory_identity::role::single;
    return id;
  }
  id.kind = directory_identity::role::member;
  id.cluster_name = role->config.name;
  id.cluster_id = role->config.id;
  id.member = role->self;
  for (auto& m : role->config.members) id.members.push_back(m.id);
  return id;
}

std::string ids_text(const std::vector<uint32_t>& ids) {
  std::string out;
  for (auto id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

// Why `recorded` may not start as `wanted`, or "". A directory with data and no record is
// refused: deleting DIR/identity must not turn a backup or a copy into a live node.
std::string identity_conflict(const directory_identity& recorded, const directory_identity& wanted,
                              bool has_data) {
  using role = directory_identity::role;
  if (recorded.backup)
    return "it is a backup (" + recorded.describe() +
           (recorded.backup_taken.empty() ? "" : ", taken " + recorded.backup_taken) +
           "): a backup never starts as it is; `holdfast restore --from DIR --data NEW_DIR` makes a "
           "directory of it, after checking the member it was taken from is gone";
  if (recorded.kind == role::none && has_data)
    return "it holds data but no identity record (DIR/identity was deleted, or the directory is a copy "
           "made without it): it could be a copy of a live member or a backup, so it does not start; "
           "restore a backup made by `holdfast backup` instead";
  auto kind = recorded.kind;
  if (kind == role::none) return "";
  if (kind == role::single && wanted.kind == role::single) return "";
  if (kind == role::single)
    return "it holds a single node's data; a single node's directory never joins a cluster (its SKUs "
           "would sit where placement does not look for them)";
  if (wanted.kind == role::single)
    return "it holds " + recorded.describe() + " and must be started with that cluster file and --id";
  if (recorded.cluster_name != wanted.cluster_name || recorded.member != wanted.member ||
      (!recorded.cluster_id.empty() && recorded.cluster_id != wanted.cluster_id))
    return "it holds " + recorded.describe() + ", not " + wanted.describe();
  // Directories recorded before the member list was (one line) are not checked.
  if (!recorded.members.empty() && recorded.members != wanted.members)
    return "it was written when the cluster had members " + ids_text(recorded.members) +
           "; the cluster file now lists " + ids_text(wanted.members) +
           ". Holdfast does not move SKUs between nodes: with other members, SKUs stored here would "
           "belong to another node, which could create them again and sell their stock twice. Keep the "
           "member list, or start a new cluster with new data directories";
  return "";
}

// True when `dir` has nothing a Holdfast node did not put there: a directory with other
// files is refused by the storage, and a refused start writes nothing.
bool holds_nothing_else(const std::string& dir) {
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(dir, ec)) {
    auto name = e.path().filename().string();
    if (name != "identity" && name != "identity.tmp" && name != "holdfast.lock" && name != "log") return false;
  }
  return !ec;
}

// Checks the directory's identity against this start, writes what is missing (a fresh
// directory's, or the cluster id of a record from before ids) and fills `out` with what
// the directory now is. Called before the storage opens, recording (a
// fresh directory is recorded before it holds any data, so a crash never leaves data
// without its identity; a refused start touches nothing), and again with the directory
// locked, in case another process recorded something else meanwhile.
bool check_identity(const std::string& dir, const cluster_role* role, bool before_open, bool& had_data,
                    directory_identity& out, std::string& error) {
  directory_identity recorded;
  if (!read_identity(dir, recorded, error)) return false;
  auto wanted = wanted_identity(role);
  // Without the marker the storage decides: a first start's leftovers are fresh, anything
  // with SKUs is refused (data_directory::inspect). Judged before the storage opens (which
  // marks a fresh directory).
  if (before_open) had_data = !file_absent(dir + "/holdfast.format");
  bool has_data = had_data;
  if (auto why = identity_conflict(recorded, wanted, has_data); !why.empty()) {
    error = why;
    return false;
  }
  out = recorded;
  bool complete = recorded.kind != directory_identity::role::none &&
                  (recorded.kind == directory_identity::role::single || !recorded.cluster_id.empty());
  // Before the storage opens, only a directory with nothing else in it is recorded (the
  // storage refuses other content, and a refused start writes nothing); leftovers of a
  // first start the storage accepts are recorded after it opened.
  if (complete || (before_open && !has_data && !holds_nothing_else(dir))) return true;
  if (recorded.kind != directory_identity::role::none)
    spdlog::info("{}: recording its cluster id {} (the record predates cluster ids)", dir, wanted.cluster_id);
  wanted.generation = recorded.generation;
  wanted.lineage = recorded.lineage;  // the restore's announced token stays
  out = wanted;
  return write_identity(dir, wanted, error);
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
  set_log_format(options.log_format);
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
        material = describe(e);
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
    if (effective.server.http_listen.empty()) effective.server.http_listen = me->http;
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
  directory_identity identity;
  std::error_code created;
  bool existed = std::filesystem::exists(options.data_dir, created);
  std::filesystem::create_directories(options.data_dir, created);
  bool had_data = false;
  if (!check_identity(options.data_dir, effective.server.cluster.get(), true, had_data, identity, error)) {
    spdlog::critical("holdfast node: refusing to start on {}: {}", options.data_dir, error);
    return 2;
  }
  std::shared_ptr<storage> env = storage::open(storage_cfg, error);
  if (!env) {
    spdlog::critical("holdfast node: refusing to start on {}: {}", options.data_dir, error);
    return 2;
  }
  // Checked again with the directory locked: another process may have started on it.
  if (!check_identity(options.data_dir, effective.server.cluster.get(), false, had_data, identity, error)) {
    spdlog::critical("holdfast node: refusing to start on {}: {}", options.data_dir, error);
    return 2;
  }
  if (effective.server.cluster) {
    // Peers are told which generation of this member runs, and which directory; this node
    // remembers the newest generation it saw of each of them.
    auto role = std::make_shared<cluster_role>(*effective.server.cluster);
    // Every start extends the directory's lineage, durably, before any peer hears of it.
    identity.extend_lineage();
    if (!write_identity(options.data_dir, identity, error) ||
        !read_peer_records(options.data_dir, role->peer_records, error)) {
      spdlog::critical("holdfast node: refusing to start on {}: {}", options.data_dir, error);
      return 2;
    }
    role->generation = identity.generation;
    role->lineage = identity.lineage;
    role->directory_id = env->meta().directory_id;
    if (role->config.replicas > 1) role->raft_gate = std::make_shared<raft_peer_gate>();
    role->data_dir = options.data_dir;
    effective.server.cluster = role;
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
  directory_config directory_cfg;
  directory_cfg.limits = options.server.limits;
  directory_cfg.idle_ms = options.idle_ms;
  // Replicated: the SKUs are the replica group's (DATA/group), served while this node
  // leads it; else this node's own.
  std::unique_ptr<replicated_skus> replicated;
  directory_actor directory;
  auto* role = effective.server.cluster.get();
  if (role && role->config.replicas > 1) {
    // A member that ran before had its replica there since its first start: without it the
    // replica would come back empty, having forgotten the entries and votes it gave.
    std::error_code ec;
    const auto joined = options.data_dir + "/group-joined";  // written once its replica first started
    if (!file_absent(joined) && !std::filesystem::exists(options.data_dir + "/group/raft", ec)) {
      spdlog::critical("holdfast node: refusing to start: {}/group/raft is missing, but this member ran before: its "
                       "replica of the SKU group lost its data and must not rejoin as if it were new (it would "
                       "forget entries and votes it gave). Move {} away and replace the replica through the group "
                       "(holdfast cluster replace --node {}): the group serves on with the other members meanwhile",
                       options.data_dir, options.data_dir, role->self);
      caf::anon_send_exit(store, caf::exit_reason::kill);
      return 2;
    }
    replicated_skus_options r;
    r.dir = options.data_dir + "/group";
    r.cluster = &role->config;
    r.self = role->self;
    r.storage = storage_cfg;
    r.directory = directory_cfg;
    r.clock = clock;
    r.gate = role->raft_gate;
    r.replacement_file = options.data_dir + "/" + std::string(group_replacement_file);
    replicated = replicated_skus::start(sys, r, error);
    if (!replicated) {
      spdlog::critical("holdfast node: refusing to start: the SKU group's replica in {}/group: {}", options.data_dir,
                       error);
      caf::anon_send_exit(store, caf::exit_reason::kill);
      return 2;
    }
    if (file_absent(joined) && !write_file_atomically(joined, "the SKU group's replica started here\n", error)) {
      spdlog::critical("holdfast node: refusing to start: {}", error);
      caf::anon_send_exit(store, caf::exit_reason::kill);
      return 2;
    }
    directory = replicated->directory();
    effective.server.sku_leader = [r = replicated.get()] { return r->leader(); };
    effective.server.raft_status = [r = replicated.get()] { return r->status(); };
    effective.server.read_sku_group_stats = [r = replicated.get()] { return r->store()->stats(); };
    effective.server.raft_transfer = [r = replicated.get()](uint32_t to, auto done) { r->transfer(to, std::move(done)); };
    effective.server.raft_replace = [r = replicated.get()](uint32_t node, auto done) { r->replace(node, std::move(done)); };
    effective.server.raft_promote = [r = replicated.get()](uint64_t replica, auto done) {
      r->promote(replica, std::move(done));
    };
    effective.server.raft_partition = [r = replicated.get()](const std::set<uint32_t>& peers) {
      r->partition(peers);
    };
    spdlog::info("holdfast node: the SKUs are replicated on Raft over {} nodes (raft port {})",
                 role->config.replicas, role->config.member(role->self)->raft);
  } else {
    sku_context ctx;
    ctx.env = env;
    ctx.store = store;
    ctx.clock = clock;
    ctx.claims = std::make_shared<hold_claims>(env);
    directory = sys.spawn(directory_behavior, ctx, directory_cfg);
  }
  cart_context carts_ctx;
  carts_ctx.env = env;
  carts_ctx.store = store;
  carts_ctx.clock = clock;
  carts_ctx.idle_ms = options.idle_ms;
  auto carts = sys.spawn(cart_directory_behavior, carts_ctx);
  // Orders: holds through the router on the network thread; payments through the
  // gateway process over HTTP, or the simulated gateway in-process.
  auto outbound = std::make_shared<node_hold_calls>();
  order_context orders_ctx;
  orders_ctx.env = env;
  orders_ctx.store = store;
  orders_ctx.clock = clock;
  orders_ctx.inventory = outbound;
  orders_ctx.idle_ms = options.idle_ms;
  orders_ctx.crash_at = options.crash_at;
  orders_ctx.events = std::make_shared<order_event_log>();
  orders_ctx.events->retention = options.order_events_retention;
  orders_ctx.events->next = last_order_event(*env) + 1;
  if (!options.gateway_url.empty()) {
    orders_ctx.payments = std::make_shared<http_payment_provider>(options.gateway_url, options.payment_timeout_ms);
  } else {
    gateway_options payments;
    payments.seed = options.payment_seed;
    payments.decline_rate = options.payment_decline_rate;
    orders_ctx.payments = std::make_shared<in_process_gateway>(payments, clock, "in-process");
  }
  if (!options.server.webhook_secret.empty())
    orders_ctx.verify_payment_event = [secret = options.server.webhook_secret](
                                        const std::string& body, const std::string& signature, int64_t now_ms,
                                        payment_intent& out) -> std::string {
      return verify_payment_event(secret, body, signature, now_ms, out);
    };
  auto orders = sys.spawn(order_directory_behavior, orders_ctx);
  auto shutdown = [&] {
    caf::anon_send_exit(orders, caf::exit_reason::kill);
    caf::anon_send_exit(carts, caf::exit_reason::kill);
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
    // Every order whose saga is not done resumes (its commands wait for the network
    // thread, which starts below).
    if (recovered >= 0)
      self->request(orders, caf::infinite, recover_atom_v)
        .receive(
          [&](int64_t n) {
            if (n < 0) error = "the orders cannot be read", recovered = -1;
            else if (n > 0) spdlog::info("holdfast node: resuming {} orders", n);
          },
          [&](caf::error& e) { error = sys.render(e), recovered = -1; });
  }
  if (recovered < 0) {
    spdlog::critical("holdfast node: refusing to start on {}: {}; `holdfast check --data {}` "
                     "lists every problem",
                     options.data_dir, error, options.data_dir);
    shutdown();
    return 2;
  }

  auto bridge = spawn_bridge(sys, directory, carts, orders);
  effective.server.directory = directory;
  effective.server.outbound = outbound;
  effective.server.list_orders = [env](const order_list_query& query) { return list_orders(*env, query); };
  effective.server.order_events = [env, events = orders_ctx.events, clock](uint64_t from, size_t limit) {
    return read_order_events(*env, *events, from, limit, clock->now_ms());
  };
  effective.server.read_storage_stats = [env] { return env->stats(); };
  effective.server.connections_max = connections_within_fd_limit(
    effective.server.connections_max, effective.server.cluster ? effective.server.cluster->config.members.size() : 0);
  rpc_server server(bridge, effective.server);
  auto address = server.start(error);
  if (address.empty()) {
    spdlog::critical("holdfast node: {}", error);
    caf::anon_send_exit(bridge, caf::exit_reason::kill);
    shutdown();
    // A directory this start made has served nothing: a port in use leaves no 64 MiB log
    // segment behind (a directory that was there stays as it was found, and is never removed).
    if (!existed) {
      std::error_code ec;
      std::filesystem::remove_all(options.data_dir, ec);
    }
    return 2;
  }
  // Tests and the demo read "listening on ADDR" on stdout to learn the port. The line is
  // the log's (timestamped, and a JSON object under --log-format json), whatever the level.
  auto say = [&](const std::string& line) {
    std::printf("%s\n", log_line(options.log_format, line).c_str());
    std::fflush(stdout);
  };
  say("holdfast node listening on " + address + " (data " + options.data_dir + ", " + std::to_string(recovered) +
      " SKUs recovered with overdue holds)");
  if (auto http = server.http_address(); !http.empty())
    say("holdfast node http on " + http + " (GET /metrics /health /ready; payment webhooks: POST /webhooks/payments)");

  int sig = 0;
  // Under systemd (Type=notify, examples/holdfast-node.service): ready once it serves.
  // Without $NOTIFY_SOCKET this does nothing.
  sd_notifyf(0, "READY=1\nSTATUS=serving on %s", address.c_str());
  sigwait(&signals, &sig);
  sd_notify(0, "STOPPING=1");
  say("holdfast node: signal " + std::to_string(sig) + ", stopping");
  bool failed = server.failed();
  server.stop();
  caf::anon_send_exit(bridge, caf::exit_reason::kill);
  shutdown();
  return failed ? 3 : 0;
}

}  // namespace holdfast
