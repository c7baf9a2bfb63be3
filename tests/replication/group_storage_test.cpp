// A replica group's storage (cluster/group_storage.hpp): three replicas in one process, each
// the real storage (LMDB on disk, replicated mode) under a real Raft replica (raft_uv on
// disk) over mutual TLS on loopback. The leader's group commits come back only once a
// majority has them and this replica applied them; followers apply the same entries (their
// reads see them, hold ids included); a stopped leader's group serves again from another
// replica with every acknowledged commit; a restarted replica starts from its LMDB snapshot
// and skips the entries it already has.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <time.h>

#include "cluster/group_storage.hpp"
#include "protocol/files.hpp"
#include "tests/replication/tls_links_fixture.hpp"

namespace holdfast::replication {
namespace {

struct replica_node {
  std::unique_ptr<group_storage> group;
  std::atomic<int> leading{0}, following{0};
  std::atomic<uint64_t> tenure{0};  // the latest tenure it led in
};

class group_storages : public tls_links {
protected:
  void SetUp() override {
    make_links(3);
    nodes_ = std::vector<replica_node>(3);
    for (unsigned i = 0; i < 3; ++i) start(i);
  }
  void TearDown() override {
    for (unsigned i = 0; i < nodes_.size(); ++i) stop(i);
    remove_directory();
  }

  std::string path(unsigned i) { return (dir_ / ("node-" + std::to_string(i + 1))).string(); }

  group_storage_options options(unsigned i) {
    group_storage_options o;
    o.storage.path = path(i);
    o.storage.map_size_bytes = size_t{64} << 20;
    o.storage.background = false;         // snapshots when the test says
    o.storage.snapshot_at_close = false;  // a stop is a crash
    o.raft.id = i + 1;
    o.raft.address = voters_[i].address;
    o.raft.voters = voters_;
    o.raft.election_timeout_ms = 500;
    o.raft.heartbeat_ms = 50;
    if (snapshot_entries_ > 0) o.raft.snapshot_threshold = o.raft.snapshot_trailing = snapshot_entries_;
    return o;
  }

  void start(unsigned i) {
    auto o = options(i);
    auto* n = &nodes_[i];
    o.on_leading = [n](uint64_t, uint64_t tenure) {
      n->tenure = tenure;
      ++n->leading;
    };
    o.on_following = [n](uint64_t) { ++n->following; };
    std::string error;
    n->group = group_storage::open(o, connector(i), error);
    ASSERT_TRUE(n->group) << error;
  }
  void stop(unsigned i) {
    nodes_[i].group.reset();
    links_[i].connector.reset();
  }
  storage& store(unsigned i) { return *nodes_[i].group->store(); }

  int serving() {
    for (unsigned i = 0; i < nodes_.size(); ++i)
      if (nodes_[i].group && nodes_[i].group->status().serving) return static_cast<int>(i);
    return -1;
  }
  unsigned leader() {
    EXPECT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no leader";
    return static_cast<unsigned>(std::max(serving(), 0));
  }

  // One SKU's record with `holds` active holds of one unit each (ids "<sku>-h<k>").
  static std::vector<mutation> sku_batch(const std::string& sku, int64_t stock, int holds) {
    std::vector<mutation> batch(1);
    batch[0].kind = mutation::put_sku;
    auto& s = batch[0].sku.sku;
    s.sku = sku;
    s.on_hand = s.stocked = stock;
    s.reserved = s.active_holds = holds;
    for (int k = 0; k < holds; ++k) {
      mutation m;
      m.kind = mutation::put_hold;
      m.hold.hold.hold_id = sku + "-h" + std::to_string(k);
      m.hold.hold.sku = sku;
      m.hold.hold.qty = 1;
      m.hold.hold.deadline_ms = 4'000'000'000'000;
      batch.push_back(m);
    }
    return batch;
  }
  store_status commit(unsigned i, std::vector<std::vector<mutation>> batches) {
    std::vector<storage::commit_part> parts;
    for (auto& b : batches) parts.push_back({&b, parts.size() + 1});
    std::vector<store_status> statuses;
    return store(i).commit(parts, statuses);
  }
  int64_t stock_at(unsigned i, const std::string& sku) {
    sku_record r;
    return store(i).read_sku(sku, r) == store_status::ok ? r.sku.on_hand : -1;
  }
  bool all_have(const std::vector<unsigned>& replicas, const std::string& sku, int64_t stock) {
    for (auto i : replicas)
      if (stock_at(i, sku) != stock) return false;
    return true;
  }

