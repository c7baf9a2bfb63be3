// Group commit, recovery from the committed state, and a full map.
#include "test_support.hpp"

#include <set>

namespace holdfast::testing {
namespace {

class store_test : public node_fixture {};

TEST_F(store_test, writes_of_many_skus_share_one_commit) {
  start();
  std::vector<hold_op> batch;
  for (int i = 0; i < 50; ++i) {
    create("sku-" + std::to_string(i), 10);
    batch.push_back(reserve("sku-" + std::to_string(i), "h" + std::to_string(i), 1, 60'000));
  }
  auto before = stats();
  for (auto& r : ops(batch)) ASSERT_EQ(r.status, code::ok);
  auto after = stats();
  EXPECT_EQ(after.batches - before.batches, 50u);
  EXPECT_EQ(after.commits - before.commits, 1u) << "50 writers, one fsync";
  EXPECT_GE(after.largest_commit_batches, 50u);
}

TEST_F(store_test, recovery_restores_exactly_the_committed_state) {
  start();
  create("r", 100, 250);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(op(reserve("r", "h" + std::to_string(i), 2, 60'000)).status, code::ok);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(op(confirm("h" + std::to_string(i))).status, code::ok);
  for (int i = 5; i < 8; ++i) ASSERT_EQ(op(release("h" + std::to_string(i))).status, code::ok);
  auto expected = show("r");
  restart();
  auto s = show("r");
  EXPECT_EQ(s.on_hand, expected.on_hand);
  EXPECT_EQ(s.reserved, expected.reserved);
  EXPECT_EQ(s.sold, 10);
  EXPECT_EQ(s.active_holds, 12);
  EXPECT_EQ(op(query("h0")).hold.state, hold_state::confirmed);
  EXPECT_EQ(op(query("h6")).hold.state, hold_state::released);
  EXPECT_EQ(op(query("h19")).hold.state, hold_state::active);
}

TEST_F(store_test, holds_come_and_go_across_snapshots_and_replay_to_the_active_holds) {
  start();
  create("c", 1000);
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(op(reserve("c", "keep" + std::to_string(i), 1, 600'000)).status, code::ok);
  // 300 holds come and go while 5 stay; snapshots are taken along the way (every
  // config_.storage.snapshot_mutations changes), the last changes stay in the log.
  for (int i = 0; i < 300; ++i) {
    auto id = "tmp" + std::to_string(i);
    ASSERT_EQ(op(reserve("c", id, 1, 600'000)).status, code::ok);
    ASSERT_EQ(op(i % 2 ? confirm(id) : release(id)).status, code::ok);
  }
  auto st = stats();
  EXPECT_GE(st.snapshots, 2u);
  EXPECT_GT(st.log_position, st.snapshot_position) << "some changes only in the log";
  std::vector<hold_record> active;
  ASSERT_EQ(env_->read_active_holds("c", active), store_status::ok);
  EXPECT_EQ(active.size(), 5u);
  restart();
  auto s = show("c");
  EXPECT_EQ(s.active_holds, 5);
  EXPECT_EQ(s.reserved, 5);
  EXPECT_EQ(s.sold, 150);
  EXPECT_EQ(op(query("tmp1")).hold.state, hold_state::confirmed);
  EXPECT_EQ(op(query("tmp298")).hold.state, hold_state::released);
  EXPECT_EQ(op(query("keep3")).hold.state, hold_state::active);
  EXPECT_EQ(op(reserve("c", "keep3", 1, 600'000)).status, code::ok) << "idempotent after replay";
  EXPECT_EQ(show("c").active_holds, 5);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  auto report = env_->check();
  EXPECT_TRUE(report.problems.empty());
  EXPECT_EQ(report.active_holds, 5);
}

// A snapshot writes a hot SKU's changed holds as blocks of at most hold_block_max, and a
// checkpoint restates its active holds the same way: every hold replays, the latest state
// of each, through the log-only restart and `holdfast check`.
TEST_F(store_test, a_hot_skus_holds_span_several_blocks_and_replay_whole_through_a_checkpoint) {
  config_.storage.snapshot_mutations = 1'000'000;  // only the snapshots this test takes
  config_.storage.overlay_mutations_max = 1'000'000;
  start();
  create("hot", 100'000);
  auto in_batches = [&](int from, int to, auto make) {
    for (int i = from; i < to; i += 1000) {
      std::vector<hold_op> batch;
      for (int j = i; j < std::min(to, i + 1000); ++j) batch.push_back(make("h" + std::to_string(j)));
      for (auto& r : ops(batch)) ASSERT_EQ(r.status, code::ok) << r.message;
    }
  };
  // Every third hold names a user: blocks then differ in which texts they carry, which a
  // reused encoding buffer left dirty would garble.
  int made = 0;
  auto hold = [&](std::string id) {
    auto op = reserve("hot", std::move(id), 1, 600'000);
    if (made++ % 3 == 0) op.user = "buyer-" + std::to_string(made);
    return op;
  };
  auto let_go = [](std::string id) { return release(std::move(id), "hot"); };
  auto record = [&] {
    sku_record r;
    EXPECT_EQ(env_->read_sku("hot", r), store_status::ok);
    return r;
  };
  auto active_ids = [&] {
    std::vector<hold_record> active;
    EXPECT_EQ(env_->read_active_holds("hot", active), store_status::ok);
    std::set<std::string> ids;
    for (auto& h : active) ids.insert(h.hold.hold_id);
    EXPECT_EQ(ids.size(), active.size()) << "each hold once";
    return ids;
  };
  const int n = static_cast<int>(hold_block_max) * 2 + 904;  // 5000: three blocks
  in_batches(0, n, hold);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  EXPECT_EQ(record().log_block, 3u);
  EXPECT_EQ(active_ids().size(), static_cast<size_t>(n));
  // Half go; 3500 come and go: the blocks since the checkpoint then hold more than four
  // entries per active hold and 4096 besides, and the next snapshot restates the 2500
  // active holds in two blocks.
  in_batches(0, n / 2, let_go);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  in_batches(n, n + 3500, hold);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  in_batches(n, n + 3500, let_go);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  auto r = record();
  EXPECT_EQ(r.log_entries, static_cast<uint64_t>(n / 2)) << "a checkpoint restated the active holds";
  EXPECT_EQ(r.checkpoint_block + 1, r.log_block) << "in two blocks";
  std::set<std::string> expected;
  for (int i = n / 2; i < n; ++i) expected.insert("h" + std::to_string(i));
  EXPECT_EQ(active_ids(), expected);
  restart();
  auto s = show("hot");
  EXPECT_EQ(s.active_holds, n / 2);
  EXPECT_EQ(s.reserved, n / 2);
  EXPECT_EQ(op(query("h4999")).hold.state, hold_state::active);
  EXPECT_EQ(op(query("h0")).hold.state, hold_state::released);
  EXPECT_EQ(op(query("h" + std::to_string(n + 3499))).hold.state, hold_state::released);
  auto report = env_->check();
  EXPECT_TRUE(report.problems.empty());
  EXPECT_EQ(report.active_holds, n / 2);
}

// A restart reads the snapshot's active holds on a thread of its own, in chunks of 4096
// SKUs, while it scans the SKU records; the directory wakes SKUs from what that scan kept,
// overruled by the log. More SKUs with holds than one chunk, one changed only in the log
// (its holds ended), one that exists only in the log: every id indexed, every hold ends.
TEST_F(store_test, a_restart_indexes_every_held_id_and_wakes_every_sku_with_holds) {
  config_.storage.map_size_bytes = size_t{256} << 20;
  start();
  const int n = 4200;
  auto name = [](int i) { return "s-" + std::to_string(i); };
  for (int from = 0; from < n; from += 250) {
    std::vector<sku_op> creates;
    std::vector<hold_op> reserves;
    for (int i = from; i < std::min(n, from + 250); ++i) {
      creates.push_back({sku_op_kind::create, name(i), 5, 100, {}});
      reserves.push_back(reserve(name(i), "h-" + std::to_string(i), 1 + i % 3, 600'000));
    }
    for (auto& r : call<std::vector<sku_result>>(create_batch_atom_v, creates)) ASSERT_EQ(r.status, code::ok);
    for (auto& r : ops(reserves)) ASSERT_EQ(r.status, code::ok);
  }
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  ASSERT_EQ(op(release("h-0")).status, code::ok);  // s-0 holds nothing, said only by the log
  create("late", 5);
  ASSERT_EQ(op(reserve("late", "late-h", 2, 300'000)).status, code::ok);
  restart();
  for (int from = 0; from < n; from += 250) {
    std::vector<hold_op> taken;
    for (int i = from; i < std::min(n, from + 250); ++i)
      taken.push_back(reserve("late", "h-" + std::to_string(i), 1, 60'000));
    auto rs = ops(taken);
    for (size_t k = 0; k < rs.size(); ++k)
      ASSERT_EQ(rs[k].status, code::hold_conflict) << taken[k].hold_id << " is not indexed";
  }
  EXPECT_EQ(op(reserve("s-1", "late-h", 2, 300'000)).status, code::hold_conflict);
  EXPECT_EQ(show("s-0").reserved, 0);
  EXPECT_EQ(show("s-7").reserved, 2);
  advance_ms(600'001);
  // Read from storage, not asked of the SKU: asking would load it, and a load expires
  // what is overdue whether or not the SKU was woken.
  for (int i = 0; i < n; ++i) {
    sku_record r;
    ASSERT_EQ(env_->read_sku(name(i), r), store_status::ok);
    ASSERT_EQ(r.sku.active_holds, 0) << name(i) << " was never woken";
    ASSERT_EQ(r.sku.reserved, 0) << name(i);
  }
  sku_record late;
  ASSERT_EQ(env_->read_sku("late", late), store_status::ok);
  EXPECT_EQ(late.sku.active_holds, 0);
}

// The wake-ups kept by open's scan are overruled by the log's records: an SKU only in the
// log is woken, and one whose log brought its earliest deadline forward is woken then.
// Neither is touched after the restart (a load would expire its holds whether or not it
// was woken). Also when a snapshot lands before the directory asks: it carries the log's
// records off to LMDB (found by an adversarial pass: holds outlived their deadline).
class log_wakeups : public store_test, public ::testing::WithParamInterface<bool> {};

TEST_P(log_wakeups, skus_changed_in_the_log_are_woken_at_the_logs_deadlines) {
  start();
  create("in-snapshot", 5);
  ASSERT_EQ(op(reserve("in-snapshot", "a", 1, 600'000)).status, code::ok);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  create("in-log", 5);
  ASSERT_EQ(op(reserve("in-log", "b", 2, 300'000)).status, code::ok);
  ASSERT_EQ(op(reserve("in-snapshot", "c", 1, 200'000)).status, code::ok);
  stop();
  start();
  if (GetParam()) {
    ASSERT_EQ(env_->snapshot_now(), store_status::ok);  // before recover
  }
  ASSERT_GE(call<int64_t>(recover_atom_v), 0);
  advance_ms(200'001);
  sku_record r;
  ASSERT_EQ(env_->read_sku("in-snapshot", r), store_status::ok);
  EXPECT_EQ(r.sku.active_holds, 1) << "woken at the log's earlier deadline, not the snapshot's";
  advance_ms(100'000);
  ASSERT_EQ(env_->read_sku("in-log", r), store_status::ok);
  EXPECT_EQ(r.sku.active_holds, 0) << "never woken";
  advance_ms(300'000);
  ASSERT_EQ(env_->read_sku("in-snapshot", r), store_status::ok);
  EXPECT_EQ(r.sku.active_holds, 0);
}

INSTANTIATE_TEST_SUITE_P(snapshot_before_recover, log_wakeups, ::testing::Bool());

TEST_F(store_test, holds_are_found_by_id_in_the_log_and_in_the_snapshot) {
  start();
  create("k", 10);
  create("other", 10);
  ASSERT_EQ(op(reserve("k", "in-log", 1, 600'000)).status, code::ok);
  ASSERT_EQ(op(reserve("k", "in-snapshot", 1, 600'000)).status, code::ok);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  ASSERT_EQ(op(reserve("k", "in-log-2", 1, 600'000)).status, code::ok);
  EXPECT_EQ(op(confirm("in-snapshot")).status, code::ok) << "found by hold id alone";
  EXPECT_EQ(op(confirm("in-log-2")).status, code::ok);
  EXPECT_EQ(op(reserve("other", "in-log", 1, 600'000)).status, code::hold_conflict);
  EXPECT_EQ(op(reserve("other", "in-snapshot", 1, 600'000)).status, code::hold_conflict);
  restart();
  EXPECT_EQ(op(reserve("other", "in-log", 1, 600'000)).status, code::hold_conflict);
  EXPECT_EQ(op(query("in-log-2")).hold.state, hold_state::confirmed);
}

TEST_F(store_test, full_map_is_a_typed_error_and_reads_keep_working) {
  config_.storage.map_size_bytes = size_t{1} << 20;
  start();
  create("f", 1'000'000);
  auto granted = fill_until_full("f", 60'000);
  ASSERT_GE(granted, 0) << "the map never filled up";
  // Nothing half-applied: the SKU shows only what was acknowledged, and reads still work.
  auto s = show("f");
  EXPECT_EQ(s.reserved, granted);
  // The failed batch gave its ids' claims back (a batch is whole: the next round's first id).
  std::string owner;
  ASSERT_EQ(granted % 200, 0);
  EXPECT_EQ(env_->lookup_hold_sku(std::string(200, 'x') + std::to_string(granted / 200 * 1000), owner),
            store_status::not_found);
  // The SKU keeps serving: a small write may still fit where the big batch did not.
  auto more = op(reserve("f", "more", 1, 60'000));
  ASSERT_TRUE(more.status == code::ok || more.status == code::storage_full);
  granted += more.status == code::ok;
  EXPECT_EQ(show("f").reserved, granted);
  restart();
  EXPECT_EQ(show("f").reserved, granted);
}

// The store answers each batch itself (`done`, on its thread) in the writer's order: a
// batch that writes nothing shares the outcome of the commit it waited for, and a
// batch behind a failed one of its writer fails with it, in that commit and after.
TEST_F(store_test, each_batch_is_answered_once_and_later_batches_fail_with_a_failed_one) {
  start();
  auto writer = caf::actor_cast<store_listener>(sys_->spawn([]() -> caf::behavior {
    return {[](durable_atom, uint64_t) {}, [](write_failed_atom, uint64_t, uint64_t, store_status) {}};
  }));
  std::vector<std::pair<uint64_t, store_status>> answers;
  auto batch = [&](uint64_t epoch, uint64_t seq, std::string key) {
    write_batch b{epoch, seq, {}, {}};
    if (key != "-") {
      mutation m;
      m.kind = mutation::put_record;
      m.record = {record_space::buyer, std::move(key), "1", false};
      b.mutations.push_back(std::move(m));
    }
    b.done = [&answers, seq](const store_status* why) {
      answers.push_back({seq, why ? *why : store_status::ok});
    };
    caf::anon_send(store_, write_atom_v, writer, std::move(b));
  };
  batch(1, 1, "a");  // durable
  batch(1, 1, "-");  // writes nothing: waits for seq 1
  batch(1, 2, "");   // an empty key breaks the rules: rejected
  batch(1, 2, "-");  // behind the rejected one
  batch(1, 3, "b");  // built on the rejected one's state
  sched_->run();
  batch(1, 4, "c");  // a later commit, same epoch: refused without trying
  batch(2, 1, "d");  // the writer reloaded: a new epoch commits
  sched_->run();
  std::vector<std::pair<uint64_t, store_status>> expected{
    {1, store_status::ok},       {1, store_status::ok},       {2, store_status::rejected},
    {2, store_status::rejected}, {3, store_status::rejected}, {4, store_status::rejected},
    {1, store_status::ok}};
  EXPECT_EQ(answers, expected);
  std::string value;
  EXPECT_EQ(env_->read_record(record_space::buyer, "a", value), store_status::ok);
  EXPECT_EQ(env_->read_record(record_space::buyer, "b", value), store_status::not_found);
  EXPECT_EQ(env_->read_record(record_space::buyer, "d", value), store_status::ok);
  caf::anon_send_exit(writer, caf::exit_reason::kill);
}

// Replicated SKUs: once the fence says a new leadership tenure began, batches of earlier
// tenures (a killed directory's actors may have left some in the mailbox) fail with
// not_leader and write nothing; the new tenure's commit.
TEST_F(store_test, batches_of_an_earlier_tenure_fail_behind_the_fence) {
  store_config_.fence = std::make_shared<std::atomic<uint64_t>>(3);
  start();
  auto writer = caf::actor_cast<store_listener>(sys_->spawn([]() -> caf::behavior {
    return {[](durable_atom, uint64_t) {}, [](write_failed_atom, uint64_t, uint64_t, store_status) {}};
  }));
  std::vector<std::pair<std::string, store_status>> answers;
  auto send = [&](uint64_t tenure, std::string key, uint64_t epoch) {
    write_batch b{epoch, 1, {}, {}};
    b.tenure = tenure;
    mutation m;
    m.kind = mutation::put_record;
    m.record = {record_space::buyer, key, "1", false};
    b.mutations.push_back(std::move(m));
    b.done = [&answers, key](const store_status* why) { answers.push_back({key, why ? *why : store_status::ok}); };
    caf::anon_send(store_, write_atom_v, writer, std::move(b));
  };
  send(1, "stale", 1);
  sched_->run();
  send(3, "current", 2);  // the writer reloaded (a new epoch), in the current tenure
  sched_->run();
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0], std::make_pair(std::string("stale"), store_status::not_leader));
  EXPECT_EQ(answers[1], std::make_pair(std::string("current"), store_status::ok));
  std::string value;
  EXPECT_EQ(env_->read_record(record_space::buyer, "stale", value), store_status::not_found);
  EXPECT_EQ(env_->read_record(record_space::buyer, "current", value), store_status::ok);
  caf::anon_send_exit(writer, caf::exit_reason::kill);
}

// A batch that writes nothing waited only for its own writer's batches: a commit that
// fails for another writer's changes (here: a full map) is not its failure.
TEST_F(store_test, an_empty_batch_does_not_fail_with_another_writers_commit) {
  config_.storage.map_size_bytes = size_t{1} << 20;
  start();
  auto spawn_writer = [&] {
    return caf::actor_cast<store_listener>(sys_->spawn([]() -> caf::behavior {
      return {[](durable_atom, uint64_t) {}, [](write_failed_atom, uint64_t, uint64_t, store_status) {}};
    }));
  };
  std::vector<store_listener> writers;
  std::vector<std::pair<std::string, store_status>> answers;
  auto send = [&](size_t w, std::string name, uint64_t seq, std::string key) {
    write_batch b{1, seq, {}, {}};
    for (int r = 0; key != "-" && r < 16; ++r) {  // 1 MiB a batch: the map holds one
      mutation m;
      m.kind = mutation::put_record;
      m.record = {record_space::buyer, key + "/" + std::to_string(r), std::string(64 << 10, 'v'), false};
      b.mutations.push_back(std::move(m));
    }
    b.done = [&answers, name](const store_status* why) { answers.push_back({name, why ? *why : store_status::ok}); };
    caf::anon_send(store_, write_atom_v, writers.at(w), std::move(b));
  };
  writers.push_back(spawn_writer());  // 0: writes once, then only waits
  send(0, "quiet", 1, "q");
  sched_->run();
  ASSERT_EQ(answers.back().second, store_status::ok);
  // Fill the map: each batch from a fresh writer (a failed writer's later batches are
  // refused without trying).
  for (int i = 0; i < 200 && answers.back().second == store_status::ok; ++i) {
    writers.push_back(spawn_writer());
    send(writers.size() - 1, "filler", 1, "k" + std::to_string(i));
    sched_->run();
  }
  auto full = answers.back().second;
  ASSERT_TRUE(full == store_status::map_full || full == store_status::disk_full) << to_string(full);
  // One more commit, sure to fail: the quiet writer's empty batch rides in it.
  answers.clear();
  writers.push_back(spawn_writer());
  send(0, "quiet, nothing written", 1, "-");
  send(writers.size() - 1, "another writer", 1, "more");
  sched_->run();
  std::vector<std::pair<std::string, store_status>> expected{{"quiet, nothing written", store_status::ok},
                                                             {"another writer", full}};
  EXPECT_EQ(answers, expected);
  for (auto& w : writers) caf::anon_send_exit(w, caf::exit_reason::kill);
  sched_->run();
}

// Batch create: one group commit for the lot, no SKU actor per SKU; existing names
// answer sku_exists, invalid ones invalid, a name twice in one batch is created once.
TEST_F(store_test, a_batch_create_writes_every_new_sku_in_one_commit) {
  start();
  create("old", 7);
  std::vector<sku_op> ops;
  for (int i = 0; i < 500; ++i) ops.push_back({sku_op_kind::create, "cat-" + std::to_string(i), i, 100, {}});
  ops.push_back({sku_op_kind::create, "old", 1, 1, {}});
  ops.push_back({sku_op_kind::create, "", 1, 1, {}});
  ops.push_back({sku_op_kind::create, "cat-3", 99, 1, {}});
  ops.push_back({sku_op_kind::restock, "cat-4", 1, 0, {}});
  auto before = stats();
  auto spawns = call<directory_stats>(stats_atom_v).spawns;
  auto rs = call<std::vector<sku_result>>(create_batch_atom_v, ops);
  ASSERT_EQ(rs.size(), ops.size());
  for (int i = 0; i < 500; ++i) {
    ASSERT_EQ(rs[static_cast<size_t>(i)].status, code::ok) << i;
    EXPECT_EQ(rs[static_cast<size_t>(i)].sku.stocked, i);
  }
  EXPECT_EQ(rs[500].status, code::sku_exists);
  EXPECT_EQ(rs[500].sku.stocked, 7);
  EXPECT_EQ(rs[501].status, code::invalid);
  EXPECT_EQ(rs[502].status, code::unavailable) << "created earlier in this batch, not yet durable";
  EXPECT_EQ(rs[503].status, code::invalid) << "creates only";
  EXPECT_EQ(stats().commits - before.commits, 1u) << "one group commit";
  EXPECT_EQ(call<directory_stats>(stats_atom_v).spawns, spawns) << "no SKU actor started";
  EXPECT_EQ(show("cat-3").stocked, 3) << "the first create of the name stands";
  EXPECT_EQ(op(reserve("cat-42", "h", 2, 60'000)).status, code::ok);
  restart();
  EXPECT_EQ(show("cat-499").on_hand, 499);
  EXPECT_EQ(show("cat-42").reserved, 2);
  auto again = call<std::vector<sku_result>>(create_batch_atom_v, std::vector<sku_op>{ops[10]});
  EXPECT_EQ(again.at(0).status, code::sku_exists);
}


// The catalog read path: pages in name order over what the snapshot holds and what
// only the log (the overlay) holds, each SKU once, with its current counters.
TEST_F(store_test, the_catalog_pages_over_snapshot_and_log_each_sku_once) {
  start();
  std::vector<sku_op> ops;
  for (int i = 0; i < 300; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "cat-%03d", i);
    ops.push_back({sku_op_kind::create, name, 10, 100 + i, "Title " + std::to_string(i)});
  }
  std::vector<sku_op> first(ops.begin(), ops.begin() + 150), second(ops.begin() + 150, ops.end());
  for (auto& r : call<std::vector<sku_result>>(create_batch_atom_v, first)) ASSERT_EQ(r.status, code::ok);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);  // half in LMDB ...
  for (auto& r : call<std::vector<sku_result>>(create_batch_atom_v, second)) ASSERT_EQ(r.status, code::ok);
  create("other", 5);                                  // ... half in the log only
  ASSERT_EQ(op(reserve("cat-007", "h", 3, 60'000)).status, code::ok);  // newer than LMDB's record

  for (uint32_t limit : {1u, 37u, 300u, 1000u}) {
    std::vector<std::string> seen;
    sku_list_query q;
    q.prefix = "cat-";
    q.limit = limit;
    for (int pages = 0; pages < 400; ++pages) {
      auto page = call<sku_page>(list_skus_atom_v, q);
      ASSERT_EQ(page.partial, "");
      ASSERT_LE(page.skus.size(), limit);
      for (auto& s : page.skus) {
        seen.push_back(s.sku);
        if (s.sku == "cat-007") {
          EXPECT_EQ(s.reserved, 3);
          EXPECT_EQ(s.title, "Title 7");
          EXPECT_EQ(s.price_cents, 107);
        }
      }
      if (page.next.empty()) break;
      q.after = page.next;
    }
    ASSERT_EQ(seen.size(), 300u) << "limit " << limit;
    for (int i = 0; i < 300; ++i) EXPECT_EQ(seen[size_t(i)], ops[size_t(i)].sku);
  }
  sku_list_query all;
  all.after = "cat-298";
  auto tail = call<sku_page>(list_skus_atom_v, all);
  ASSERT_EQ(tail.skus.size(), 2u);
  EXPECT_EQ(tail.skus[1].sku, "other");
  EXPECT_EQ(tail.next, "");
  restart();
  sku_list_query q;
  q.prefix = "cat-00";
  auto page = call<sku_page>(list_skus_atom_v, q);
  ASSERT_EQ(page.skus.size(), 10u);
  EXPECT_EQ(page.skus[7].title, "Title 7") << "titles survive a restart";
  EXPECT_EQ(page.skus[7].reserved, 3);
}

TEST(sku_list_query, bad_queries_are_refused_with_a_reason) {
  sku_list_query q;
  EXPECT_EQ(validate(q), "");
  q.limit = sku_list_limit_max;
  EXPECT_EQ(validate(q), "");
  q.limit = sku_list_limit_max + 1;
  EXPECT_NE(validate(q).find("limit"), std::string::npos);
  q.limit = 0;
  q.prefix = "\xff\xfe";
  EXPECT_NE(validate(q).find("prefix is not valid UTF-8"), std::string::npos);
  q.prefix.clear();
  q.after = std::string(sku_bytes_max + 1, 'a');
  EXPECT_NE(validate(q).find("after longer than"), std::string::npos);
}


// Many concurrent checkouts by one user reach the SKU actor in one batch: exactly the
// limit is granted. The purchase counts survive a restart, from the log and from a
// snapshot, and `check` reads the buyer records.
TEST_F(store_test, a_per_user_limit_holds_under_a_burst_and_across_restarts) {
  start();
  ASSERT_EQ(call<sku_result>(sku_op_atom_v, sku_op{sku_op_kind::create, "flash", 1000, 500, "Flash", 2}).status,
            code::ok);
  std::vector<hold_op> burst;
  for (int i = 0; i < 50; ++i)
    burst.push_back(hold_op{hold_op_kind::reserve, "flash", "u-" + std::to_string(i), 1, 60'000, "ann"});
  int granted = 0, limited = 0;
  std::vector<std::string> held;
  for (auto& r : ops(burst)) {
    if (r.status == code::ok) {
      ++granted;
      held.push_back(r.hold.hold_id);
    }
    limited += r.status == code::limit_reached;
  }
  EXPECT_EQ(granted, 2);
  EXPECT_EQ(limited, 48);
  for (auto& id : held) ASSERT_EQ(op(confirm(id)).status, code::ok);
  restart();
  auto again = op(hold_op{hold_op_kind::reserve, "flash", "after-restart", 1, 60'000, "ann"});
  EXPECT_EQ(again.status, code::limit_reached) << again.message;
  EXPECT_EQ(op(hold_op{hold_op_kind::reserve, "flash", "bob-1", 2, 60'000, "bob"}).status, code::ok);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  restart();
  EXPECT_EQ(op(hold_op{hold_op_kind::reserve, "flash", "bob-2", 1, 60'000, "bob"}).status, code::limit_reached);
  EXPECT_EQ(op(hold_op{hold_op_kind::reserve, "flash", "ann-3", 1, 60'000, "ann"}).status, code::limit_reached);
  auto report = env_->check();
  EXPECT_TRUE(report.problems.empty()) << report.problems.front();
  EXPECT_EQ(report.records, 1);
}

}  // namespace
}  // namespace holdfast::testing
