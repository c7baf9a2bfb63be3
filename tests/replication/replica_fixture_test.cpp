// Replica groups on libraft's deterministic in-process fixture (raft/fixture.h): a model
// inventory replicated by three or five replicas, its leader deciding reservations against
// a speculative book the way an SKU actor will, under leader kills, partitions that leave a
// stale leader, disk faults on a minority and snapshot installs. Checked against the model:
// every acknowledged reservation present exactly once on every replica, nothing oversold,
// no answer but "unknown" from a leader that lost its majority, replicas identical.
//
// What the fixture of Debian's libraft 0.22.1 cannot do, found here (both also in upstream's
// HEAD; to be reported):
// - Disk faults (raft_fixture_io_fault): the legacy layer's append callback assumes a write
//   fails only when closing (src/legacy.c, legacyPersistEntriesCb asserts it; Debian builds
//   without asserts). One failed append on a follower, with nothing else going on, ends in
//   a double free inside libraft (tried: 3 faults on one follower of 3, 20 reservations).
//   So a replica whose disk fails must stop; the tests kill it, and the process tests will
//   cut power to a minority (faultfs).
// - A suffix truncation after a snapshot install reads past its entries array (src/fixture.c,
//   ioMethodTruncate keeps `index - 1` entries, ignoring the start index the install set).
//   Snapshots are therefore installed here in a run with no leader change after them.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <sstream>

#include "replication/replica.hpp"
#include "tests/replication/fixture_c.h"
#include "tests/replication/inventory_model.hpp"

namespace holdfast::replication {
namespace {

enum class answer { pending, ok, out_of_stock, not_found, not_leader, unknown };

struct op {
  bool reserve = true;
  std::string id, sku;
  int qty = 1;
  unsigned replica = 0;  // where it was sent
  uint64_t invoked = 0, answered = 0;
  answer result = answer::pending;
};

class group_fixture {
public:
  group_fixture(unsigned n, std::map<std::string, int> stock, unsigned snapshot_threshold = 0)
    : f_(hf_fixture_new()) {
    if (f_ == nullptr) throw std::bad_alloc();
    for (unsigned i = 0; i < n; ++i) {
      machines_.push_back(std::make_unique<inventory_machine>(stock));
      replicas_.push_back(std::make_unique<replica>(*machines_.back()));
      raft* r = hf_fixture_grow(f_, replicas_.back()->fsm());
      if (r == nullptr) throw std::runtime_error("raft_fixture_grow failed");
      replicas_.back()->attach(r);
      if (snapshot_threshold > 0) hf_set_snapshot_policy(r, snapshot_threshold, snapshot_threshold / 4);
    }
    EXPECT_EQ(hf_fixture_bootstrap_and_start(f_), 0);
  }
  // The fixture's close fires what is pending into the replicas (they go after it), whose
  // callers' ops may be gone by then.
  ~group_fixture() {
    closing_ = true;
    hf_fixture_free(f_);
  }

  unsigned size() const { return static_cast<unsigned>(replicas_.size()); }
  replica& at(unsigned i) { return *replicas_[i]; }
  inventory_machine& machine(unsigned i) { return *machines_[i]; }
  hf_fixture* fixture() { return f_; }
  uint64_t now() { return hf_fixture_time(f_); }

  // The replica that serves, if any (more than one may believe it leads, in different terms:
  // the higher term's is the group's).
  int serving() {
    int best = -1;
    for (unsigned i = 0; i < size(); ++i)
      if (hf_fixture_alive(f_, i) && at(i).serving() &&
          (best < 0 || at(i).status().term > at(best).status().term))
        best = static_cast<int>(i);
    return best;
  }

  bool step_until(const std::function<bool()>& done, unsigned max_ms) {
    uint64_t until = now() + max_ms;
    while (!done()) {
      if (now() > until) return false;
      hf_fixture_step(f_);
    }
    return true;
  }

