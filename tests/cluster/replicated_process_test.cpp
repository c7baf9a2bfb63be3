// A replicated cluster (replicas = 3): three `holdfast node` processes on loopback whose SKUs
// are one Raft replica group over mutual TLS. Under a steady stream of reservations sent to
// a follower (which forwards them to the leader), the leader is killed with kill -9: another
// node serves again, every reservation that was acknowledged is there, the stock counts
// no more than was acknowledged or left unknown, and the killed node comes back, catches
// up and carries the group when the next leader is killed.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <filesystem>

#include "client/cluster_client.hpp"
#include "cluster/certs.hpp"
#include "faultfs.hpp"
#include "tests/cluster/cluster_fixture.hpp"

namespace holdfast {
namespace {

using steady = std::chrono::steady_clock;

class replicated_cluster : public cluster_test {
protected:
  // `snapshot_entries`: the cluster file's raft_snapshot_entries (0: as `cluster init` writes it).
  void start_replicated(int snapshot_entries = 0) {
    cluster_config cfg;
    std::string error;
    ASSERT_TRUE(init_cluster_dir(dir_ + "/c", 3, 0, "holdfast-local", false, cfg, error, false, 3)) << error;
    EXPECT_EQ(cfg.replicas, 3u);
    if (snapshot_entries > 0) ASSERT_TRUE(set_raft_snapshot_entries(dir_ + "/c", snapshot_entries, error)) << error;
    start();
  }
  uint32_t leader() { return nodes_->raft_leader(std::chrono::seconds(15)); }
  // Through the leader (the reserver finished): every acknowledged hold of "tee" (1,000,000 units, one each) is
  // active, once, and the stock counts no more than the acknowledged ones and those whose
  // outcome was unknown.
  void expect_every_hold(const std::vector<std::string>& acked, const std::vector<std::string>& unknown) {
    auto check_on = leader();
    ASSERT_NE(check_on, 0u);
    auto missing = on(check_on, [&](blocking_client& c) {
      std::vector<std::string> out;
      for (auto& id : acked) {
        auto r = c.query_hold(id, "tee");
        if (r.status != code::ok || r.hold.state != hold_state::active || r.hold.qty != 1) out.push_back(id);
      }
      return out;
    }, 10'000);
    EXPECT_TRUE(missing.empty()) << missing.size() << " of " << acked.size() << " acknowledged holds missing, first "
                                 << missing.front();
    auto tee = on(check_on, [](blocking_client& c) { return c.query_sku("tee"); });
    ASSERT_EQ(tee.status, code::ok);
    EXPECT_GE(tee.sku.reserved, static_cast<int64_t>(acked.size()));
    EXPECT_LE(tee.sku.reserved, static_cast<int64_t>(acked.size() + unknown.size()));
    EXPECT_EQ(tee.sku.on_hand, 1'000'000);  // nothing sold, nothing lost
  }
  raft_group_status raft_of(uint32_t id) { return nodes_->raft_status(id); }
  // Creates SKU "tee" with `stock` units through `via` (asked again while the group elects).
  bool create_tee(uint32_t via, int64_t stock) {
    return wait_until([&] {
      return on(via, [stock](blocking_client& c) { return c.create_sku("tee", stock, 100).status; }) == code::ok;
    }, std::chrono::seconds(10));
  }
  // Waits (20 s at most) until `id`'s replica has applied what `lead` has committed.
  bool caught_up(uint32_t id, uint32_t lead) {
    return wait_until([&] {
      try {
        return raft_of(id).last_applied >= raft_of(lead).commit_index;
      } catch (const std::exception&) {
        return false;
      }
    }, std::chrono::seconds(20));
  }
};

// Reserves one unit after another through one node, recording each answer and when it came;
// when its connection fails or the node refuses, it goes on through the next node.
struct reserver {
  std::mutex mutex;
  std::vector<std::string> acked, unknown;
  std::vector<steady::time_point> acked_sent;  // when each acknowledged call was sent
  std::atomic<bool> stop{false};
  std::thread thread;
  void run(std::vector<std::string> addresses, client_options options) {
    thread = std::thread([this, addresses, options] {
      std::unique_ptr<blocking_client> c;
      size_t at = 0;
      for (int i = 0; !stop; ++i) {
        auto id = "h" + std::to_string(i);
        bool sending = false;
        try {
          if (!c) c = std::make_unique<blocking_client>(addresses[at++ % addresses.size()], options);
          auto sent = steady::now();
          sending = true;
          auto r = c->reserve("tee", 1, id, 600'000);
          std::lock_guard<std::mutex> lock(mutex);
          if (r.status == code::ok) {
            acked.push_back(id);
            acked_sent.push_back(sent);
          } else if (r.status == code::outcome_unknown) {
            unknown.push_back(id);
          } else {
            c.reset();  // refused (the node cannot reach a leader): the next node
          }
        } catch (const std::exception&) {
          // The connection went: a call sent has an unknown outcome; a node that could not
          // be reached was sent nothing.
          std::lock_guard<std::mutex> lock(mutex);
          if (sending) unknown.push_back(id);
          c.reset();
        }
        if (!c) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // before the next node
      }
    });
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mutex);
    return acked.size();
  }
  // When the first call sent after `t` that was acknowledged was sent (its answer came
  // before now): the group served again then at the latest.
  std::optional<steady::time_point> first_after(steady::time_point t) {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto& at : acked_sent)
      if (at > t) return at;
    return std::nullopt;
  }
  void finish() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
  ~reserver() { finish(); }
};

TEST_F(replicated_cluster, a_killed_leader_loses_no_acknowledged_hold_and_the_group_serves_again) {
  start_replicated(/*snapshot_entries=*/64);
  auto first = leader();
  ASSERT_NE(first, 0u) << "no leader elected\n" << log(1);
  uint32_t via = first % 3 + 1;  // a follower: it forwards to the leader
  ASSERT_TRUE(create_tee(via, 1'000'000));

  reserver load;
  std::vector<std::string> addresses;
  for (uint32_t k = 0; k < 3; ++k) addresses.push_back(nodes_->address((via - 1 + k) % 3 + 1));
  load.run(addresses, nodes_->client_config(1'000));
  ASSERT_TRUE(wait_until([&] { return load.count() >= 200; }, std::chrono::seconds(30))) << log(first);
  auto killed_at = steady::now();
  nodes_->kill9(first);
  ASSERT_TRUE(wait_until([&] { return load.first_after(killed_at).has_value(); }, std::chrono::seconds(15)))
    << "the group did not serve again\n" << log(via);
  auto failover = std::chrono::duration<double>(*load.first_after(killed_at) - killed_at).count();
  RecordProperty("failover_ms", static_cast<int>(failover * 1000));
  // The bound the issue sets (2 s at the default election timeout) is measured by the
  // benchmark; here the group must come back at all, well within a client's patience.
  EXPECT_LT(failover, 5.0);
  auto second = leader();
  ASSERT_NE(second, 0u);
  EXPECT_NE(second, first);
  auto before = load.count();
  ASSERT_TRUE(wait_until([&] { return load.count() >= before + 100; }, std::chrono::seconds(30)));
  // Until the group's log has moved past what its leader keeps (64 entries behind its
  // latest snapshot, taken every 64): the killed node gets the group's state.
  auto away_from = raft_of(second).commit_index;
  ASSERT_TRUE(wait_until([&] { return raft_of(second).commit_index > away_from + 3 * 64; }, std::chrono::seconds(30)));
  EXPECT_GT(raft_of(second).snapshot_index, 0u);

  // The killed node comes back from its directory and catches up with the group: from the
  // state the leader sends, then the entries after it.
  nodes_->start(first);
  ASSERT_TRUE(wait_until([&] {
    try {
      auto lead = raft_of(second), back = raft_of(first);
      return back.last_applied >= lead.commit_index && back.leader == second;
    } catch (const std::exception&) {
      return false;
    }
  }, std::chrono::seconds(30))) << log(first);
  EXPECT_GE(raft_of(first).states_installed, 1u) << log(first);

  // The second leader goes too: the returned node and the third make the majority.
  killed_at = steady::now();
  nodes_->kill9(second);
  ASSERT_TRUE(wait_until([&] { return load.first_after(killed_at).has_value(); }, std::chrono::seconds(15)))
    << "the group did not serve after its second leader was killed\n" << log(first);
  load.finish();
  expect_every_hold(load.acked, load.unknown);
}

// The leader is cut off from the other two (the fault hooks cut its Raft and peer links):
// the majority elects another and serves; the old leader acknowledges nothing and answers
// nothing from the state it had (every answer waits for an entry submitted after its call
// to commit, which it cannot do); once the partition heals it follows and has what the
// majority decided.
TEST_F(replicated_cluster, a_partitioned_leader_acknowledges_nothing_and_the_majority_serves) {
  cluster_config cfg;
  std::string error;
  ASSERT_TRUE(init_cluster_dir(dir_ + "/c", 3, 0, "holdfast-local", false, cfg, error, false, 3)) << error;
  start({"--fault-hooks"});
  auto old = leader();
  ASSERT_NE(old, 0u);
  uint32_t a = old % 3 + 1, b = a % 3 + 1;
  ASSERT_TRUE(create_tee(a, 10));
  ASSERT_EQ(on(a, [](blocking_client& c) { return c.reserve("tee", 1, "p1", 600'000).status; }), code::ok);

  auto cut = [&](uint32_t id, std::vector<uint32_t> peers) {
    EXPECT_EQ(on(id, [&](blocking_client& c) { return c.fault_partition(peers); }), "");
  };
  cut(old, {a, b});
  cut(a, {old});
  cut(b, {old});
  // At once, while it may still believe it leads: a read there is not answered from its
  // memory (it waits for a barrier it cannot commit, and is refused when it steps down).
  auto early = on(old, [](blocking_client& c) { return c.query_hold("p1", "tee"); }, 5'000);
  EXPECT_NE(early.status, code::ok) << "a leader without a majority answered a read";
  // Nor the replay of a reservation it had made (the same id and arguments): that answer
  // writes nothing, and by the time it is read the majority may have released the hold.
  auto replay = on(old, [](blocking_client& c) { return c.reserve("tee", 1, "p1", 600'000); }, 5'000);
  EXPECT_NE(replay.status, code::ok) << "a leader without a majority answered a replayed reservation";
  // The majority side elects a leader of its own and confirms the hold.
  ASSERT_TRUE(wait_until([&] {
    try {
      return on(a, [](blocking_client& c) { return c.confirm("p1", "tee").status; }, 1'000) == code::ok;
    } catch (const std::exception&) {
      return false;
    }
  }, std::chrono::seconds(15))) << log(a);
  auto fresh = leader();
  EXPECT_TRUE(fresh == a || fresh == b) << fresh;

  // The old leader: no read of the state it had, no acknowledgement.
  auto was = on(old, [](blocking_client& c) { return c.status().raft; });
  RecordProperty("old_leader_state_at_read", was.state);
  auto read = on(old, [](blocking_client& c) { return c.query_hold("p1", "tee"); }, 5'000);
  EXPECT_FALSE(read.status == code::ok && read.hold.state == hold_state::active)
    << "the cut-off leader answered the hold as it was before the majority confirmed it";
  auto stock = on(old, [](blocking_client& c) { return c.query_sku("tee"); }, 5'000);
  EXPECT_FALSE(stock.status == code::ok && stock.sku.reserved == 1) << "a stale read of the stock";
  auto refused = on(old, [](blocking_client& c) { return c.reserve("tee", 1, "p2", 600'000); }, 5'000);
  EXPECT_NE(refused.status, code::ok) << "the cut-off leader acknowledged a reservation";

  // Healed: the old leader follows and has the majority's decisions; p2 never happened.
  cut(old, {});
  cut(a, {});
  cut(b, {});
  ASSERT_TRUE(wait_until([&] {
    try {
      auto r = raft_of(old);
      return r.state == "follower" && r.leader != 0 && r.leader != old;
    } catch (const std::exception&) {
      return false;
    }
  }, std::chrono::seconds(15)));
  auto p1 = on(a, [](blocking_client& c) { return c.query_hold("p1", "tee"); });
  EXPECT_EQ(p1.status, code::ok);
  EXPECT_EQ(p1.hold.state, hold_state::confirmed);
  EXPECT_EQ(on(a, [](blocking_client& c) { return c.query_hold("p2", "tee").status; }), code::unknown_hold);
  auto tee = on(b, [](blocking_client& c) { return c.query_sku("tee"); });
  EXPECT_EQ(tee.sku.sold, 1);
  EXPECT_EQ(tee.sku.reserved, 0);
}

// A member whose replica data is gone (its group directory deleted) is refused at start, and
// says why: coming back empty it would have forgotten the entries and votes it gave.
TEST_F(replicated_cluster, a_member_that_lost_its_replica_data_is_refused) {
  start_replicated();
  auto l = leader();
  ASSERT_NE(l, 0u);
  uint32_t f = l % 3 + 1;
  ASSERT_TRUE(create_tee(l, 5));
  nodes_->kill9(f);
  auto data = nodes_->dir() + "/node-" + std::to_string(f);
  std::filesystem::remove_all(data + "/group");
  auto started = run_command({find_program("timeout"), "30", HOLDFAST_BINARY, "node", "--data", data, "--cluster",
                              nodes_->file(), "--id", std::to_string(f)});
  EXPECT_EQ(started.status, 2) << started.output;
  EXPECT_NE(started.output.find("lost its data"), std::string::npos) << started.output;
  // A replacement's directory whose replica id is not one (garbage, or the node's first
  // replica's) is refused, not started as the node's first replica.
  std::filesystem::remove_all(data);
  std::filesystem::create_directories(data);
  for (std::string bad : std::vector<std::string>{"hello\n", std::to_string(f) + "\n", "\n"}) {
    std::ofstream(data + "/group-replica") << bad;
    auto refused = run_command({find_program("timeout"), "30", HOLDFAST_BINARY, "node", "--data", data, "--cluster",
                                nodes_->file(), "--id", std::to_string(f)});
    EXPECT_EQ(refused.status, 2) << bad << refused.output;
    EXPECT_NE(refused.output.find("group-replica"), std::string::npos) << refused.output;
    EXPECT_FALSE(std::filesystem::exists(data + "/group/raft/holdfast-replica-id")) << bad;
  }
  // The other two serve on.
  EXPECT_EQ(on(l, [](blocking_client& c) { return c.reserve("tee", 1, "x1", 600'000).status; }), code::ok);
}

// A power loss of a minority: every node runs on its own faultfs shim (what was fsync'd, or
// written with RWF_DSYNC as libraft writes its log, survives; of the rest a random half of the
// pages). One node at a time, the leader or a follower, is killed under a stream of
// reservations, its files are rewound as a power cut would leave them, and it starts again
// and catches up. Then the decisive round: the third node is cut off from the leader, so
// what is acknowledged from then on is on the leader's and one follower's disks only; that
// follower's power is cut and the leader is killed. The power-cut follower and the third
// node must elect a leader and have every acknowledged hold: a write the follower
// acknowledged and lost would be gone. HOLDFAST_POWER_SEED replays a seed's choices.
TEST_F(replicated_cluster, a_power_loss_of_one_member_at_a_time_loses_no_acknowledged_hold) {
  cluster_config cfg;
  std::string error;
  ASSERT_TRUE(init_cluster_dir(dir_ + "/c", 3, 0, "holdfast-local", false, cfg, error, false, 3)) << error;
  ASSERT_TRUE(set_raft_snapshot_entries(dir_ + "/c", 64, error)) << error;  // snapshots are cut too
  nodes_ = std::make_unique<local_cluster>(HOLDFAST_BINARY, dir_ + "/c", 3, std::vector<std::string>{"--fault-hooks"},
                                           false);
  std::map<uint32_t, faultfs::options> disk;
  for (uint32_t id : nodes_->ids()) {
    auto& fs = disk[id];
    fs.data_dir = dir_ + "/c/node-" + std::to_string(id);
    fs.state_dir = dir_ + "/faultfs-state-" + std::to_string(id);
    fs.control_path = dir_ + "/faultfs-control-" + std::to_string(id);
    fs.shim_path = FAULTFS_SHIM_PATH;
    nodes_->set_env(id, faultfs::child_environment(fs));
    nodes_->start(id);
  }
  ASSERT_TRUE(nodes_->wait_links_up(std::chrono::seconds(20))) << log(1);
  auto l = leader();
  ASSERT_NE(l, 0u);
  ASSERT_TRUE(create_tee(l, 1'000'000));
  reserver load;
  std::vector<std::string> addresses;
  for (uint32_t id : nodes_->ids()) addresses.push_back(nodes_->address(id));
  load.run(addresses, nodes_->client_config(1'000));

  uint64_t seed = std::random_device{}();
  if (const char* fixed = std::getenv("HOLDFAST_POWER_SEED")) seed = std::strtoull(fixed, nullptr, 10);
  SCOPED_TRACE("power-loss seed " + std::to_string(seed) + " (HOLDFAST_POWER_SEED replays it)");
  std::mt19937_64 rng(seed);
  size_t unsynced_pages = 0;
  auto more_holds = [&](size_t n) {
    auto target = load.count() + n;
    return wait_until([&] { return load.count() >= target; }, std::chrono::seconds(30));
  };
  auto cut_power = [&](uint32_t id) {
    nodes_->kill9(id);
    unsynced_pages += faultfs::power_loss(disk[id], rng(), 0.5).unsynced_pages;
  };
  for (int round = 0; round < 4; ++round) {
    ASSERT_TRUE(more_holds(100 + rng() % 200)) << "round " << round;
    l = leader();
    ASSERT_NE(l, 0u) << "round " << round;
    uint32_t victim = round % 2 == 0 ? l : l % 3 + 1;  // the leader, then a follower
    cut_power(victim);
    nodes_->start(victim);
    // It comes back on what survived and catches up with the group.
    ASSERT_TRUE(wait_until([&] {
      try {
        auto now = leader();
        if (now == 0 || now == victim) return now == victim;
        auto lead = raft_of(now), back = raft_of(victim);
        return back.leader == now && back.last_applied >= lead.commit_index;
      } catch (const std::exception&) {
        return false;
      }
    }, std::chrono::seconds(30))) << "round " << round << ": node " << victim << " did not catch up\n" << log(victim);
  }

  // The decisive round: entries commit on the leader and the victim alone.
  l = leader();
  ASSERT_NE(l, 0u);
  uint32_t victim = l % 3 + 1, third = 6 - l - victim;
  EXPECT_EQ(on(l, [&](blocking_client& c) { return c.fault_partition({third}); }), "");
  auto cut_from = raft_of(l).commit_index;
  ASSERT_TRUE(more_holds(200 + rng() % 200));
  EXPECT_LT(raft_of(third).last_applied, raft_of(l).commit_index) << "the third node still hears the leader";
  EXPECT_GT(raft_of(l).commit_index, cut_from);
  cut_power(victim);
  auto killed_at = steady::now();
  nodes_->kill9(l);
  nodes_->start(victim);
  ASSERT_TRUE(wait_until([&] { return load.first_after(killed_at).has_value(); }, std::chrono::seconds(30)))
    << "the power-cut node and the third did not serve\n" << log(victim) << log(third);
  RecordProperty("unsynced_pages", static_cast<int>(unsynced_pages));
  EXPECT_GT(unsynced_pages, 0u) << "the power cuts found nothing unsynced: the shim saw no writes";
  load.finish();
  expect_every_hold(load.acked, load.unknown);
}

// A follower whose data directory is lost (its disk failed) is replaced through the group
// with `holdfast cluster replace`: the leader removes its lost replica and adds a new one
// (an id the group never had) at the same addresses; the node starts on a new directory,
// gets the group's state and log, and becomes a voter. Then the leader is killed: the new
// replica and the third node are the majority, and every acknowledged hold is there.
TEST_F(replicated_cluster, a_follower_whose_data_directory_is_lost_is_replaced_through_the_group) {
  start_replicated(/*snapshot_entries=*/64);  // the new replica is sent the state, not the log from 1
  auto l = leader();
  ASSERT_NE(l, 0u);
  uint32_t f = l % 3 + 1, other = 6 - l - f;
  ASSERT_TRUE(create_tee(l, 1'000));
  auto reserve = [&](uint32_t via, int from, int to) {
    for (int i = from; i < to; ++i)
      ASSERT_EQ(on(via, [i](blocking_client& c) { return c.reserve("tee", 1, "h" + std::to_string(i), 600'000).status; }),
                code::ok) << i;
  };
  reserve(l, 0, 100);
  nodes_->kill9(f);
  auto data = nodes_->dir() + "/node-" + std::to_string(f);
  auto cli = [&] {
    return run_command_for({HOLDFAST_BINARY, "--json", "cluster", "replace", "--dir", nodes_->dir(), "--node",
                            std::to_string(f)}, std::chrono::seconds(240));
  };
  // Its directory is still there: refused, nothing changes.
  auto kept = cli();
  EXPECT_NE(kept.status, 0) << kept.output;
  EXPECT_NE(kept.output.find("move that directory away"), std::string::npos) << kept.output;
  EXPECT_EQ(raft_of(l).servers.size(), 3u);
  std::filesystem::remove_all(data);
  reserve(l, 100, 200);  // the group serves on with two
  {
    // Another replacement of the node under way (its lock held): refused, nothing changes.
    int held = ::open((data + ".replace.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(held, 0);
    ASSERT_EQ(::flock(held, LOCK_EX), 0);
    auto busy = cli();
    ::close(held);
    EXPECT_NE(busy.status, 0) << busy.output;
    EXPECT_NE(busy.output.find("another replacement of node"), std::string::npos) << busy.output;
    EXPECT_FALSE(std::filesystem::exists(data));
    EXPECT_EQ(raft_of(l).servers.size(), 3u);
  }

  auto replaced = cli();
  pid_t pid = 0;
  {
    std::ifstream in(local_cluster::pid_file(nodes_->dir(), f));
    in >> pid;
  }
  struct killer {
    pid_t pid;
    ~killer() {
      if (pid > 0) ::kill(pid, SIGKILL);
    }
  } cleanup{pid};
  ASSERT_EQ(replaced.status, 0) << replaced.output << log(l);
  auto out = nlohmann::json::parse(replaced.output.substr(replaced.output.rfind('{')), nullptr, false);
  uint64_t replica = out.value("replica", uint64_t{0});
  EXPECT_EQ(replica & 0xffff, f) << replaced.output;
  EXPECT_NE(replica, f) << "a replacement never takes an id the group had";
  EXPECT_GT(pid, 0);
  // The group: the leader, the third node and the new replica, all voters (as the leader's
  // status shows it: a copy made every 100 ms).
  auto members = [&] {
    std::string text;
    for (auto& s : raft_of(l).servers) text += std::to_string(s.replica) + ":" + s.role + " ";
    return text;
  };
  auto wanted = std::to_string(l) + ":voter " + std::to_string(other) + ":voter " + std::to_string(replica) + ":voter ";
  auto sorted = [](std::string t) {
    std::vector<std::string> parts;
    for (size_t at = 0, sp; (sp = t.find(' ', at)) != std::string::npos; at = sp + 1) parts.push_back(t.substr(at, sp - at));
    std::sort(parts.begin(), parts.end());
    std::string out;
    for (auto& p : parts) out += p + " ";
    return out;
  };
  EXPECT_TRUE(wait_until([&] { return sorted(members()) == sorted(wanted); }, std::chrono::seconds(5)))
    << members() << " (wanted " << wanted << ")";
  // Its replica has the group's data (it was sent the state: the log moved past 64 entries).
  ASSERT_TRUE(caught_up(f, l));
  EXPECT_EQ(raft_of(f).replica, replica);
  EXPECT_GE(raft_of(f).states_installed, 1u);
  // Run again while it runs: refused. Even when its pid file is gone (the command that
  // started it was killed first): its directory's lock names it, and the pid file is back.
  std::filesystem::remove(local_cluster::pid_file(nodes_->dir(), f));
  auto again = cli();
  EXPECT_NE(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("not lost"), std::string::npos) << again.output;
  EXPECT_EQ(local_cluster::live_pid(nodes_->dir(), f), pid);

  // The leader dies: the third node and the new replica are the majority.
  nodes_->kill9(l);
  ASSERT_TRUE(wait_until([&] {
    return on(other, [](blocking_client& c) { return c.reserve("tee", 1, "after", 600'000).status; }) == code::ok;
  }, std::chrono::seconds(20))) << log(other);
  for (uint32_t via : {other, f})
    for (int i = 0; i < 200; ++i) {
      auto h = on(via, [i](blocking_client& c) { return c.query_hold("h" + std::to_string(i), "tee"); });
      ASSERT_EQ(h.status, code::ok) << "h" << i << " through node " << via;
    }
  auto tee = on(f, [](blocking_client& c) { return c.query_sku("tee"); });
  EXPECT_EQ(tee.sku.reserved, 201);
}

// A member whose whole data directory was lost and that is started again on an empty one
// (its peers refuse it: a new lineage) never reaches the group: its replica, with an empty
// log, could otherwise vote for a replica that lacks entries the group committed. Holds
// committed by the leader and this member alone (the third node cut off) stay safe while
// the leader is down: the third node cannot be elected with the empty replica's vote, and
// once the leader returns every hold is there.
TEST_F(replicated_cluster, a_member_restarted_on_an_empty_directory_never_votes) {
  cluster_config cfg;
  std::string error;
  ASSERT_TRUE(init_cluster_dir(dir_ + "/c", 3, 0, "holdfast-local", false, cfg, error, false, 3)) << error;
  start({"--fault-hooks"});
  auto l = leader();
  ASSERT_NE(l, 0u);
  uint32_t f1 = l % 3 + 1, f2 = 6 - l - f1;
  ASSERT_TRUE(create_tee(l, 100));
  auto cut = [&](uint32_t id, std::vector<uint32_t> peers) {
    EXPECT_EQ(on(id, [&](blocking_client& c) { return c.fault_partition(peers); }), "");
  };
  cut(f2, {l, f1});
  cut(l, {f2});
  cut(f1, {f2});
  for (int i = 0; i < 10; ++i)  // on the leader's and f1's disks only
    ASSERT_EQ(on(l, [i](blocking_client& c) { return c.reserve("tee", 1, "x" + std::to_string(i), 600'000).status; }),
              code::ok);
  nodes_->kill9(f1);
  std::filesystem::remove_all(nodes_->dir() + "/node-" + std::to_string(f1));
  nodes_->start(f1);  // an empty directory: it starts, and its peers refuse it
  nodes_->kill9(l);
  cut(f2, {});
  // f2 lacks the holds; only the empty replica's vote could elect it.
  EXPECT_FALSE(wait_until([&] {
    for (auto id : {f1, f2})
      try {
        if (raft_of(id).state == "leader") return true;
      } catch (const std::exception&) {
      }
    return false;
  }, std::chrono::seconds(5))) << log(f2) << log(f1);
  nodes_->start(l);
  for (int i = 0; i < 10; ++i) {
    hold_result h;
    ASSERT_TRUE(wait_until([&] {
      h = on(f2, [i](blocking_client& c) { return c.query_hold("x" + std::to_string(i), "tee"); });
      return h.status != code::unavailable;
    }, std::chrono::seconds(20)));
    EXPECT_EQ(h.status, code::ok) << "x" << i;
  }
}

// Five replicas: a follower's data directory is lost and replaced, then two more nodes die
// (the leader among them): the new replica and the two others are three of five, elect a
// leader, and every acknowledged hold is there.
TEST_F(replicated_cluster, five_replicas_replace_one_and_survive_two_more_losses) {
  cluster_config cfg;
  std::string error;
  ASSERT_TRUE(init_cluster_dir(dir_ + "/c", 5, 0, "holdfast-local", false, cfg, error, false, 5)) << error;
  start();
  auto l = leader();
  ASSERT_NE(l, 0u);
  ASSERT_TRUE(create_tee(l, 1'000));
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(on(l, [i](blocking_client& c) { return c.reserve("tee", 1, "h" + std::to_string(i), 600'000).status; }),
              code::ok) << i;
  uint32_t f = l % 5 + 1, g = f % 5 + 1;
  nodes_->kill9(f);
  std::filesystem::remove_all(nodes_->dir() + "/node-" + std::to_string(f));
  auto replaced = run_command_for({HOLDFAST_BINARY, "--json", "cluster", "replace", "--dir", nodes_->dir(), "--node",
                                   std::to_string(f)}, std::chrono::seconds(240));
  struct killer {
    pid_t pid;
    ~killer() {
      if (pid > 0) ::kill(pid, SIGKILL);
    }
  } cleanup{local_cluster::live_pid(nodes_->dir(), f)};
  ASSERT_EQ(replaced.status, 0) << replaced.output << log(l);
  EXPECT_TRUE(wait_until([&] {
    auto servers = raft_of(l).servers;
    return servers.size() == 5 && std::all_of(servers.begin(), servers.end(), [](auto& s) { return s.role == "voter"; });
  }, std::chrono::seconds(5)));
  nodes_->kill9(l);
  nodes_->kill9(g);
  uint32_t via = 0;
  for (uint32_t id = 1; id <= 5; ++id)
    if (id != l && id != g && id != f) via = id;
  ASSERT_TRUE(wait_until([&] {
    return on(via, [](blocking_client& c) { return c.reserve("tee", 1, "after", 600'000).status; }) == code::ok;
  }, std::chrono::seconds(20))) << log(via);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(on(f, [i](blocking_client& c) { return c.query_hold("h" + std::to_string(i), "tee").status; }), code::ok)
      << "h" << i;
  EXPECT_EQ(on(f, [](blocking_client& c) { return c.query_sku("tee"); }).sku.reserved, 101);
}

// The cluster-aware client learns the group's leader from the members and sends SKU calls
// straight to it (the others forward nothing); when the leader is killed its calls answer
// unavailable or unknown until it finds the next leader, and then go there; when
// leadership is handed over (no call fails) it finds the new leader within its check.
TEST_F(replicated_cluster, the_cluster_aware_client_sends_sku_calls_to_the_leader_and_follows_it) {
  start_replicated();
  auto l = leader();
  ASSERT_NE(l, 0u);
  ASSERT_TRUE(create_tee(l, 1'000));
  // What the members other than `lead` forwarded so far.
  auto forwarded = [&](uint32_t lead) {
    uint64_t n = 0;
    for (auto id : nodes_->ids())
      if (id != lead && nodes_->running(id)) n += on(id, [](blocking_client& c) { return c.status().forwarded_total; });
    return n;
  };
  auto io = kj::setupAsyncIo();
  auto pump_until = [&](const std::function<bool()>& done, std::chrono::seconds limit) {
    auto until = steady::now() + limit;
    while (!done() && steady::now() < until) io.provider->getTimer().afterDelay(20 * kj::MILLISECONDS).wait(io.waitScope);
    return done();
  };
  auto cc = cluster_client::connect(*io.provider, nodes_->config(), nodes_->client_config()).wait(io.waitScope);
  ASSERT_TRUE(pump_until([&] { return cc->sku_leader() == l; }, std::chrono::seconds(10))) << cc->sku_leader();
  auto reserve_all = [&](const std::string& prefix) {
    for (int i = 0; i < 50; ++i)
      ASSERT_EQ(
        cc->reserve({hold_op_kind::reserve, "tee", prefix + std::to_string(i), 1, 600'000, {}}).wait(io.waitScope).status,
        code::ok) << prefix << i;
  };
  auto before = forwarded(l);
  reserve_all("a");
  EXPECT_EQ(forwarded(l), before) << "SKU calls went through a member that is not the leader";

  nodes_->kill9(l);
  int i = 0;
  bool served = pump_until([&] {
    return cc->reserve({hold_op_kind::reserve, "tee", "b" + std::to_string(i++), 1, 600'000, {}}).wait(io.waitScope).status ==
           code::ok;
  }, std::chrono::seconds(20));
  ASSERT_TRUE(served) << "no reservation succeeded after the leader was killed";
  auto next = leader();
  ASSERT_NE(next, 0u);
  EXPECT_NE(next, l);
  // Meanwhile calls may have gone through the other member; the client finds the leader.
  ASSERT_TRUE(pump_until([&] { return cc->sku_leader() == next; }, std::chrono::seconds(10))) << cc->sku_leader();
  before = forwarded(next);
  reserve_all("c");
  EXPECT_EQ(forwarded(next), before) << "SKU calls went through a member that is not the new leader";
  for (int k = 0; k < 50; ++k)
    EXPECT_EQ(cc->query_hold("a" + std::to_string(k), "tee").wait(io.waitScope).hold.state, hold_state::active) << k;

  // Leadership moves without a failure (the old leader forwards and answers ok): the
  // client's periodic check finds the new one.
  nodes_->start(l);
  ASSERT_TRUE(caught_up(l, next));
  ASSERT_EQ(on(next, [&](blocking_client& c) { return c.transfer_leadership(l).second; }), "");
  ASSERT_TRUE(pump_until([&] { return cc->sku_leader() == l; }, std::chrono::seconds(10))) << cc->sku_leader();
  before = forwarded(l);
  reserve_all("d");
  EXPECT_EQ(forwarded(l), before) << "SKU calls went through the old leader";
}

// `holdfast cluster rebalance` hands the SKU group's leadership back to its preferred node
// (the first member) once that node returns, by Raft's leadership transfer: the new leader
// serves at once and has everything. Asking a follower, naming a stranger, or a target that
// is down is refused with why, and leadership stays where it was.
TEST_F(replicated_cluster, rebalance_hands_leadership_back_to_the_preferred_node) {
  start_replicated();
  auto cli = [&](const std::string& args) {
    std::string out;
    FILE* pipe = popen((std::string(HOLDFAST_BINARY) + " --json cluster rebalance --dir " + dir_ + "/c " + args + " 2>&1").c_str(), "r");
    char buf[4096];
    while (pipe && !feof(pipe))
      if (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
    int rc = pipe ? pclose(pipe) : -1;
    return std::make_pair(WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, out);
  };
  auto first = leader();
  ASSERT_NE(first, 0u);
  ASSERT_TRUE(create_tee(first, 1'000));
  // Node 1 stops leading: it is killed if it leads, and comes back as a follower.
  if (first == 1) {
    nodes_->kill9(1);
    ASSERT_TRUE(wait_until([&] { return nodes_->raft_leader(std::chrono::seconds(1)) > 1; }, std::chrono::seconds(15)));
    nodes_->start(1);
  }
  auto before = leader();
  ASSERT_GT(before, 1u);
  ASSERT_EQ(on(before, [](blocking_client& c) { return c.reserve("tee", 3, "before-move", 600'000).status; }), code::ok);
  ASSERT_TRUE(caught_up(1, before));

  // Refusals change nothing: a follower asked, a stranger named, a target that is down.
  auto follower = before == 2 ? 3u : 2u;
  auto asked = on(follower, [](blocking_client& c) { return c.transfer_leadership(1); });
  EXPECT_NE(asked.second.find("does not lead"), std::string::npos) << asked.second;
  auto stranger = on(before, [](blocking_client& c) { return c.transfer_leadership(9); });
  EXPECT_NE(stranger.second.find("not a member"), std::string::npos) << stranger.second;
  auto [bad_rc, bad_out] = cli("--to 9");
  EXPECT_NE(bad_rc, 0) << bad_out;
  nodes_->kill9(follower);
  auto [down_rc, down_out] = cli("--to " + std::to_string(follower));
  EXPECT_NE(down_rc, 0) << down_out;
  EXPECT_NE(down_out.find("did not take over"), std::string::npos) << down_out;
  EXPECT_EQ(leader(), before);
  nodes_->start(follower);
  ASSERT_TRUE(caught_up(follower, before));

  // The preferred node takes over and serves what the group had.
  auto [rc, out] = cli("");
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out.substr(out.find('{')), nullptr, false);
  EXPECT_EQ(j.value("leader", 0u), 1u) << out;
  EXPECT_NE(j.value("leader_before", 0u), 1u) << out;  // (the follower's return may have moved it)
  ASSERT_TRUE(wait_until([&] { return raft_of(1).serving; }, std::chrono::seconds(10)));
  auto held = on(1, [](blocking_client& c) { return c.query_hold("before-move", "tee"); });
  EXPECT_EQ(held.status, code::ok);
  EXPECT_EQ(held.hold.qty, 3);
  EXPECT_EQ(on(1, [](blocking_client& c) { return c.reserve("tee", 1, "after-move", 600'000).status; }), code::ok);
  // Once more: nothing to do.
  auto [again_rc, again_out] = cli("");
  EXPECT_EQ(again_rc, 0) << again_out;
  EXPECT_NE(again_out.find("\"leader_before\":1"), std::string::npos) << again_out;
}

}  // namespace
}  // namespace holdfast