  // The replica's whole state as read_state reads it, on the replica's thread, without
  // its header (position and clock mark) and checksum: the records alone.
  std::string records_of(unsigned i) {
    std::string state;
    uint64_t index = 0;
    store_status st = store_status::io_error;
    nodes_[i].group->host().run([&](replica&) {
      st = store(i).snapshot_now();
      if (st == store_status::ok) st = store(i).read_state(state, index);
    });
    EXPECT_EQ(st, store_status::ok) << i;
    return state.size() > 28 ? state.substr(24, state.size() - 28) : std::string();
  }
  replica_counters counters(unsigned i) {
    replica_counters c;
    nodes_[i].group->host().run([&](replica& r) { c = r.counters(); });
    return c;
  }

  std::vector<replica_node> nodes_;
  unsigned snapshot_entries_ = 0;  // 0: raft_host's default
};

// Raft snapshots every 16 entries, 16 kept behind.
class group_storages_snapshotting : public group_storages {
protected:
  group_storages_snapshotting() { snapshot_entries_ = 16; }
};

TEST_F(group_storages, commits_replicate_to_every_replica_and_survive_the_leader) {
  unsigned first = leader();
  EXPECT_GE(nodes_[first].leading.load(), 1);
  // Group commits of one and of several batches, each acknowledged only once applied here.
  for (int k = 0; k < 20; ++k)
    ASSERT_EQ(commit(first, {sku_batch("sku-" + std::to_string(k), 10 + k, k % 3)}), store_status::ok);
  ASSERT_EQ(commit(first, {sku_batch("multi-a", 5, 1), sku_batch("multi-b", 6, 2)}), store_status::ok);
  EXPECT_EQ(stock_at(first, "sku-19"), 29);  // applied before the commit returned

  // A follower refuses, and its refusal changed nothing anywhere.
  unsigned follower = (first + 1) % 3;
  EXPECT_EQ(commit(follower, {sku_batch("refused", 1, 0)}), store_status::not_leader);

  // Followers apply the same entries: records, and active hold ids in the node-wide index.
  ASSERT_TRUE(wait_until([&] { return all_have({0, 1, 2}, "multi-b", 6); }, std::chrono::seconds(10)));
  for (unsigned i = 0; i < 3; ++i) {
    for (int k = 0; k < 20; ++k) EXPECT_EQ(stock_at(i, "sku-" + std::to_string(k)), 10 + k) << i;
    EXPECT_EQ(stock_at(i, "refused"), -1);
    std::string owner;
    EXPECT_EQ(store(i).lookup_hold_sku("sku-2-h1", owner), store_status::ok) << i;
    EXPECT_EQ(owner, "sku-2");
    std::vector<hold_record> holds;
    EXPECT_EQ(store(i).read_active_holds("multi-b", holds), store_status::ok);
    EXPECT_EQ(holds.size(), 2u) << i;
  }

  // The leader goes (a crash: no snapshot at close). Another serves within the bound, with
  // everything acknowledged, and takes commits.
  auto stopped = std::chrono::steady_clock::now();
  stop(first);
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no new leader";
  auto failover = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  RecordProperty("failover_ms", static_cast<int>(failover * 1000));
  EXPECT_LT(failover, 2.0);
  unsigned second = serving();
  for (int k = 0; k < 20; ++k) EXPECT_EQ(stock_at(second, "sku-" + std::to_string(k)), 10 + k);
  ASSERT_EQ(commit(second, {sku_batch("sku-0", 100, 0)}), store_status::ok);
  ASSERT_EQ(commit(second, {sku_batch("after", 7, 1)}), store_status::ok);

  // The old leader comes back from its directories (nothing was snapshotted: Raft hands it
  // every entry) and converges, the newer value of sku-0 included.
  start(first);
  ASSERT_TRUE(wait_until([&] { return all_have({0, 1, 2}, "after", 7); }, std::chrono::seconds(20)));
  for (unsigned i = 0; i < 3; ++i) {
    EXPECT_EQ(stock_at(i, "sku-0"), 100) << i;
    EXPECT_EQ(stock_at(i, "multi-a"), 5) << i;
  }
  EXPECT_EQ(store(first).stats().entries_skipped, 0u);

  // A claim an SKU actor made for a write that never committed (its leader lost the
  // group) goes when the index is built again; durable holds' ids stay.
  auto& s = store(second);
  std::string owner;
  auto number = s.sku_number("sku-1");
  ASSERT_EQ(s.claim_hold_id(hashed_key(std::string("ghost")), "sku-1", number, owner), storage::claim_outcome::fresh);
  EXPECT_EQ(s.lookup_hold_sku("ghost", owner), store_status::ok);
  std::string problem;
  ASSERT_EQ(s.rebuild_hold_claims(problem), store_status::ok) << problem;
  EXPECT_EQ(s.lookup_hold_sku("ghost", owner), store_status::not_found);
  EXPECT_EQ(s.lookup_hold_sku("sku-2-h1", owner), store_status::ok);
  EXPECT_EQ(owner, "sku-2");
  EXPECT_EQ(s.lookup_hold_sku("after-h0", owner), store_status::ok);
}

TEST_F(group_storages, a_restart_starts_from_the_lmdb_snapshot_and_skips_what_it_has) {
  unsigned l = leader();
  for (int k = 0; k < 10; ++k) ASSERT_EQ(commit(l, {sku_batch("s" + std::to_string(k), 1 + k, 1)}), store_status::ok);
  ASSERT_EQ(commit(l, {sku_batch("s0", 50, 0)}), store_status::ok);  // a later value
  unsigned f = (l + 1) % 3;
  ASSERT_TRUE(wait_until([&] { return all_have({f}, "s0", 50); }, std::chrono::seconds(10)));
  // The follower writes its snapshot, stamped with the Raft index it covers, and stops.
  ASSERT_EQ(store(f).snapshot_now(), store_status::ok);
  auto covered = store(f).stats().snapshot_position;
  EXPECT_GE(covered, 11u);
  EXPECT_EQ(covered, store(f).applied_index());
  stop(f);
  ASSERT_EQ(commit(l, {sku_batch("s1", 70, 0)}), store_status::ok);  // while it is away
  start(f);
  EXPECT_EQ(store(f).applied_index(), covered);  // at open: the snapshot's position
  ASSERT_TRUE(wait_until([&] { return all_have({f}, "s1", 70); }, std::chrono::seconds(20)));
  auto stats = store(f).stats();
  EXPECT_GE(stats.entries_skipped, 11u) << "entries the snapshot had were applied again";
  EXPECT_GE(stats.entries_applied, 1u);
  EXPECT_EQ(stock_at(f, "s0"), 50);
  EXPECT_EQ(stock_at(f, "s9"), 10);
  std::string owner;
  EXPECT_EQ(store(f).lookup_hold_sku("s5-h0", owner), store_status::ok);

  // Its Raft log lost (a new one would start at entry 1) while its data has the entries up
  // to its snapshot: it refuses to rejoin as if it were new.
  ASSERT_EQ(store(f).snapshot_now(), store_status::ok);
  stop(f);
  std::filesystem::rename(path(f) + "/raft", path(f) + "/raft-lost");
  std::string error;
  EXPECT_FALSE(group_storage::open(options(f), connector(f), error));
  EXPECT_NE(error.find("lost entries it had accepted"), std::string::npos) << error;
}

// A replica's address changes only through the group: a cluster file that moved one is
// refused with why (the others would go on dialing the configured address).
TEST_F(group_storages, an_address_the_group_does_not_have_is_refused) {
  unsigned l = leader();
  unsigned f = (l + 1) % 3;
  stop(f);
  auto o = options(f);
  o.raft.voters[(f + 1) % 3].address = "127.0.0.1:1";
  std::string error;
  EXPECT_FALSE(group_storage::open(o, connector(f), error));
  EXPECT_NE(error.find("the group's configuration has replica"), std::string::npos) << error;
}

// Answers are released only by a commit of the same tenure after their stamp: a read with
// no write behind it gets an empty entry; an answer stamped in an earlier tenure, or still
// waiting when the replica closes, is refused.
TEST_F(group_storages, answers_are_released_by_a_later_commit_of_their_tenure_only) {
  unsigned l = leader();
  auto& g = *nodes_[l].group;
  auto tenure = nodes_[l].tenure.load();
  ASSERT_EQ(tenure % 2, 1u) << "a leading tenure is odd";
  std::atomic<int> released{0}, refused{0};
  auto count = [&](std::atomic<int>& c) { return [&c] { ++c; }; };
  // A read: nothing in flight behind it, so a barrier entry commits and releases it.
  auto applied_before = store(l).applied_index();
  g.after(g.stamp(tenure), count(released), count(refused));
  ASSERT_TRUE(wait_until([&] { return released == 1; }, std::chrono::seconds(5)));
  EXPECT_GT(store(l).applied_index(), applied_before) << "no entry was committed for it";
  // A write's own entry releases an answer stamped before it, with no barrier of its own.
  auto s = g.stamp(tenure);
  ASSERT_EQ(commit(l, {sku_batch("w", 1, 0)}), store_status::ok);
  auto applied = store(l).applied_index();
  g.after(s, count(released), count(refused));
  EXPECT_EQ(released, 2);
  EXPECT_EQ(store(l).applied_index(), applied);
  // Another tenure's stamp: refused at once.
  g.after(g.stamp(tenure + 2), count(released), count(refused));
  g.after(g.stamp(tenure - 1), count(released), count(refused));
  EXPECT_EQ(refused, 2);
  EXPECT_EQ(released, 2);

  // A commit of batches written in another tenure is not appended; one of this tenure is.
  std::vector<std::vector<mutation>> stale{sku_batch("stale", 1, 0)}, fresh{sku_batch("fresh", 1, 0)};
  std::vector<storage::commit_part> parts{{&stale[0], 1}};
  std::vector<store_status> statuses;
  EXPECT_EQ(store(l).commit(parts, statuses, tenure - 1 == 0 ? tenure + 2 : tenure - 1), store_status::not_leader);
  EXPECT_EQ(stock_at(l, "stale"), -1);
  parts = {{&fresh[0], 1}};
  EXPECT_EQ(store(l).commit(parts, statuses, tenure), store_status::ok);
  EXPECT_EQ(stock_at(l, "fresh"), 1);
}

// A directory is a replica's or a node's for its life: each refuses to open as the other.
TEST_F(group_storages, a_replica_directory_and_a_node_directory_do_not_mix) {
  unsigned l = leader();
  ASSERT_EQ(commit(l, {sku_batch("x", 1, 0)}), store_status::ok);
  stop(l);
  storage_options as_node;
  as_node.path = path(l);
  as_node.background = false;
  std::string error;
  EXPECT_FALSE(storage::open(as_node, error));
  EXPECT_NE(error.find("replica group's directory"), std::string::npos) << error;

  storage_options node;
  node.path = (dir_ / "single").string();
  node.background = false;
  ASSERT_TRUE(storage::open(node, error)) << error;
  node.replicated = true;
  EXPECT_FALSE(storage::open(node, error));
  EXPECT_NE(error.find("has a node log"), std::string::npos) << error;
}

// A replica that was away while the group moved past what its leader keeps of the log is
// sent the group's state (the leader's Raft snapshot is a reference to its LMDB; the state
// is read out of it when sent), installs it, and ends with the same records and the same active hold ids; then every
// replica restarts from logs cut behind their snapshots, and nothing is installed again.
TEST_F(group_storages_snapshotting, a_replica_the_log_left_behind_installs_the_groups_state) {
  unsigned l = leader();
  for (int k = 0; k < 10; ++k) ASSERT_EQ(commit(l, {sku_batch("early-" + std::to_string(k), 5 + k, 1)}), store_status::ok);
  unsigned f = (l + 1) % 3;
  ASSERT_TRUE(wait_until([&] { return all_have({f}, "early-9", 14); }, std::chrono::seconds(10)));
  stop(f);
  // 120 entries while it is away: the leader snapshots and cuts its log several times.
  for (int k = 0; k < 120; ++k)
    ASSERT_EQ(commit(l, {sku_batch("late-" + std::to_string(k), 100 + k, k % 3)}), store_status::ok);
  ASSERT_EQ(commit(l, {sku_batch("early-0", 77, 1)}), store_status::ok);  // a later value
  EXPECT_GE(counters(l).snapshots_taken, 2u);
  // The leader's LMDB moves past its latest Raft snapshot: the state it sends is ahead of
  // the snapshot, so the follower's data is ahead of its log until the entries arrive.
  for (int k = 0; k < 6; ++k) ASSERT_EQ(commit(l, {sku_batch("past-" + std::to_string(k), 3, 0)}), store_status::ok);
  nodes_[l].group->host().run([&](replica&) { ASSERT_EQ(store(l).snapshot_now(), store_status::ok); });

  start(f);
  ASSERT_TRUE(wait_until([&] { return all_have({f}, "early-0", 77); }, std::chrono::seconds(20)));
  EXPECT_GE(store(f).stats().states_installed, 1u) << "caught up from entries: the leader kept them";
  EXPECT_GE(counters(f).snapshots_restored, 1u);
  // Noted before it went in: a restart takes the data's position for what came whole, not
  // for entries its own log accepted (it was refused, "the log lost entries", for good).
  std::string installed;
  ASSERT_EQ(read_small_file(path(f) + "/installed", 64, installed), "");
  EXPECT_GE(std::stoull(installed), 130u);
  stop(f);
  start(f);
  ASSERT_TRUE(nodes_[f].group);
  // The same state: every record byte for byte, and the hold-id index rebuilt from it.
  ASSERT_TRUE(wait_until([&] { return records_of(f) == records_of(l); }, std::chrono::seconds(10)));
  std::string owner;
  EXPECT_EQ(store(f).lookup_hold_sku("late-38-h1", owner), store_status::ok);
  EXPECT_EQ(owner, "late-38");
  EXPECT_EQ(store(f).lookup_hold_sku("early-4-h0", owner), store_status::ok);
  EXPECT_EQ(stock_at(f, "late-119"), 100 + 119);

  // It serves as leader on that state when the others go.
  unsigned other = 3 - l - f;
  stop(l);
  stop(other);
  start(other);
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10)));
  unsigned next = static_cast<unsigned>(serving());
  ASSERT_EQ(commit(next, {sku_batch("after", 1, 1)}), store_status::ok);
  start(l);
  ASSERT_TRUE(wait_until([&] { return all_have({0, 1, 2}, "after", 1); }, std::chrono::seconds(20)));

  // Every replica restarts from a log cut behind its snapshots: LMDB is at least as far
  // as the snapshot libraft hands back, so nothing is installed, and nothing is lost.
  for (unsigned i = 0; i < 3; ++i) stop(i);
  for (unsigned i = 0; i < 3; ++i) start(i);
  unsigned again = leader();
  ASSERT_EQ(commit(again, {sku_batch("restarted", 2, 0)}), store_status::ok);
  ASSERT_TRUE(wait_until([&] { return all_have({0, 1, 2}, "restarted", 2); }, std::chrono::seconds(20)));
  for (unsigned i = 0; i < 3; ++i) {
    EXPECT_EQ(store(i).stats().states_installed, 0u) << i;
    EXPECT_EQ(stock_at(i, "early-0"), 77) << i;
    EXPECT_EQ(stock_at(i, "late-80"), 100 + 80) << i;
    EXPECT_EQ(stock_at(i, "after"), 1) << i;
  }
  ASSERT_TRUE(wait_until([&] { return records_of(0) == records_of(1) && records_of(1) == records_of(2); },
                         std::chrono::seconds(10)));
}

