// Group commit, recovery from the committed state, and a full map.
#include "test_support.hpp"

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
  // The SKU keeps serving: a small write may still fit where the big batch did not.
  auto more = op(reserve("f", "more", 1, 60'000));
  ASSERT_TRUE(more.status == code::ok || more.status == code::storage_full);
  granted += more.status == code::ok;
  EXPECT_EQ(show("f").reserved, granted);
  restart();
  EXPECT_EQ(show("f").reserved, granted);
}

// Batch create: one group commit for the lot, no SKU actor per SKU; existing names
// answer sku_exists, invalid ones invalid, a name twice in one batch is created once.
TEST_F(store_test, a_batch_create_writes_every_new_sku_in_one_commit) {
  start();
  create("old", 7);
  std::vector<sku_op> ops;
  for (int i = 0; i < 500; ++i) ops.push_back({sku_op_kind::create, "cat-" + std::to_string(i), i, 100});
  ops.push_back({sku_op_kind::create, "old", 1, 1});
  ops.push_back({sku_op_kind::create, "", 1, 1});
  ops.push_back({sku_op_kind::create, "cat-3", 99, 1});
  ops.push_back({sku_op_kind::restock, "cat-4", 1, 0});
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

}  // namespace
}  // namespace holdfast::testing