  // A client's call to replica `i`, decided there as an SKU actor will decide it.
  void call(op& o) {
    o.invoked = now();
    auto& m = machine(o.replica);
    auto& r = at(o.replica);
    if (!r.serving() || !m.deciding) {
      o.result = answer::not_leader;
      o.answered = now();
      return;
    }
    std::string command;
    answer if_committed;
    std::function<void()> decide;  // the book's change, once the engine took the entry
    if (o.reserve) {
      if (m.book.holds.count(o.id)) {
        command = "Q H " + o.id;  // a retry: the original answer
        if_committed = answer::ok;
      } else if (m.book.available(o.sku) < o.qty) {
        command = "Q O " + o.sku + ' ' + std::to_string(o.qty);
        if_committed = answer::out_of_stock;
      } else {
        decide = [&m, &o] {
          m.book.holds[o.id] = {o.sku, o.qty};
          m.book.reserved[o.sku] += o.qty;
        };
        command = "R " + o.id + ' ' + o.sku + ' ' + std::to_string(o.qty);
        if_committed = answer::ok;
      }
    } else {
      auto it = m.book.holds.find(o.id);
      if (it == m.book.holds.end()) {
        command = "Q F " + o.id;
        if_committed = answer::not_found;
      } else {
        decide = [&m, &o] {
          auto it = m.book.holds.find(o.id);
          m.book.reserved[it->second.sku] -= it->second.qty;
          m.book.holds.erase(it);
        };
        command = "X " + o.id;
        if_committed = answer::ok;
      }
    }
    op* target = &o;
    r.submit(command, [this, target, if_committed](outcome out) {
      if (closing_) return;
      target->answered = now();
      target->result = out == outcome::committed ? if_committed
                     : out == outcome::not_leader ? answer::not_leader
                                                  : answer::unknown;
    });
    // A refusal is answered before submit returns: then the book must not change.
    if (o.result == answer::pending && decide) decide();
  }