// A state that is not sound (damaged, cut short, another format) is refused and changes
// nothing; one at or below what the replica applied changes nothing either.
TEST_F(group_storages, a_damaged_state_is_refused_and_changes_nothing) {
  unsigned l = leader();
  for (int k = 0; k < 5; ++k) ASSERT_EQ(commit(l, {sku_batch("s" + std::to_string(k), 1 + k, 1)}), store_status::ok);
  std::string state;
  uint64_t index = 0;
  nodes_[l].group->host().run([&](replica&) {
    ASSERT_EQ(store(l).snapshot_now(), store_status::ok);
    ASSERT_EQ(store(l).read_state(state, index), store_status::ok);
  });
  ASSERT_GE(index, 5u);
  ASSERT_EQ(commit(l, {sku_batch("s9", 9, 0)}), store_status::ok);
  stop(l);
  // A plain storage stands in for a replica that is further behind.
  storage_options o;
  o.path = (dir_ / "behind").string();
  o.replicated = true;
  o.background = false;
  std::string error;
  auto behind = storage::open(o, error);
  ASSERT_TRUE(behind) << error;
  auto refused = [&](std::string bad) {
    std::string problem;
    EXPECT_EQ(behind->install_state(bad, problem), store_status::corrupt);
    EXPECT_FALSE(problem.empty());
    sku_record r;
    EXPECT_EQ(behind->read_sku("s1", r), store_status::not_found);
    EXPECT_EQ(behind->applied_index(), 0u);
  };
  std::string flipped = state;
  flipped[flipped.size() / 2] ^= 0x20;
  refused(flipped);
  // A Raft snapshot is a reference to LMDB's state: one this replica's data does not reach
  // (its LMDB lost or replaced by an older copy) is refused, as is a damaged one.
  refused(lmdb_env::state_reference(index));
  std::string bad_reference = lmdb_env::state_reference(0);
  bad_reference[9] ^= 1;
  refused(bad_reference);
  refused(state.substr(0, state.size() - 9));
  refused("HFSTATE1" + std::string("\xe8\x03", 2) + std::string(28, '\0'));  // entry 1000, no records
  refused("not a state at all");
  std::string problem;
  ASSERT_EQ(behind->install_state(state, problem), store_status::ok) << problem;
  EXPECT_EQ(behind->applied_index(), index);
  sku_record r;
  ASSERT_EQ(behind->read_sku("s4", r), store_status::ok);
  EXPECT_EQ(r.sku.on_hand, 5);
  EXPECT_EQ(behind->read_sku("s9", r), store_status::not_found);
  std::string owner;
  EXPECT_EQ(behind->lookup_hold_sku("s3-h0", owner), store_status::ok);
  EXPECT_EQ(owner, "s3");
  EXPECT_EQ(behind->stats().states_installed, 1u);
  // Once more, or an older one, or a reference it covers: nothing to do.
  ASSERT_EQ(behind->install_state(state, problem), store_status::ok) << problem;
  ASSERT_EQ(behind->install_state(lmdb_env::state_reference(index), problem), store_status::ok) << problem;
  EXPECT_EQ(behind->stats().states_installed, 1u);
}

