#include "harness/chaos.hpp"
#include "harness/linearizability.hpp"
#include "harness/replace_member.hpp"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "harness/chaos_checkout.hpp"
#include "harness/checkout_cluster.hpp"
#include "cluster/certs.hpp"
#include "cluster/replicated_skus.hpp"  // group_replacement_file
#include "harness/local_cluster.hpp"
#include "harness/processes.hpp"

namespace holdfast {
namespace {

using clock_type = std::chrono::steady_clock;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

// One call the workload made, as the client saw it.
struct op_record {
  double at_s = 0;  // since the workload began
  int worker = 0;
  uint32_t entry = 0;
  hold_op_kind kind = hold_op_kind::reserve;
  std::string sku, hold_id;
  int64_t qty = 0;
  std::string outcome;  // a code's name, or "transport" (no answer: connection lost)
  double latency_ms = 0;
  hold_state state = hold_state::active;  // the hold's state in an ok answer
};

struct fault_record {
  double from_s = 0, to_s = 0;
  std::string what;
};

// What one class of outcome counts as in the report.
const char* bucket(const std::string& outcome) {
  if (outcome == "ok") return "ok";
  if (outcome == "unavailable") return "unavailable";
  if (outcome == "outcome_unknown" || outcome == "transport") return "unknown";
  return "refused";
}

struct shared_state {
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::vector<op_record> ops;  // under mutex
  std::map<std::string, size_t> counts;  // by bucket, under mutex
  clock_type::time_point started;
};

double since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// The SKU whose history is checked for linearizability (harness/linearizability.hpp): never
// restocked, and its holds' deadlines fall after the run's last call could be answered, so
// none expires within the history.
struct linear_sku {
  std::string name;
  int64_t stock = 8;
  int64_t deadline_wall_ms = 0;
};

void worker(int index, const chaos_options& o, const local_cluster& cluster,
            const std::vector<std::string>& skus, const linear_sku& lin, shared_state& st) {
  std::mt19937_64 rng(o.seed * 1000003 + index);
  auto ids = cluster.ids();
  std::unique_ptr<blocking_client> c;
  uint32_t entry = ids[index % ids.size()];
  struct held {
    std::string sku, id;
  };
  std::vector<held> pending;
  uint64_t n = 0;
  while (!st.stop) {
    if (!c) {
      try {
        c = std::make_unique<blocking_client>(cluster.address(entry), cluster.client_config(o.call_timeout_ms));
      } catch (const std::exception&) {
        std::lock_guard<std::mutex> g(st.mutex);
        ++st.counts["connect_failed"];
        // The entry node is down: the next attempt goes to another node.
        entry = ids[rng() % ids.size()];
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // pacing, not a wait for an outcome
        continue;
      }
    }
    op_record r;
    r.worker = index;
    r.entry = entry;
    hold_op op;
    bool act = !pending.empty() && rng() % 2 == 0;
    if (act) {
      auto i = rng() % pending.size();
      auto h = pending[i];
      pending.erase(pending.begin() + static_cast<long>(i));
      op.kind = rng() % 5 < 3 ? hold_op_kind::confirm : hold_op_kind::release;
      op.hold_id = h.id;
      // Half the time by id alone: the cluster must find the hold's owner itself.
      if (rng() % 2) op.sku = h.sku;
      r.sku = h.sku;
    } else {
      op.kind = hold_op_kind::reserve;
      op.sku = rng() % 6 == 0 ? lin.name : skus[rng() % skus.size()];
      op.hold_id = "c" + std::to_string(o.seed) + "-w" + std::to_string(index) + "-" + std::to_string(n++);
      op.qty = 1 + static_cast<int64_t>(rng() % 3);
      op.ttl_ms = o.ttl_min_ms + static_cast<int64_t>(rng() % static_cast<uint64_t>(o.ttl_max_ms - o.ttl_min_ms + 1));
      if (op.sku == lin.name) op.ttl_ms = std::max<int64_t>(o.ttl_min_ms, lin.deadline_wall_ms - wall_ms());
      r.sku = op.sku;
    }
    r.kind = op.kind;
    r.hold_id = op.hold_id;
    r.qty = op.qty;
    auto t0 = clock_type::now();
    r.at_s = since(st.started);
    hold_result res;
    bool transport_failed = false;
    try {
      switch (op.kind) {
        case hold_op_kind::reserve: res = c->reserve(op.sku, op.qty, op.hold_id, op.ttl_ms); break;
        case hold_op_kind::confirm: res = c->confirm(op.hold_id, op.sku); break;
        default: res = c->release(op.hold_id, op.sku); break;
      }
    } catch (const std::exception&) {
      transport_failed = true;
    }
    r.latency_ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
    if (transport_failed) {
      r.outcome = "transport";
      c.reset();  // reconnect, maybe elsewhere
      entry = ids[rng() % ids.size()];
    } else {
      r.outcome = to_string(res.status);
      r.state = res.hold.state;
      if (res.status == code::out_of_stock && op.sku != lin.name && rng() % 3 == 0) {
        // Sold out: the warehouse restocks, so the sale goes on for the whole run.
        try {
          auto restocked = c->restock(op.sku, 20);
          std::lock_guard<std::mutex> g(st.mutex);
          ++st.counts[restocked.status == code::ok ? "restocks" : "restocks_failed"];
        } catch (const std::exception&) {
          c.reset();
        }
      }
      if (res.status == code::ok && op.kind == hold_op_kind::reserve) {
        // Some holds are left to expire.
        if (rng() % 4 != 0) pending.push_back({op.sku, op.hold_id});
      }
      // Switch entry nodes now and then, so every node forwards.
      if (rng() % 50 == 0) {
        c.reset();
        entry = ids[rng() % ids.size()];
      }
    }
    std::lock_guard<std::mutex> g(st.mutex);
    ++st.counts[bucket(r.outcome)];
    st.ops.push_back(std::move(r));
  }
}

std::string describe(const std::string& what, uint32_t node, uint32_t other = 0) {
  return what + " node " + std::to_string(node) + (other ? " from node " + std::to_string(other) : "");
}

// The nemesis's data loss: node `id`'s data directory is gone; its replica is replaced
// through the group (harness/replace_member.hpp), asked again while its peers still see
// its links up (for down_after_ms after the kill). " (replaced: replica R)" or why not.
// Done even when the run's time is up: the heal needs every node.
std::string replace_lost(local_cluster& cluster, uint32_t id) {
  replace_options r;
  r.node = id;
  r.data_dir = cluster.dir() + "/node-" + std::to_string(id);
  r.client = cluster.client_config(3'000);
  r.timeout_ms = 5'000;
  r.catch_up_limit = std::chrono::seconds(60);
  r.start = [&cluster, id] { cluster.start(id); };
  replace_result done;
  for (int attempt = 0; attempt < 20; ++attempt) {  // also when the run is over: it heals
    done = replace_member(cluster.config(), r);
    if (done.status == "ok" || done.message.find("live link") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));  // until the peers see it down
  }
  if (done.status == "ok") return " (replaced: replica " + std::to_string(done.replica) + ")";
  // The node stays down (started on an empty directory it would only be fenced): the
  // verdict says why.
  return " (REPLACE FAILED: " + done.status + ": " + done.message + ")";
}

// The nemesis: one fault at a time, each healed before the next.
void nemesis(const chaos_options& o, local_cluster& cluster, bool partitions, shared_state& st,
             std::vector<fault_record>& faults, std::map<std::string, int>& fault_counts) {
  std::mt19937_64 rng(o.seed ^ 0x9e3779b97f4a7c15ULL);
  auto ids = cluster.ids();
  auto pause = [&](double lo, double hi) {
    std::uniform_real_distribution<double> d(lo, hi);
    auto until = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                        std::chrono::duration<double>(d(rng)));
    while (!st.stop && clock_type::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the nemesis's own pacing
  };
  pause(o.fault_min_s, o.fault_max_s);
  bool hit_leader = false;  // a fault went to the leader
  while (!st.stop) {
    auto node = ids[rng() % ids.size()];
    // A replicated cluster's also lose a replica's data directory (the first fault always).
    bool replicated = o.replicas > 1 && o.attach.empty();
    int kinds = (partitions ? 3 : 2) + (replicated ? 1 : 0);
    int kind = replicated && fault_counts.empty() ? 3 : static_cast<int>(rng() % kinds);
    if (!partitions && kind == 2) kind = 3;
    // In a replicated cluster the first kill, freeze or partition goes to the group's leader,
    // and half of those after it (a partition then cuts the leader off from every other
    // node): the faults Raft must fail over from.
    bool at_leader = replicated && kind != 3 && (!hit_leader || rng() % 2 == 0);
    uint32_t leader = at_leader ? cluster.raft_leader(std::chrono::seconds(2)) : 0;
    if (leader != 0) node = leader;
    auto who = [&](const std::string& what) {
      return describe(what, node) + (leader != 0 ? " (the leader)" : "");
    };
    fault_record f;
    f.from_s = since(st.started);
    try {
      if (kind == 3) {
        f.what = describe("data loss of", node);
        cluster.kill9(node);
        std::filesystem::remove_all(cluster.dir() + "/node-" + std::to_string(node));
        ++fault_counts["data loss"];
        pause(o.fault_min_s, o.fault_max_s);
        f.what += replace_lost(cluster, node);
      } else if (kind == 0) {
        f.what = who("kill -9");
        cluster.kill9(node);
        ++fault_counts[leader != 0 ? "kill -9 of the leader" : "kill -9"];
        pause(o.fault_min_s, o.fault_max_s);
        cluster.start(node);
      } else if (kind == 1) {
        f.what = who("SIGSTOP");
        cluster.stop_signal(node);
        ++fault_counts[leader != 0 ? "SIGSTOP of the leader" : "SIGSTOP"];
        pause(o.fault_min_s, o.fault_max_s);
        cluster.continue_signal(node);
      } else if (ids.size() > 1) {
        auto other = node;
        while (other == node) other = ids[rng() % ids.size()];
        std::vector<uint32_t> cut{other};
        f.what = describe("partition", node, other);
        if (leader != 0) {
          cut.clear();
          for (auto id : ids)
            if (id != node) cut.push_back(id);
          f.what = "partition of the leader, node " + std::to_string(node) + ", from every other node";
        }
        {
          blocking_client c(cluster.address(node), cluster.client_config(2'000));
          auto refused = c.fault_partition(cut);
          if (!refused.empty()) throw std::runtime_error(refused);
        }  // one event loop per thread: this client goes before the healing one comes
        ++fault_counts[leader != 0 ? "partition of the leader" : "partition"];
        pause(o.fault_min_s, o.fault_max_s);
        // Healed through the node itself, retried: it may be busy.
        auto heal_from = clock_type::now();
        int attempt = 0;
        std::string why;
        for (; attempt < 50; ++attempt) {
          try {
            blocking_client h(cluster.address(node), cluster.client_config(2'000));
            why = h.fault_partition({});
            if (why.empty()) break;
          } catch (const std::exception& e) {
            why = e.what();
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(100));  // retry pacing
        }
        auto heal_ms = std::chrono::duration<double, std::milli>(clock_type::now() - heal_from).count();
        if (attempt > 0 || heal_ms > 500)
          f.what += " (healed after " + std::to_string(int(heal_ms)) + " ms, " + std::to_string(attempt + 1) +
                    " attempts: " + why + ")";
      }
    } catch (const std::exception& e) {
      f.what += std::string(" (failed: ") + e.what() + ")";
    }
    f.to_s = since(st.started);
    hit_leader = hit_leader || (leader != 0 && f.what.find("(failed") == std::string::npos);
    {
      std::lock_guard<std::mutex> g(st.mutex);
      faults.push_back(f);
    }
    pause(o.fault_min_s, o.fault_max_s);
  }
}

struct verdict : chaos_verdict {
  explicit verdict(std::string n) { name = std::move(n); }
};

}  // namespace

int run_chaos(const chaos_options& opt) {
  chaos_options o = opt;
  if (o.seed == 0) o.seed = static_cast<uint64_t>(wall_ms()) % 1'000'000'007ULL;
  bool temp = o.dir.empty();
  if (temp) {
    o.dir = make_temp_dir("holdfast-chaos");
    remove_on_interrupt(o.dir);  // an interrupted run leaves no data behind
  }
  {
    // --dir is made if missing; one that cannot be made or written is refused before the
    // run (a report that names an ops log it never wrote would be a lie).
    std::error_code ec;
    std::filesystem::create_directories(o.dir, ec);
    std::ofstream probe(o.dir + "/ops.jsonl", std::ios::trunc);
    if (ec || !probe) {
      std::cerr << "holdfast chaos: cannot use --dir " << o.dir << ": "
                << (ec ? ec.message() : std::string("cannot write ops.jsonl there")) << "\n";
      return 2;
    }
  }
  auto say = [&](const std::string& line) {
    (o.json ? std::cerr : std::cout) << line << std::endl;
  };
  bool attached = !o.attach.empty();
  std::string replay = "holdfast chaos --seed " + std::to_string(o.seed) + " --seconds " +
                       std::to_string(int(o.seconds)) + (attached ? " --attach " + o.attach : "") +
                       (o.workload != "holds" ? " --workload " + o.workload : "");
  const bool shopping = o.workload != "holds";
  if (o.workload != "holds" && o.workload != "checkout" && o.workload != "mixed") {
    std::cerr << "holdfast chaos: --workload is holds, checkout or mixed\n";
    return 2;
  }
  if (o.replicas > 1 && (attached || shopping || o.replicas != o.nodes)) {
    std::cerr << "holdfast chaos: --replicas runs its own cluster with the holds workload, and equals --nodes (one "
                 "Raft group on every node)\n";
    return 2;
  }
  if (o.replicas > 1) replay += " --replicas " + std::to_string(o.replicas);
  if (o.replicas > 1 && o.snapshot_entries > 0) replay += " --snapshot-entries " + std::to_string(o.snapshot_entries);
  if (shopping && attached) {
    std::cerr << "holdfast chaos: the checkout workload starts its own cluster and gateway: drop --attach\n";
    return 2;
  }
  std::unique_ptr<local_cluster> own;
  std::unique_ptr<checkout_cluster> with_gateway;
  local_cluster* cluster = nullptr;
  bool partitions = true;
  try {
    if (shopping) {
      // The gateway's faults come from the same seed: declines, lost replies after the
      // charge, webhooks late, twice and out of order.
      checkout_cluster_options co;
      co.nodes = o.nodes;
      co.node_args = {"--fault-hooks"};
      co.gateway_args = {"--seed", std::to_string(o.seed), "--decline-rate", "0.05", "--lost-reply-rate", "0.1",
                         "--duplicate-webhook-rate", "0.3", "--reorder-webhook-rate", "0.2",
                         "--webhook-delay-max-ms", "500", "--latency-ms", "10"};
      with_gateway = std::make_unique<checkout_cluster>(o.binary, o.dir, co);
      cluster = &with_gateway->nodes();
    } else if (attached) {
      if (::access((o.attach + "/cluster.toml").c_str(), F_OK) != 0)
        throw std::runtime_error(o.attach + " has no cluster.toml: `holdfast cluster up --dir " + o.attach +
                                 "` makes one");
      own = std::make_unique<local_cluster>(o.binary, o.attach, 0, std::vector<std::string>{}, false);
      cluster = own.get();
      cluster->attach();
      o.nodes = static_cast<int>(cluster->ids().size());
    } else {
      if (o.replicas > 1) {
        cluster_config cfg;
        std::string error;
        if (!init_cluster_dir(o.dir + "/cluster", o.nodes, 0, "holdfast-local", false, cfg, error, false, o.replicas) ||
            (o.snapshot_entries > 0 && !set_raft_snapshot_entries(o.dir + "/cluster", o.snapshot_entries, error)))
          throw std::runtime_error(error);
      }
      own = std::make_unique<local_cluster>(o.binary, o.dir + "/cluster", o.nodes,
                                            std::vector<std::string>{"--fault-hooks"});
      cluster = own.get();
    }
    if (!cluster->wait_links_up(std::chrono::seconds(30)))
      throw std::runtime_error("the links did not come up within 30 s");
    // Partitions go through the nodes' test-only fault hook; nodes started without
    // --fault-hooks refuse it, and the nemesis then only kills and stops.
    for (auto id : cluster->ids()) {
      blocking_client c(cluster->address(id), cluster->client_config(5'000));
      if (!c.fault_partition({}).empty()) partitions = false;
    }
  } catch (const std::exception& e) {
    std::cerr << "chaos: cannot " << (attached ? "attach to" : "start") << " the cluster: " << e.what() << "\n";
    if (attached && cluster) cluster->release();  // never kill what we did not start
    return 2;
  }
  say("holdfast chaos: seed " + std::to_string(o.seed) + ", " + std::to_string(int(o.seconds)) + " s, " +
      std::to_string(o.nodes) + " nodes, " + std::to_string(o.skus) + " SKUs x " + std::to_string(o.stock) +
      " units; replay with `" + replay + "`; " +
      (attached ? "attached to the cluster in " + o.attach + ", ops log in " + o.dir : "cluster in " + o.dir) +
      (partitions ? "" : "\n  no partitions: the nodes run without --fault-hooks (`holdfast cluster up "
                         "--fault-hooks` allows them)"));
  // An attached cluster may have seen this seed before: its SKUs get a run tag too.
  std::string prefix = "chaos-" + std::to_string(o.seed) + "-";
  if (attached) prefix += std::to_string(wall_ms()) + "-";
  std::vector<std::string> skus, shop_skus;
  for (int i = 0; i < o.skus; ++i) skus.push_back(prefix + std::to_string(i));
  linear_sku lin;
  lin.name = prefix + "lin";

  const int64_t limit_per_user = 2;
  if (shopping)
    for (int i = 0; i < 8; ++i) shop_skus.push_back(prefix + "shop-" + std::to_string(i));
  {
    std::vector<sku_op> creates;
    for (auto& s : skus) creates.push_back({sku_op_kind::create, s, o.stock, 100, {}});
    creates.push_back({sku_op_kind::create, lin.name, lin.stock, 100, {}});
    // The first checkout SKU is the flash-sale one: at most limit_per_user per user.
    for (auto& s : shop_skus)
      creates.push_back({sku_op_kind::create, s, o.stock, 250, {}, s == shop_skus.front() ? limit_per_user : 0});
    if (o.replicas > 1 && cluster->raft_leader(std::chrono::seconds(15)) == 0) {
      std::cerr << "chaos: the SKU group elected no leader in 15 s\n";
      return 2;
    }
    blocking_client c(cluster->address(cluster->ids().front()), cluster->client_config(10'000));
    for (auto& r : c.create_skus(creates))
      if (r.status != code::ok) {
        std::cerr << "chaos: cannot create the SKUs: " << to_string(r.status) << " " << r.message << "\n";
        return 2;
      }
  }

  // Past the last answer any call of the run can get (a call sent before the end answers
  // within its timeout): the linearizable SKU's holds do not expire within its history.
  lin.deadline_wall_ms = wall_ms() + static_cast<int64_t>(o.seconds * 1000) + o.call_timeout_ms + 2'000;
  shared_state st;
  st.started = clock_type::now();
  std::vector<fault_record> faults;
  std::map<std::string, int> fault_counts;
  std::vector<std::thread> threads;
  std::unique_ptr<checkout_workload> shop;
  if (shopping) shop = std::make_unique<checkout_workload>(o, *cluster, shop_skus, prefix, limit_per_user);
  for (int w = 0; w < o.workers; ++w) {
    bool shopper = o.workload == "checkout" || (o.workload == "mixed" && w % 2 == 1);
    if (shopper) threads.emplace_back([&, w] { shop->run(w, st.stop); });
    else threads.emplace_back([&, w] { worker(w, o, *cluster, skus, lin, st); });
  }
  std::thread chaos_thread([&] { nemesis(o, *cluster, partitions, st, faults, fault_counts); });
  // Progress every 5 s until the time is up.
  auto end = st.started + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o.seconds));
  auto next_report = st.started + std::chrono::seconds(5);
  while (clock_type::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // progress pacing
    if (clock_type::now() < next_report) continue;
    next_report += std::chrono::seconds(5);
    std::lock_guard<std::mutex> g(st.mutex);
    std::ostringstream line;
    line << "  t=" << int(since(st.started)) << "s  ops " << st.ops.size() << " (ok " << st.counts["ok"]
         << ", refused " << st.counts["refused"] << ", unavailable " << st.counts["unavailable"]
         << ", unknown " << st.counts["unknown"] << ")  faults " << faults.size()
         << (faults.empty() ? "" : "  last: " + faults.back().what);
    if (shop) line << "\n        " << shop->progress();
    say(line.str());
  }
  st.stop = true;
  for (auto& t : threads) t.join();
  chaos_thread.join();

  say("healing: every node running, no partition; waiting for the links and every TTL");
  std::string not_restarted;
  // A lost directory whose replacement failed (or stopped before its replica voted) is
  // replaced, as its operator would, once the others run unpartitioned: started on an
  // empty directory it would only be fenced. The fault's line keeps the failure.
  auto lost = [&](uint32_t id) {
    auto dir = cluster->dir() + "/node-" + std::to_string(id);
    return o.replicas > 1 && o.attach.empty() &&
           (!std::filesystem::exists(dir) || std::filesystem::exists(dir + "/" + group_replacement_file));
  };
  std::vector<uint32_t> to_replace;
  for (auto id : cluster->ids()) {
    if (cluster->stopped(id)) cluster->continue_signal(id);
    try {
      if (cluster->running(id)) continue;
      if (lost(id)) to_replace.push_back(id);
      else cluster->start(id);
    } catch (const std::exception& e) {
      not_restarted += "node " + std::to_string(id) + " did not restart: " + e.what() + "; ";
    }
  }
  for (auto id : cluster->ids())
    try {
      blocking_client c(cluster->address(id), cluster->client_config(5'000));
      c.fault_partition({});
    } catch (const std::exception&) {
    }
  for (auto id : to_replace) {
    auto replaced = replace_lost(*cluster, id);
    if (replaced.find("FAILED") != std::string::npos)
      not_restarted += "node " + std::to_string(id) + " was not replaced at the heal" + replaced + "; ";
  }
  bool healed = cluster->wait_links_up(std::chrono::seconds(30));
  int64_t last_deadline = std::max(wall_ms() + o.ttl_max_ms, lin.deadline_wall_ms);
  // Every hold ends by its deadline; expiry runs on the owner's timer right after.
  while (wall_ms() < last_deadline + 1'500) std::this_thread::sleep_for(std::chrono::milliseconds(100));

  // What was acknowledged, per hold.
  struct expect {
    std::string sku;
    int64_t qty = 0;
    bool acked = false, confirm_tried = false;
    bool ended_acked = false;  // a confirm or release answered ok...
    hold_state ended_as = hold_state::active;  // ...saying the hold is now this
  };
  std::map<std::string, expect> holds;
  double max_latency = 0;
  for (auto& r : st.ops) {
    max_latency = std::max(max_latency, r.latency_ms);
    auto& e = holds[r.hold_id];
    if (r.kind == hold_op_kind::reserve) {
      e.sku = r.sku;
      e.qty = r.qty;
      e.acked = r.outcome == "ok";
    } else {
      if (r.kind == hold_op_kind::confirm) e.confirm_tried = true;
      if (r.outcome == "ok") {
        e.ended_acked = true;
        e.ended_as = r.state;
      }
    }
  }
  verdict oversold{"never oversold"}, present{"every acknowledged hold present or properly ended"},
    ended{"every hold ended"}, balance{"sold + on_hand == stocked per SKU"},
    sold_matches{"sold == units of confirmed holds per SKU"},
    hung{"no call hung past its timeout"}, heal{"cluster healed (all links up)"};
  heal.ok = healed && not_restarted.empty();
  if (!healed) heal.detail = "links still down 30 s after healing";
  if (!not_restarted.empty()) heal.detail = not_restarted;
  std::map<std::string, int64_t> confirmed_units;
  size_t checked = 0;
  // Every hold ever asked for, queried through `via` 512 at a time.
  std::vector<std::pair<const std::string*, expect*>> asked;
  for (auto& [id, e] : holds)
    if (!e.sku.empty()) asked.push_back({&id, &e});
  auto query_all = [&](uint32_t via) {
    blocking_client c(cluster->address(via), cluster->client_config(10'000));
    std::vector<hold_result> answers;
    for (size_t at = 0; at < asked.size(); at += 512) {
      auto calls = kj::heapArrayBuilder<kj::Promise<hold_result>>(std::min<size_t>(512, asked.size() - at));
      for (size_t i = at; i < asked.size() && i < at + 512; ++i)
        calls.add(c.async().query_hold(*asked[i].first, asked[i].second->sku));
      for (auto& r : kj::joinPromises(calls.finish()).wait(c.io().waitScope)) answers.push_back(std::move(r));
    }
    return answers;
  };
  auto answers = query_all(cluster->ids().front());  // (its client goes before the next one comes)
  {
    blocking_client c(cluster->address(cluster->ids().front()), cluster->client_config(10'000));
    for (size_t i = 0; i < asked.size(); ++i) {
      auto& id = *asked[i].first;
      auto& e = *asked[i].second;
      auto& q = answers[i];
      ++checked;
      if (q.status == code::unknown_hold) {
        if (e.acked && present.ok) present.detail = "acknowledged hold " + id + " is gone";
        if (e.acked) present.ok = false;
        continue;
      }
      if (q.status != code::ok) {
        present.ok = false;
        present.detail = "hold " + id + ": " + to_string(q.status) + " " + q.message;
        continue;
      }
      auto s = q.hold.state;
      if (s == hold_state::active) {
        ended.ok = false;
        ended.detail = "hold " + id + " still active after its TTL";
      }
      if (s == hold_state::confirmed) confirmed_units[e.sku] += q.hold.qty;
      std::string bad;
      // An acknowledged confirm or release said what the hold became; that must stand
      // (a release of a hold past its deadline answers ok with the hold expired).
      if (e.ended_acked && s != e.ended_as)
        bad = std::string("acknowledged as ") + to_string(e.ended_as) + ", now " + to_string(s);
      if (s == hold_state::confirmed && !e.confirm_tried) bad = "confirmed without a confirm";
      if (!bad.empty()) {
        present.ok = false;
        present.detail = "hold " + id + ": " + bad;
      }
    }
    auto every_sku = skus;
    every_sku.push_back(lin.name);
    for (auto& sku : every_sku) {
      auto q = c.query_sku(sku);
      if (q.status != code::ok) {
        balance.ok = false;
        balance.detail = sku + ": " + to_string(q.status) + " " + q.message;
        continue;
      }
      auto& s = q.sku;
      if (s.sold > s.stocked || s.on_hand < 0 || s.reserved > s.on_hand) {
        oversold.ok = false;
        oversold.detail = sku + ": sold " + std::to_string(s.sold) + " of " + std::to_string(s.stocked);
      }
      if (s.sold + s.on_hand + s.written_off != s.stocked) {
        balance.ok = false;
        balance.detail = sku + ": sold " + std::to_string(s.sold) + " + on_hand " + std::to_string(s.on_hand) +
                         " != stocked " + std::to_string(s.stocked);
      }
      if (s.reserved != 0 || s.active_holds != 0) {
        ended.ok = false;
        ended.detail = sku + ": " + std::to_string(s.active_holds) + " holds still active";
      }
      if (s.sold != confirmed_units[sku]) {
        sold_matches.ok = false;
        sold_matches.detail = sku + ": sold " + std::to_string(s.sold) + ", confirmed holds " +
                              std::to_string(confirmed_units[sku]);
      }
    }
  }
  // A call answers by its deadline (the client's timeout); a second of grace for scheduling.
  if (shop) max_latency = std::max(max_latency, shop->max_latency_ms());
  hung.ok = max_latency <= o.call_timeout_ms + 1'000;
  hung.detail = "slowest call " + std::to_string(int64_t(max_latency)) + " ms, timeout " +
                std::to_string(o.call_timeout_ms) + " ms";
  // The linearizable SKU's calls, as its clients saw them: an order of them, each at a
  // moment between its sending and its answer, must explain every answer.
  verdict linear{"one SKU's history is linearizable (Wing-Gong search, Lowe's cache)"};
  std::vector<lin_call> history;
  for (auto& r : st.ops) {
    if (r.sku != lin.name) continue;
    lin_call call;
    call.kind = r.kind == hold_op_kind::reserve ? lin_call::reserve
                : r.kind == hold_op_kind::confirm ? lin_call::confirm
                                                  : lin_call::release;
    call.hold = r.hold_id;
    call.qty = r.qty;
    call.sent = r.at_s;
    call.answered = r.at_s + r.latency_ms / 1000;
    if (r.outcome == "ok") {
      call.answer = lin_call::ok;
    } else if (r.outcome == "out_of_stock" && call.kind == lin_call::reserve) {
      call.answer = lin_call::out_of_stock;
    } else if (r.outcome == "outcome_unknown" || r.outcome == "transport") {
      call.answer = lin_call::unknown;
      call.answered = std::numeric_limits<double>::infinity();
    } else if (r.outcome == "unavailable") {
      continue;  // nothing was done
    } else {
      // An acknowledged hold answered as missing or ended, within its lifetime.
      linear.ok = false;
      linear.detail = r.hold_id + ": " + r.outcome;
      break;
    }
    history.push_back(std::move(call));
  }
  // Confirms and releases carry their hold's units (the model frees them on a release).
  std::map<std::string, int64_t> units;
  for (auto& c : history)
    if (c.kind == lin_call::reserve) units[c.hold] = c.qty;
  for (auto& c : history)
    if (c.kind != lin_call::reserve) c.qty = units[c.hold];
  if (linear.ok) {
    auto v = check_linearizable(lin.stock, history);
    linear.ok = v.linearizable;
    linear.detail = lin.name + ": " + v.detail + (v.decided ? "" : " (no verdict)") + ", " + std::to_string(v.steps) +
                    " search steps";
  }
  std::vector<chaos_verdict> verdicts{heal, oversold, present, ended, balance, sold_matches, hung, linear};
  if (o.replicas > 1) {
    // The loss of a machine: the leader goes for good, and every hold must read the same
    // through the others once they elected a new one.
    verdict survived{"every hold survived the loss of the leader's machine"};
    auto leader = cluster->raft_leader(std::chrono::seconds(15));
    uint64_t installed = 0, snapshots = 0;
    for (auto id : cluster->ids()) {
      try {
        auto s = cluster->raft_status(id);
        installed += s.states_installed;
        snapshots += s.snapshots_taken;
      } catch (const std::exception&) {  // down: its counts went with it
      }
    }
    say("Raft: " + std::to_string(snapshots) + " snapshots taken, " + std::to_string(installed) +
        " states installed by followers that fell behind (counted by the nodes up now, since their last start)");
    uint32_t next = 0;  // the leader after the kill
    if (leader == 0) {
      survived.ok = false;
      survived.detail = "no leader to kill";
    } else {
      say("killing the leader, node " + std::to_string(leader) + ", and checking every hold through the others");
      cluster->kill9(leader);
      next = cluster->raft_leader(std::chrono::seconds(15));
      uint32_t via = leader % static_cast<uint32_t>(o.nodes) + 1;
      std::vector<hold_result> again;
      try {
        if (next == 0) {
          // What each replica says: for whoever looks into it.
          std::string said;
          for (auto id : cluster->ids()) {
            if (!cluster->running(id)) continue;
            try {
              auto r = cluster->raft_status(id);
              said += "; node " + std::to_string(id) + ": " + r.state + " term " + std::to_string(r.term) +
                      ", commit " + std::to_string(r.commit_index) + ", leader " + std::to_string(r.leader);
            } catch (const std::exception& e) {
              said += "; node " + std::to_string(id) + ": " + e.what();
            }
          }
          throw std::runtime_error("no new leader within 15 s" + said);
        }
        again = query_all(via);
      } catch (const std::exception& e) {
        survived.ok = false;
        survived.detail = e.what();
      }
      for (size_t i = 0; survived.ok && i < again.size(); ++i) {
        auto& before = answers[i];
        auto& after = again[i];
        if (after.status != before.status || (before.status == code::ok && after.hold.state != before.hold.state)) {
          survived.ok = false;
          survived.detail = "hold " + *asked[i].first + ": " + to_string(before.status) + "/" +
                            to_string(before.hold.state) + " before, " + to_string(after.status) + "/" +
                            to_string(after.hold.state) + " after";
        }
      }
      if (survived.ok)
        survived.detail = std::to_string(again.size()) + " holds read the same through node " + std::to_string(via) +
                          " after node " + std::to_string(leader) + " was killed; node " + std::to_string(next) +
                          " leads";
    }
    verdicts.push_back(survived);
    // Each data directory the nemesis took was replaced through the group.
    verdict replaced{"every lost data directory was replaced through the group"};
    int lost = 0, failed = 0;
    for (auto& f : faults) {
      if (f.what.rfind("data loss", 0) != 0) continue;
      ++lost;
      if (f.what.find("(replaced: replica") == std::string::npos) {
        ++failed;
        replaced.ok = false;
        replaced.detail = f.what;
      }
    }
    if (replaced.ok) replaced.detail = std::to_string(lost) + " of " + std::to_string(lost) + " replaced";
    // And the group ends with one voting replica per member, nothing half-added.
    if (replaced.ok && next != 0) {
      try {
        auto s = cluster->raft_status(next);
        std::map<uint32_t, int> voters;
        std::string odd;
        for (auto& v : s.servers) {
          if (v.role == "voter") ++voters[v.node];
          else odd += " " + std::to_string(v.replica) + " (" + v.role + ")";
        }
        for (auto id : cluster->ids())
          if (voters[id] != 1) odd += " node " + std::to_string(id) + " has " + std::to_string(voters[id]) + " voters";
        if (!odd.empty()) {
          replaced.ok = false;
          replaced.detail = "the group's configuration:" + odd;
        }
      } catch (const std::exception& e) {
        replaced.ok = false;
        replaced.detail = std::string("the new leader's status: ") + e.what();
      }
    }
    verdicts.push_back(replaced);
  }
  if (shop) {
    // Every order ends once healed (a step that found no answer retries with backoff of
    // up to 5 s, and gives up after 20 tries); then the gateway's ledger and the books.
    say("waiting for every order to end, then checking the gateway's ledger and the books");
    auto read_ledger = [&](ledger_view& v, std::string& error) { return with_gateway->gateway().ledger(v, error); };
    for (auto& v : shop->check(read_ledger, std::chrono::seconds(150))) verdicts.push_back(v);
  }
  bool pass = std::all_of(verdicts.begin(), verdicts.end(), [](auto& v) { return v.ok; });

  // The ops log: one JSON object per call.
  {
    std::ofstream log(o.dir + "/ops.jsonl");
    static const char* kinds[] = {"reserve", "confirm", "release", "query"};
    for (auto& r : st.ops)
      log << nlohmann::json{{"t", r.at_s}, {"worker", r.worker}, {"entry", r.entry},
                            {"op", kinds[static_cast<int>(r.kind)]}, {"sku", r.sku}, {"hold", r.hold_id},
                            {"qty", r.qty}, {"outcome", r.outcome}, {"latency_ms", r.latency_ms}}
               .dump()
          << "\n";
    if (!log.flush()) {
      verdict written("ops log written");
      written.ok = pass = false;
      written.detail = "writing " + o.dir + "/ops.jsonl failed";
      verdicts.push_back(written);
    }
  }
  // Timeline: calls per second by outcome, faults as shaded spans.
  int secs = int(o.seconds) + 1;
  std::vector<std::map<std::string, int>> per_second(static_cast<size_t>(secs));
  for (auto& r : st.ops) {
    auto s = std::min(secs - 1, std::max(0, int(r.at_s)));
    ++per_second[static_cast<size_t>(s)][bucket(r.outcome)];
  }
  // Checkouts count as calls too: placed (ok), refused (sold out, empty cart), no answer.
  if (shop) {
    auto checkouts = shop->per_second(secs);
    for (size_t i = 0; i < per_second.size() && i < checkouts.size(); ++i)
      for (auto& [k, v] : checkouts[i]) per_second[i][k] += v;
  }
  std::string png_note;
  if (!o.png.empty()) {
    std::ofstream dat(o.dir + "/timeline.dat");
    for (int s = 0; s < secs; ++s) {
      auto& m = per_second[static_cast<size_t>(s)];
      dat << s << " " << m["ok"] << " " << m["refused"] << " " << m["unavailable"] << " " << m["unknown"] << "\n";
    }
    dat.close();
    std::ostringstream body;
    body << " size 1400,520 noenhanced\nset output '" << o.png << "'\n"
         << "set title 'holdfast chaos, seed " << o.seed << ": calls per second by outcome; shaded: faults "
         << "(red kill -9, orange SIGSTOP, blue partition, grey data loss)'\n"
         << "set xlabel 'seconds'\nset ylabel 'calls/s'\nset grid\nset key outside right\n"
         << "set xrange [0:" << secs << "]\n";
    int n = 1;
    for (auto& f : faults) {
      auto color = f.what.rfind("kill", 0) == 0      ? "#ffb3b3"
                   : f.what.rfind("SIGSTOP", 0) == 0 ? "#ffd9a0"
                   : f.what.rfind("data", 0) == 0    ? "#c8c8c8"
                                                      : "#b3ccff";
      body << "set object " << n++ << " rect from " << f.from_s << ", graph 0 to " << std::max(f.to_s, f.from_s + 0.1)
           << ", graph 1 fc rgb '" << color << "' fs solid 0.5 noborder behind\n";
    }
    body << "plot '" << o.dir << "/timeline.dat' using 1:2 with lines lw 2 lc rgb '#2e7d32' title 'ok', "
         << "'' using 1:3 with lines lc rgb '#555555' title 'refused', "
         << "'' using 1:4 with lines lw 2 lc rgb '#e65100' title 'unavailable', "
         << "'' using 1:5 with lines lw 2 lc rgb '#c62828' title 'unknown'\n";
    auto failed = plot_png(body.str(), o.dir);
    png_note = failed.empty() ? "timeline: " + o.png : "no PNG: " + failed;
  }

  size_t total = st.ops.size();
  std::ostringstream report;
  report << "\nholdfast chaos report (seed " << o.seed << ", " << int(o.seconds) << " s, " << o.nodes
         << " nodes, " << o.skus << " SKUs, " << o.workers << " workers)\n"
         << "operations: " << total << "  ok " << st.counts["ok"] << "  refused " << st.counts["refused"]
         << "  unavailable " << st.counts["unavailable"] << "  unknown " << st.counts["unknown"]
         << "\n  restocks " << st.counts["restocks"] << " (+ " << st.counts["restocks_failed"]
         << " not done), reconnects after a failed connect " << st.counts["connect_failed"] << "\n"
         << "faults: " << faults.size();
  for (auto& [k, v] : fault_counts) report << "  " << k << " " << v;
  if (!partitions) report << "  (no partitions: nodes without --fault-hooks)";
  report << "\n";
  for (auto& f : faults)
    report << "  " << std::fixed << std::setprecision(1) << f.from_s << "-" << f.to_s << " s  " << f.what << "\n";
  if (shop) report << shop->summary() << "\n";
  report << "invariants (" << checked << " holds checked):\n";
  for (auto& v : verdicts)
    report << "  " << (v.ok ? "ok    " : "FAILED") << "  " << v.name << (v.detail.empty() ? "" : ": " + v.detail)
           << "\n";
  report << "ops log: " << o.dir << "/ops.jsonl";
  if (!png_note.empty()) report << "\n" << png_note;
  if (attached) {
    cluster->release_to_pid_files();  // restarted nodes are ours now: `cluster down` finds them
    report << "\nthe cluster in " << o.attach << " is left running";
  }
  report << "\nverdict: " << (pass ? "PASS" : "FAIL") << " (seed " << o.seed << ")";
  if (!pass)
    report << "\nreplay: " << replay << " --dir DIR"
           << (attached ? " (the node logs are in " + o.attach + ")" : " (the node logs are in DIR/cluster)");
  say(report.str());
  if (o.json) {
    nlohmann::json j{{"seed", o.seed}, {"seconds", o.seconds}, {"nodes", o.nodes}, {"skus", o.skus},
                     {"pass", pass}, {"operations", total}, {"dir", o.dir}};
    for (auto* k : {"ok", "refused", "unavailable", "unknown"}) j["outcomes"][k] = st.counts[k];
    for (auto& [k, v] : fault_counts) j["faults"][k] = v;
    j["fault_log"] = nlohmann::json::array();
    for (auto& f : faults) j["fault_log"].push_back({{"from_s", f.from_s}, {"to_s", f.to_s}, {"what", f.what}});
    for (auto& v : verdicts) j["invariants"].push_back({{"name", v.name}, {"ok", v.ok}, {"detail", v.detail}});
    j["max_latency_ms"] = max_latency;
    j["workload"] = o.workload;
    if (shop) j["checkout"] = shop->json();
    std::cout << j.dump() << "\n";
  }
  own.reset();
  with_gateway.reset();
  if (temp && pass) std::filesystem::remove_all(o.dir);
  return pass ? 0 : 1;
}

}  // namespace holdfast