  // Steps until a replica serves: its index, or size() when none did within 10 s.
  unsigned elect() {
    step_until([&] { return serving() >= 0; }, 10'000);
    int l = serving();
    return l < 0 ? size() : unsigned(l);
  }

  // `count` reservations of one `sku` each, ids prefix0, prefix1, ..., sent to replica `to`.
  void reserve(std::vector<std::unique_ptr<op>>& ops, const std::string& prefix, int count,
               const std::string& sku, unsigned to, int steps_between = 0) {
    for (int i = 0; i < count; ++i) {
      ops.push_back(std::make_unique<op>(op{true, prefix + std::to_string(i), sku, 1, to}));
      call(*ops.back());
      for (int s = 0; s < steps_between; ++s) hf_fixture_step(f_);
    }
  }

  void heal() {
    for (unsigned i = 0; i < size(); ++i) {
      if (!hf_fixture_alive(f_, i)) hf_fixture_revive(f_, i);
      for (unsigned j = 0; j < size(); ++j)
        if (i != j) hf_fixture_reconnect(f_, i, j);
    }
  }

  // Every replica applied the same last entry, and a leader serves.
  bool converged() {
    int l = serving();
    if (l < 0) return false;
    auto target = at(l).status().commit_index;
    for (unsigned i = 0; i < size(); ++i)
      if (at(i).status().last_applied != target) return false;
    return true;
  }

private:
  hf_fixture* f_;
  bool closing_ = false;
  std::vector<std::unique_ptr<inventory_machine>> machines_;
  std::vector<std::unique_ptr<replica>> replicas_;
};

bool all_answered(const std::vector<std::unique_ptr<op>>& ops) {
  for (auto& o : ops)
    if (o->result == answer::pending) return false;
  return true;
}

// What every history must satisfy once the group has healed and converged.
// Returns how many acknowledged holds it checked.
int check_history(group_fixture& g, const std::vector<std::unique_ptr<op>>& ops,
                  const std::map<std::string, int>& stock) {
  int checked = 0;
  for (unsigned i = 0; i < g.size(); ++i)
    EXPECT_TRUE(g.machine(i).violations.empty())
      << "replica " << i << ": " << g.machine(i).violations.front();
  const inventory& final_state = g.machine(0).applied;
  for (unsigned i = 1; i < g.size(); ++i)
    EXPECT_EQ(g.machine(i).applied.encode(), final_state.encode()) << "replica " << i << " diverged";
  for (auto& [sku, n] : stock) {
    EXPECT_GE(final_state.available(sku), 0) << sku << " oversold";
    EXPECT_EQ(final_state.stock.at(sku), n);
  }
  // Per hold id (a released id is never reserved again in these workloads): an
  // acknowledged reserve is held unless a release of it may have happened; an acknowledged
  // release leaves nothing; an id no reserve could have granted is not held.
  std::map<std::string, std::vector<const op*>> by_id;
  for (auto& o : ops) by_id[o->id].push_back(o.get());
  for (auto& [id, list] : by_id) {
    bool acknowledged = false, released = false, unsure_release = false;
    for (const op* o : list) {
      if (o->reserve && o->result == answer::ok) acknowledged = true;
      if (!o->reserve && o->result == answer::ok) released = true;
      if (!o->reserve && o->result == answer::unknown) unsure_release = true;
    }
    bool held = final_state.holds.count(id) > 0;
    if (acknowledged && !released && !unsure_release) {
      EXPECT_TRUE(held) << "acknowledged hold " << id << " lost";
      ++checked;
    }
    if (released) {
      EXPECT_FALSE(held) << "released hold " << id << " still held";
    }
    bool any_reserve_may_have = false;
    for (const op* o : list)
      if (o->reserve && (o->result == answer::ok || o->result == answer::unknown ||
                         o->result == answer::pending))
        any_reserve_may_have = true;
    if (!any_reserve_may_have) {
      EXPECT_FALSE(held) << "hold " << id << " present, never granted";
    }
  }
  return checked;
}

TEST(replica_group, elects_serves_and_replicates_to_every_replica) {
  std::map<std::string, int> stock{{"tee", 3}};
  group_fixture g(3, stock);
  unsigned l = g.elect();
  ASSERT_LT(l, g.size()) << "no leader";
  std::vector<std::unique_ptr<op>> ops;
  g.reserve(ops, "h", 5, "tee", l);
  // A follower refuses with not_leader and names the leader.
  unsigned follower = (l + 1) % 3;
  op refused{true, "hx", "tee", 1, follower};
  g.call(refused);
  EXPECT_EQ(refused.result, answer::not_leader);
  EXPECT_TRUE(g.step_until([&] { return g.at(follower).status().leader_id == g.at(l).status().id; }, 1'000))
    << "the follower does not name the leader";

  ASSERT_TRUE(g.step_until([&] {
    return all_answered(ops) && g.converged();
  }, 10'000));
  EXPECT_EQ(ops[0]->result, answer::ok);
  EXPECT_EQ(ops[2]->result, answer::ok);
  EXPECT_EQ(ops[3]->result, answer::out_of_stock);
  EXPECT_EQ(ops[4]->result, answer::out_of_stock);
  for (unsigned i = 0; i < 3; ++i) EXPECT_EQ(g.machine(i).applied.holds.size(), 3u) << i;
  auto s = g.at(l).status();
  EXPECT_STREQ(s.state, "leader");
  ASSERT_EQ(s.followers.size(), 2u);
  for (auto& f : s.followers) EXPECT_EQ(f.lag, 0u);
  check_history(g, ops, stock);
}

// The leader decides a batch, then dies before it commits: the new leader serves only once
// whatever the group committed is applied; a retry with the same id gets the original
// answer, and stock is never granted twice.
TEST(replica_group, leader_killed_mid_batch_then_retries_get_one_answer) {
  std::map<std::string, int> stock{{"tee", 4}};
  group_fixture g(3, stock);
  unsigned l = g.elect();
  ASSERT_LT(unsigned(l), g.size()) << "no leader";
  std::vector<std::unique_ptr<op>> ops;
  g.reserve(ops, "h", 4, "tee", l);
  for (int s = 0; s < 3; ++s) hf_fixture_step(g.fixture());  // some of it may reach a follower
  hf_fixture_kill(g.fixture(), l);
  ASSERT_TRUE(g.step_until([&] { int n = g.serving(); return n >= 0 && unsigned(n) != l; }, 10'000));
  unsigned l2 = g.serving();
  // The dead leader's callers never heard: for them the outcome is unknown. Retry everything.
  for (auto& o : ops)
    if (o->result == answer::pending) o->result = answer::unknown;
  std::vector<std::unique_ptr<op>> retries;
  g.reserve(retries, "h", 6, "tee", l2);
  ASSERT_TRUE(g.step_until([&] {
    return all_answered(retries);
  }, 10'000));
  int granted = 0;
  for (auto& o : retries) {
    EXPECT_NE(o->result, answer::unknown);
    granted += o->result == answer::ok;
  }
  EXPECT_EQ(granted, 4) << "four units, six distinct ids: four holds exactly";
  g.heal();
  ASSERT_TRUE(g.step_until([&] { return g.converged(); }, 20'000));
  for (auto& o : retries) ops.push_back(std::move(o));
  check_history(g, ops, stock);
}

// A leader cut off from the majority keeps believing it leads for a while: nothing it is
// asked in that time may be answered as decided, and its undecided entries vanish on heal.
TEST(replica_group, partitioned_stale_leader_answers_nothing_as_decided) {
  std::map<std::string, int> stock{{"tee", 10}};
  group_fixture g(5, stock);
  unsigned old = g.elect();
  ASSERT_LT(unsigned(old), g.size()) << "no leader";
  for (unsigned j = 0; j < 5; ++j)
    if (j != old) hf_fixture_disconnect(g.fixture(), old, j);
  std::vector<std::unique_ptr<op>> stale;
  g.reserve(stale, "s", 3, "tee", old);
  ASSERT_TRUE(g.step_until([&] { int n = g.serving(); return n >= 0 && unsigned(n) != old; }, 10'000));
  unsigned fresh = g.serving();
  std::vector<std::unique_ptr<op>> ops;
  g.reserve(ops, "m", 10, "tee", fresh);
  ASSERT_TRUE(g.step_until([&] { return !g.at(old).serving(); }, 10'000)) << "stale leader never stepped down";
  g.heal();
  ASSERT_TRUE(g.step_until([&] {
    return all_answered(ops) && g.converged();
  }, 20'000));
  for (auto& o : stale) {
    EXPECT_TRUE(o->result == answer::unknown || o->result == answer::not_leader)
      << o->id << " answered as decided by a leader without a majority";
    EXPECT_EQ(g.machine(0).applied.holds.count(o->id), 0u);
  }
  for (auto& o : ops) EXPECT_EQ(o->result, answer::ok);
  for (auto& o : stale) ops.push_back(std::move(o));
  check_history(g, ops, stock);
}

// Seeded runs of a random workload under a random nemesis: leader kills and revivals,
// partitions of the leader, a follower whose disk fails (it stops).
class replica_group_nemesis : public ::testing::TestWithParam<unsigned> {};

TEST_P(replica_group_nemesis, every_acknowledged_reservation_survives_nothing_oversold) {
  const unsigned seed = GetParam();
  std::mt19937 rng(seed);
  std::map<std::string, int> stock{{"a", 200}, {"b", 5}, {"c", 400}};  // b sells out
  std::vector<std::string> skus{"a", "b", "c"};
  const unsigned n = seed % 2 == 0 ? 3 : 5;
  group_fixture g(n, stock, /*snapshot_threshold=*/1'000'000'000);  // see the file's head
  std::vector<std::unique_ptr<op>> ops;
  std::vector<std::string> granted_ids;
  std::set<std::string> released_ids, granted_set;
  size_t scanned = 0;
  unsigned next_id = 0;
  int killed = -1;
  bool partitioned = false;
  int partitioned_node = -1;

  for (int round = 0; round < 400; ++round) {
    // Clients: a few calls to whoever they believe leads (or anyone, half the time).
    for (int c = 0; c < 3; ++c) {
      auto o = std::make_unique<op>();
      int leader = g.serving();
      o->replica = leader >= 0 && rng() % 2 ? unsigned(leader) : rng() % n;
      o->sku = skus[rng() % skus.size()];
      o->qty = 1 + rng() % 3;
      if (!granted_ids.empty() && rng() % 4 == 0) {
        o->reserve = false;
        o->id = granted_ids[rng() % granted_ids.size()];
        if (!released_ids.insert(o->id).second) o->id = "never" + std::to_string(next_id++);
      } else if (!ops.empty() && rng() % 8 == 0) {
        o->id = ops[rng() % ops.size()]->id;  // a retry of some earlier id, never a released one
        o->reserve = true;
        if (released_ids.count(o->id)) o->id = "h" + std::to_string(next_id++);
      } else {
        o->id = "h" + std::to_string(next_id++);
      }
      g.call(*o);
      ops.push_back(std::move(o));
    }
    // Nemesis.
    unsigned dice = rng() % 100;
    int leader = g.serving();
    if (dice < 4 && killed < 0 && leader >= 0) {
      killed = leader;
      hf_fixture_kill(g.fixture(), leader);
    } else if (dice < 10 && killed >= 0) {
      hf_fixture_revive(g.fixture(), killed);
      killed = -1;
    } else if (dice < 13 && !partitioned && leader >= 0 && killed < 0) {
      partitioned = true;
      partitioned_node = leader;
      for (unsigned j = 0; j < n; ++j)
        if (int(j) != leader) hf_fixture_disconnect(g.fixture(), leader, j);
    } else if (dice < 18 && partitioned) {
      for (unsigned j = 0; j < n; ++j)
        if (int(j) != partitioned_node) hf_fixture_reconnect(g.fixture(), partitioned_node, j);
      partitioned = false;
    } else if (dice < 20 && killed < 0) {
      // A disk that fails on a replica: libraft 0.22 cannot carry on past a failed append
      // (see the file's head), so a replica whose disk fails stops, as a node will.
      unsigned victim = rng() % n;
      if (int(victim) != leader) {
        killed = int(victim);
        hf_fixture_kill(g.fixture(), victim);
      }
    }
    // Time passes.
    unsigned steps = 5 + rng() % 40;
    for (unsigned s = 0; s < steps; ++s) hf_fixture_step(g.fixture());
    for (; scanned < ops.size(); ++scanned)  // answers arrive late; ids granted once each
      if (ops[scanned]->reserve && ops[scanned]->result != answer::pending) {
        if (ops[scanned]->result == answer::ok && granted_set.insert(ops[scanned]->id).second)
          granted_ids.push_back(ops[scanned]->id);
      } else if (ops[scanned]->result == answer::pending) {
        break;
      }
  }
  g.heal();
  ASSERT_TRUE(g.step_until([&] { return all_answered(ops) && g.converged(); }, 60'000)) << "seed " << seed;
  int checked = check_history(g, ops, stock);

  uint64_t committed = 0, unknown = 0, terms = 0;
  for (unsigned i = 0; i < n; ++i) {
    committed += g.at(i).counters().committed;
    unknown += g.at(i).counters().outcome_unknown;
    terms += g.at(i).counters().terms_led;
  }
  EXPECT_GT(checked, 30) << "few acknowledged holds: the run would prove little";
  EXPECT_GT(terms, 1u) << "leadership never changed hands";
  RecordProperty("committed", int(committed));
  RecordProperty("acknowledged_holds_checked", checked);
  RecordProperty("outcome_unknown", int(unknown));
  RecordProperty("terms_led", int(terms));
}

INSTANTIATE_TEST_SUITE_P(seeds, replica_group_nemesis, ::testing::Range(1u, 13u));

// A replica that missed more than the trailing entries is sent a snapshot, restores it,
// and ends identical.
TEST(replica_group, lagging_replica_is_sent_a_snapshot) {
  std::map<std::string, int> stock{{"tee", 1000}};
  group_fixture g(3, stock, /*snapshot_threshold=*/16);
  unsigned l = g.elect();
  ASSERT_LT(unsigned(l), g.size()) << "no leader";
  unsigned lagging = (l + 1) % 3;
  hf_fixture_kill(g.fixture(), lagging);
  std::vector<std::unique_ptr<op>> ops;
  g.reserve(ops, "h", 100, "tee", l, 4);
  ASSERT_TRUE(g.step_until([&] {
    return all_answered(ops);
  }, 20'000));
  hf_fixture_revive(g.fixture(), lagging);
  ASSERT_TRUE(g.step_until([&] { return g.converged(); }, 30'000));
  EXPECT_GE(g.at(lagging).counters().snapshots_restored, 1u);
  EXPECT_EQ(g.machine(lagging).applied.holds.size(), 100u);
  check_history(g, ops, stock);
}

}  // namespace
}  // namespace holdfast::replication