// An empty entry (a leader's read barrier) changes nothing, so nothing is due: the
// background thread stays idle (it spun at full speed, and never saw its stop, once one was
// applied), and the storage closes. Alone in the process (no replicas electing meanwhile):
// the process's CPU time is the storage's.
TEST(replicated_storage, an_empty_entry_leaves_nothing_to_snapshot_and_the_storage_closes) {
  char dir[] = "/tmp/holdfast-idle-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  struct removed {
    std::string path;
    ~removed() { std::filesystem::remove_all(path); }
  } cleanup{dir};
  storage_options o;
  o.path = std::string(dir) + "/idle";
  o.replicated = true;
  o.background = true;
  o.snapshot_interval_ms = 1;
  std::string error;
  auto s = storage::open(o, error);
  ASSERT_TRUE(s) << error;
  ASSERT_TRUE(s->apply_committed(1, ""));
  ASSERT_TRUE(s->apply_committed(2, ""));
  // The thread's CPU time stays flat while it waits (the spin used a core).
  auto cpu_ms = [] {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1'000'000;
  };
  auto started = std::chrono::steady_clock::now();
  auto cpu_before = cpu_ms();
  ASSERT_FALSE(wait_until([&] { return cpu_ms() - cpu_before > 150; }, std::chrono::milliseconds(500)))
    << "the process burned CPU with nothing to do";
  EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(500));
  EXPECT_EQ(s->stats().snapshots, 0u);
  EXPECT_EQ(s->applied_index(), 2u);
  auto closing = std::async(std::launch::async, [&] { s.reset(); });
  ASSERT_EQ(closing.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "the storage did not close";
}

}  // namespace
}  // namespace holdfast::replication
