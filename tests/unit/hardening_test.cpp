// Regression tests for the single-node defects of the hardening issue (#8), on the
// deterministic scheduler over a real LMDB environment. Each names the defect it pins.
#include "test_support.hpp"

#include <filesystem>
#include <fstream>

namespace holdfast::testing {
namespace {

class hardening_test : public node_fixture {
protected:
  void SetUp() override { start(); }
  // A writer refuses to start, saying `why`; `check` (a read-only open) goes on and
  // reports the SKU.
  void expect_refused_and_reported(const std::string& why, const std::string& sku) {
    std::string error;
    EXPECT_FALSE(storage::open(config_.storage, error));
    EXPECT_NE(error.find(why), std::string::npos) << error;
    auto read_only = config_.storage;
    read_only.read_only = true;
    auto env = storage::open(read_only, error);
    ASSERT_TRUE(env) << error;
    auto report = env->check();
    ASSERT_FALSE(report.problems.empty());
    EXPECT_NE(report.problems[0].find(sku), std::string::npos) << report.problems[0];
  }
};

// Defect 2: the longest names fit every key the store builds, on every path.
TEST_F(hardening_test, maximal_names_work_on_every_path_and_longer_ones_are_invalid) {
  const std::string sku_name(sku_bytes_max, 's');
  auto id = [](char c) { return std::string(hold_id_bytes_max, c); };
  create(sku_name, 10);
  ASSERT_EQ(op(reserve(sku_name, id('a'), 1, 60'000)).status, code::ok);
  ASSERT_EQ(op(reserve(sku_name, id('b'), 1, 60'000)).status, code::ok);
  ASSERT_EQ(op(reserve(sku_name, id('c'), 1, 500)).status, code::ok);
  EXPECT_EQ(op(confirm(id('a'))).hold.state, hold_state::confirmed);
  EXPECT_EQ(op(release(id('b'), sku_name)).hold.state, hold_state::released);
  advance_ms(1'000);  // the expiry timer ends the third
  EXPECT_EQ(op(query(id('c'))).hold.state, hold_state::expired);
  auto s = show(sku_name);
  EXPECT_EQ(s.reserved, 0);
  EXPECT_EQ(s.sold, 1);
  restart();
  EXPECT_EQ(op(query(id('a'))).hold.state, hold_state::confirmed);
  EXPECT_EQ(op(query(id('b'))).hold.state, hold_state::released);
  EXPECT_EQ(op(query(id('c'))).hold.state, hold_state::expired);
  EXPECT_EQ(show(sku_name).on_hand, 9);
  EXPECT_EQ(stats().failed_commits, 0u);
  EXPECT_EQ(stats().rejected_batches, 0u);
  // One byte more is refused at the edge, before anything is written.
  EXPECT_EQ(sku(sku_op_kind::create, sku_name + "x", 1).status, code::invalid);
  EXPECT_EQ(op(reserve(sku_name, id('d') + "d", 1, 60'000)).status, code::invalid);
}

// Defect 2: a batch that cannot be written fails alone; the others in its commit land.
TEST_F(hardening_test, one_bad_batch_never_fails_the_other_writers_in_its_commit) {
  auto batch_for = [](const std::string& name, const std::string& hold_id, int64_t reserved) {
    sku_record r;
    r.sku.sku = name;
    r.sku.on_hand = r.sku.stocked = 10;
    r.sku.reserved = reserved;
    r.sku.active_holds = reserved > 0;
    r.log_block = 1;
    std::vector<mutation> ms;
    if (reserved > 0) {
      hold_record h;
      h.hold = {hold_id, name, reserved, hold_state::active, 1};
      ms.push_back(mutation{mutation::put_hold, {}, h, {}});
    }
    ms.push_back(mutation{mutation::put_sku, r, {}, {}});
    return ms;
  };
  auto good = batch_for("good", "g1", 1);
  auto broken = batch_for("bad", "b1", 1);
  broken.back().sku.sku.reserved = 11;  // breaks reserved <= on_hand
  auto too_long = batch_for("long", std::string(600, 'k'), 1);  // a key LMDB cannot store
  auto later = batch_for("bad", "b2", 1);  // the bad writer's next batch builds on its state
  std::vector<store_status> status;
  auto result = env_->commit({{&broken, 1}, {&good, 2}, {&too_long, 3}, {&later, 1}}, status);
  ASSERT_EQ(result, store_status::ok);
  EXPECT_EQ(status[0], store_status::rejected);
  EXPECT_EQ(status[1], store_status::ok);
  EXPECT_EQ(status[2], store_status::rejected);
  EXPECT_EQ(status[3], store_status::rejected);
  sku_record r;
  EXPECT_EQ(env_->read_sku("good", r), store_status::ok);
  EXPECT_EQ(env_->read_sku("bad", r), store_status::not_found);
  EXPECT_EQ(env_->read_sku("long", r), store_status::not_found);
}

// Defect 3: two SKUs reserving one hold id at the same moment: exactly one wins, and
// the loser hears the real hold.
TEST_F(hardening_test, one_hold_id_is_granted_on_one_sku_only_and_the_conflict_shows_it) {
  create("a", 5);
  create("b", 5);
  // One directory batch: both sku actors run before either write is durable.
  auto rs = ops({reserve("a", "same", 2, 60'000), reserve("b", "same", 3, 60'000)});
  int granted = (rs[0].status == code::ok) + (rs[1].status == code::ok);
  EXPECT_EQ(granted, 1);
  auto& lost = rs[0].status == code::ok ? rs[1] : rs[0];
  auto& won = rs[0].status == code::ok ? rs[0] : rs[1];
  ASSERT_EQ(lost.status, code::hold_conflict);
  EXPECT_EQ(lost.hold.sku, won.hold.sku);
  EXPECT_EQ(lost.hold.qty, won.hold.qty);
  EXPECT_EQ(lost.hold.state, hold_state::active);
  EXPECT_EQ(lost.hold.deadline_ms, won.hold.deadline_ms);
  EXPECT_EQ(show("a").reserved + show("b").reserved, won.hold.qty);
  // And after a restart, from the durable index.
  restart();
  auto loser_sku = won.hold.sku == "a" ? "b" : "a";
  auto again = op(reserve(loser_sku, "same", 1, 60'000));
  EXPECT_EQ(again.status, code::hold_conflict);
  EXPECT_EQ(again.hold.qty, won.hold.qty);
  EXPECT_EQ(again.hold.sku, won.hold.sku);
  // A refused reserve gives its claim back: the id stays free for the next caller.
  create("empty", 0);
  EXPECT_EQ(op(reserve("empty", "free", 1, 60'000)).status, code::out_of_stock);
  std::string owner;
  EXPECT_EQ(env_->lookup_hold_sku("free", owner), store_status::not_found) << "a refused reserve kept its claim";
  EXPECT_EQ(op(reserve("a", "free", 1, 60'000)).status, code::ok);
  EXPECT_EQ(env_->lookup_hold_sku("free", owner), store_status::ok);
  EXPECT_EQ(owner, "a");
}

// Defect 4: retrying a reserve after the hold ended never answers success.
TEST_F(hardening_test, a_reserve_retried_after_its_hold_ended_says_how_it_ended) {
  create("t", 5);
  ASSERT_EQ(op(reserve("t", "exp", 1, 500)).status, code::ok);
  ASSERT_EQ(op(reserve("t", "sold", 1, 60'000)).status, code::ok);
  ASSERT_EQ(op(reserve("t", "back", 1, 60'000)).status, code::ok);
  ASSERT_EQ(op(confirm("sold")).status, code::ok);
  ASSERT_EQ(op(release("back")).status, code::ok);
  advance_ms(1'000);
  auto expired = op(reserve("t", "exp", 1, 500));
  EXPECT_EQ(expired.status, code::hold_expired);
  EXPECT_EQ(expired.hold.state, hold_state::expired);
  auto sold = op(reserve("t", "sold", 1, 60'000));
  EXPECT_EQ(sold.status, code::wrong_state);
  EXPECT_EQ(sold.hold.state, hold_state::confirmed);
  EXPECT_EQ(op(reserve("t", "back", 1, 60'000)).status, code::wrong_state);
  // Confirm with the wrong SKU: unknown there, and the answer says where the hold is.
  create("other", 1);
  ASSERT_EQ(op(reserve("t", "live", 1, 60'000)).status, code::ok);
  auto wrong = op(confirm("live", "other"));
  EXPECT_EQ(wrong.status, code::unknown_hold);
  EXPECT_NE(wrong.message.find("is on sku 't'"), std::string::npos) << wrong.message;
  EXPECT_EQ(op(release("live")).status, code::ok);
  restart();  // the same from LMDB
  EXPECT_EQ(op(reserve("t", "exp", 1, 500)).status, code::hold_expired);
  EXPECT_EQ(op(reserve("t", "sold", 1, 60'000)).status, code::wrong_state);
  EXPECT_EQ(show("t").reserved, 0);
}

// Defect 9: names that do not exist get an answer, not an actor.
TEST_F(hardening_test, unknown_skus_spawn_no_actor) {
  std::vector<hold_op> batch;
  for (int i = 0; i < 2'000; ++i) batch.push_back(reserve("ghost-" + std::to_string(i), "h", 1, 1'000));
  for (auto& r : ops(batch)) ASSERT_EQ(r.status, code::unknown_sku);
  EXPECT_EQ(sku(sku_op_kind::restock, "ghost", 1).status, code::unknown_sku);
  auto s = call<directory_stats>(stats_atom_v);
  EXPECT_EQ(s.spawns, 0);
  EXPECT_EQ(s.active_actors, 0);
}

// Defect 10: finished holds are collected after the idempotency window, with their
// index entries, and the id may be used again.
TEST_F(hardening_test, finished_holds_are_collected_after_the_retention_window) {
  stop();
  config_.storage.finished_hold_retention_ms = 10'000;
  store_config_.collect_interval_ms = 1'000;
  start();
  create("g", 100);
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(op(reserve("g", "h" + std::to_string(i), 1, 60'000)).status, code::ok);
    ASSERT_EQ(op(confirm("h" + std::to_string(i))).status, code::ok);
  }
  advance_ms(5'000);
  EXPECT_EQ(op(query("h7")).hold.state, hold_state::confirmed) << "inside the window";
  EXPECT_EQ(op(reserve("g", "h7", 1, 60'000)).status, code::wrong_state);
  advance_ms(7'000);
  EXPECT_EQ(stats().finished_collected, 50u);
  EXPECT_EQ(op(query("h7")).status, code::unknown_hold);
  check_report report = env_->check();
  EXPECT_EQ(report.finished_holds, 0);
  EXPECT_EQ(report.index_entries, 0);
  EXPECT_TRUE(report.problems.empty());
  create("other", 1);
  EXPECT_EQ(op(reserve("other", "h7", 1, 60'000)).status, code::ok) << "the id is free again";
  EXPECT_EQ(show("g").sold, 50);
}

// Defect 11: after a failed write the SKU refuses writes at once for a while instead
// of reloading its holds and asking the store on every call; reads keep working.
TEST_F(hardening_test, storage_failure_is_refused_cheaply_and_reads_keep_working) {
  stop();
  config_.storage.map_size_bytes = size_t{1} << 20;
  start();
  create("f", 1'000'000);
  ASSERT_GE(fill_until_full("f", 60'000), 0);
  std::string pad(200, 'x');
  auto before = stats();
  // Inside the backoff: refused without a trip to the store.
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(op(reserve("f", "again" + std::to_string(i), 1, 60'000)).status, code::storage_full);
  EXPECT_EQ(stats().batches + stats().failed_commits, before.batches + before.failed_commits);
  EXPECT_EQ(sku(sku_op_kind::query, "f").status, code::ok);
  EXPECT_EQ(op(query(pad + "0")).status, code::ok);
}

// Defect 13: a wall clock set back does not let a hold outlive now + ttl, across a
// restart and while running.
TEST_F(hardening_test, a_clock_set_back_never_extends_a_hold) {
  create("c", 5);
  create("untouched", 5);
  ASSERT_EQ(op(reserve("c", "h", 1, 30'000)).status, code::ok);
  ASSERT_EQ(op(reserve("untouched", "u", 1, 30'000)).status, code::ok);
  advance_ms(1'500);  // the store records the clock it has seen
  clock_->step_ms = -3'600'000;  // an hour back
  restart();
  // An SKU nobody asks about ends its hold by now + ttl too (found by the adversarial
  // pass: recovery woke it at the stored deadline, an hour late).
  advance_ms(31'000);
  sku_record untouched;
  ASSERT_EQ(env_->read_sku("untouched", untouched), store_status::ok);
  EXPECT_EQ(untouched.sku.reserved, 0);
  clock_->step_ms -= 31'000;  // the checks below measure from the restart
  auto h = op(query("h")).hold;
  EXPECT_LE(h.deadline_ms, clock_->now_ms() + 30'000);
  advance_ms(31'000);
  EXPECT_EQ(op(query("h")).hold.state, hold_state::expired);

  // While running: the actor notices the step at its next message.
  clock_->step_ms = 0;
  ASSERT_EQ(op(reserve("c", "live", 1, 30'000)).status, code::ok);
  clock_->step_ms = -3'600'000;
  EXPECT_LE(op(query("live")).hold.deadline_ms, clock_->now_ms() + 30'000);
  advance_ms(31'000);
  EXPECT_EQ(op(query("live")).hold.state, hold_state::expired);
  EXPECT_EQ(show("c").reserved, 0);
}

// Defect 5: records that fail their checks refuse the node's start, naming the SKU.
TEST_F(hardening_test, a_record_breaking_its_invariants_is_never_served) {
  create("tampered", 777'777);
  create("fine", 3);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);  // the records leave the log for LMDB
  // A fresh start (no SKU loaded), then the record is rewritten in place under the
  // running node with a valid checksum but on_hand 5,000,000.
  restart();
  sku_record honest;
  ASSERT_EQ(env_->read_sku("tampered", honest), store_status::ok);
  auto forged = honest;
  forged.sku.on_hand = 5'000'000;
  auto from = encode(honest), to = encode(forged);
  ASSERT_EQ(from.size(), to.size());
  ASSERT_GT(edit_every_copy(config_.storage.path + "/data.mdb", from,
                            [&](std::string& bytes, size_t at) { bytes.replace(at, to.size(), to); }),
            0u);
  // Loaded now, the SKU is not served, and says why; the others are.
  auto r = sku(sku_op_kind::query, "tampered");
  EXPECT_EQ(r.status, code::unavailable);
  EXPECT_NE(r.message.find("tampered"), std::string::npos);
  EXPECT_EQ(show("fine").on_hand, 3);
  stop();

  // A node refuses to start on it, naming the SKU and the broken rule (it could not
  // index that SKU's holds, so it could grant one of their ids twice).
  std::string error;
  EXPECT_FALSE(storage::open(config_.storage, error));
  EXPECT_NE(error.find("tampered"), std::string::npos) << error;
  EXPECT_NE(error.find("stocked"), std::string::npos) << error;
  // Read-only, as `holdfast check` opens it: every problem is listed.
  auto read_only = config_.storage;
  read_only.read_only = true;
  auto env = storage::open(read_only, error);
  ASSERT_TRUE(env) << error;
  std::string problem;
  EXPECT_EQ(env->scan_skus([](const sku_record&) {}, problem), store_status::corrupt);
  EXPECT_NE(problem.find("tampered"), std::string::npos) << problem;
  auto report = env->check();
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_NE(report.problems[0].find("tampered"), std::string::npos);
}


// A hold log that reads "ok" but holds fewer active holds than its SKU's record (blocks
// lost to damage) refuses a writer's start: the ids it lost would not be indexed, and
// another SKU could grant them again (found by an adversarial pass on the restart).
TEST_F(hardening_test, a_hold_log_short_of_its_records_holds_refuses_the_start) {
  create("short", 10);
  create("fine", 3);
  ASSERT_EQ(op(reserve("short", "kept", 2, 600'000)).status, code::ok);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  stop();
  // The record, rewritten with a valid checksum, claims one more hold than its log has.
  std::string error;
  sku_record honest;
  {
    auto env = storage::open(config_.storage, error);
    ASSERT_TRUE(env) << error;
    ASSERT_EQ(env->read_sku("short", honest), store_status::ok);
  }
  auto forged = honest;
  forged.sku.active_holds += 1;
  forged.sku.reserved += 1;
  auto from = encode(honest), to = encode(forged);
  ASSERT_EQ(from.size(), to.size());
  ASSERT_GT(edit_every_copy(config_.storage.path + "/data.mdb", from,
                            [&](std::string& bytes, size_t at) { bytes.replace(at, to.size(), to); }),
            0u);
  expect_refused_and_reported("'short': its record says 2 active holds, its hold log has 1", "short");
}

// A hold log whose block fails its checksum: the writer refuses to start, naming the SKU;
// `check` opens read-only, goes on and reports it.
TEST_F(hardening_test, an_unreadable_hold_log_refuses_the_start_and_check_reports_it) {
  create("damaged", 10);
  create("fine", 3);
  const std::string id = "a-hold-id-found-only-in-its-hold-log-block";
  ASSERT_EQ(op(reserve("damaged", id, 2, 600'000)).status, code::ok);
  ASSERT_EQ(op(reserve("fine", "other", 1, 600'000)).status, code::ok);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  stop();
  ASSERT_GT(edit_every_copy(config_.storage.path + "/data.mdb", id,
                            [&](std::string& bytes, size_t at) { bytes[at] = 'A'; }),
            0u);
  expect_refused_and_reported("'damaged': its active holds cannot be read", "damaged");
}

// Defect 9: the operations an SKU holds while its actor passivates are bounded.
TEST_F(hardening_test, an_sku_holds_a_bounded_number_of_operations_while_it_passivates) {
  stop();
  config_.directory.idle_ms = 1'000;
  config_.directory.idle_check_interval_ms = 500;
  config_.directory.deferred_max = 3;
  start();
  create("p", 100);
  auto* directory = dynamic_cast<caf::resumable*>(caf::actor_cast<caf::abstract_actor*>(directory_));
  auto only_directory = [directory](caf::resumable* job) { return job == directory; };
  // The idle check asks the actor to passivate; only the directory runs, so the actor
  // has not answered when the operations arrive.
  sched_->advance_time(std::chrono::milliseconds(1'500));
  sched_->run_jobs_filtered(only_directory);
  caf::scoped_actor self{*sys_};
  using handle = caf::response_handle<caf::blocking_actor,
                                      caf::detail::type_list<std::vector<hold_result>>, true>;
  std::vector<handle> calls;
  for (int i = 0; i < 5; ++i)
    calls.push_back(self->request(directory_, caf::infinite, hold_ops_atom_v,
                                  std::vector<hold_op>{reserve("p", "w" + std::to_string(i), 1, 60'000)}));
  sched_->run_jobs_filtered(only_directory);
  sched_->run();
  int granted = 0, refused = 0;
  for (auto& call : calls)
    call.receive(
      [&](std::vector<hold_result>& rs) {
        if (rs.at(0).status == code::ok) ++granted;
        else if (rs.at(0).status == code::unavailable) ++refused;
      },
      [&](caf::error& e) { ADD_FAILURE() << sys_->render(e); });
  EXPECT_EQ(granted, 3);
  EXPECT_EQ(refused, 2);
  EXPECT_EQ(show("p").reserved, 3);
}


// A finished hold whose record cannot be read is not a free id: retrying its reserve
// must not grant it again (found by the adversarial pass).
TEST_F(hardening_test, an_unreadable_finished_hold_is_never_granted_again) {
  create("fs", 5);
  ASSERT_EQ(op(reserve("fs", "fh1", 2, 60'000)).status, code::ok);
  ASSERT_EQ(op(confirm("fh1")).status, code::ok);
  hold_record finished;
  ASSERT_EQ(env_->read()->read_finished_hold("fs", "fh1", finished), store_status::ok);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);  // the records leave the log for LMDB
  stop();
  ASSERT_GT(edit_every_copy(config_.storage.path + "/data.mdb", encode(finished),
                            [](std::string& bytes, size_t at) { bytes[at + 8] ^= 0x40; }),
            0u);
  start();
  auto retry = op(reserve("fs", "fh1", 2, 60'000));
  EXPECT_EQ(retry.status, code::unavailable) << to_string(retry.status);
  EXPECT_NE(retry.message.find("fh1"), std::string::npos) << retry.message;
  EXPECT_EQ(op(confirm("fh1", "fs")).status, code::unavailable);
  auto s = show("fs");
  EXPECT_EQ(s.reserved, 0);
  EXPECT_EQ(s.sold, 2);
}


// Every hold ends even when storage filled up: overdue holds expire in batches that
// shrink after a failed write, so they fit where one big batch did not, and the SKU is
// never wedged behind one batch (found by the adversarial pass). Expiring writes the
// finished holds, so a map with no room at all needs room to finish: given a little
// more, everything ends.
TEST_F(hardening_test, holds_expire_after_the_map_filled_up) {
  stop();
  config_.storage.map_size_bytes = size_t{1} << 20;
  start();
  create("f", 1'000'000);
  auto granted = fill_until_full("f", 5'000, 500);
  ASSERT_GT(granted, 0);
  for (int i = 0; i < 30; ++i) advance_ms(1'000);
  auto stuck = show("f").reserved;
  EXPECT_LT(stuck, granted) << "no overdue hold expired in the room that was left";
  config_.storage.map_size_bytes = size_t{16} << 20;  // the operator gives it room
  restart();
  for (int i = 0; i < 30 && show("f").reserved > 0; ++i) advance_ms(1'000);
  EXPECT_EQ(show("f").reserved, 0) << "overdue holds never expired";
  EXPECT_EQ(op(reserve("f", "after", 1, 60'000)).status, code::ok);
}


// Entity records (buyers' counts today; carts, orders, payments next) ride the same log
// records: alone in a batch or beside an SKU's changes, replayed at recovery, written
// and deleted by snapshots. Batches that break the key rules fail alone.
TEST_F(hardening_test, entity_records_are_logged_snapshotted_deleted_and_recovered) {
  auto put = [](const std::string& key, const std::string& value, bool deleted = false) {
    mutation m;
    m.kind = mutation::put_record;
    m.record = {record_space::buyer, key, value, deleted};
    return m;
  };
  auto read = [&](const std::string& key) {
    std::string v;
    auto st = env_->read_record(record_space::buyer, key, v);
    return st == store_status::ok ? v : std::string("<") + to_string(st) + ">";
  };
  std::vector<mutation> alone = {put("k1", "one"), put("k2", "two")};
  std::vector<mutation> empty_key = {put("", "x")};
  std::vector<mutation> huge = {put(std::string(record_key_bytes_max + 1, 'k'), "x")};
  std::vector<mutation> hold_without_sku = {put("k3", "x"), mutation{mutation::put_hold, {}, {}, {}}};
  std::vector<mutation> nothing;
  std::vector<store_status> status;
  ASSERT_EQ(env_->commit({{&alone, 1}, {&empty_key, 2}, {&huge, 3}, {&hold_without_sku, 4}, {&nothing, 5}},
                         status),
            store_status::ok);
  EXPECT_EQ(status[0], store_status::ok);
  for (size_t i = 1; i < status.size(); ++i) EXPECT_EQ(status[i], store_status::rejected) << i;
  EXPECT_EQ(read("k1"), "one");
  EXPECT_EQ(read("k3"), "<not found>");
  restart();  // from the log
  EXPECT_EQ(read("k1"), "one");
  EXPECT_EQ(read("k2"), "two");
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  std::vector<mutation> change = {put("k1", "uno"), put("k2", "", true)};
  ASSERT_EQ(env_->commit({{&change, 1}}, status), store_status::ok);
  EXPECT_EQ(read("k1"), "uno");
  EXPECT_EQ(read("k2"), "<not found>") << "deleted in the overlay over LMDB's value";
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  EXPECT_EQ(read("k2"), "<not found>") << "and deleted from LMDB by the snapshot";
  restart();
  EXPECT_EQ(read("k1"), "uno");
  EXPECT_EQ(read("k2"), "<not found>");
  auto report = env_->check();
  EXPECT_TRUE(report.problems.empty());
  EXPECT_EQ(report.records, 1);
}

}  // namespace
}  // namespace holdfast::testing
