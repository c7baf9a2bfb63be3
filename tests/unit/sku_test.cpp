// SKU semantics through the directory, on the deterministic scheduler.
#include "test_support.hpp"

#include "protocol/assert.hpp"

namespace holdfast::testing {
namespace {

class sku_test : public node_fixture {
protected:
  void SetUp() override { start(); }
  void passivate_after_one_second() {
    stop();
    config_.directory.idle_ms = 1'000;
    config_.directory.idle_check_interval_ms = 500;
    start();
  }
};

TEST_F(sku_test, create_query_restock_adjust) {
  create("tee", 10, 1999);
  auto s = show("tee");
  EXPECT_EQ(s.on_hand, 10);
  EXPECT_EQ(s.price_cents, 1999);
  EXPECT_EQ(sku(sku_op_kind::create, "tee", 5, 1).status, code::sku_exists);
  EXPECT_EQ(sku(sku_op_kind::restock, "tee", 5).sku.on_hand, 15);
  ASSERT_EQ(op(reserve("tee", "h1", 4, 60'000)).status, code::ok);
  EXPECT_EQ(sku(sku_op_kind::adjust, "tee", 3).status, code::insufficient);
  EXPECT_EQ(sku(sku_op_kind::adjust, "tee", 4).sku.on_hand, 4);
  EXPECT_EQ(sku(sku_op_kind::query, "nope").status, code::unknown_sku);
  EXPECT_EQ(sku(sku_op_kind::restock, "nope", 1).status, code::unknown_sku);
}

TEST_F(sku_test, last_unit_sells_once_among_500_buyers) {
  create("hot", 100);
  std::vector<hold_op> batch;
  for (int i = 0; i < 500; ++i) batch.push_back(reserve("hot", "b" + std::to_string(i), 1, 60'000));
  auto results = ops(batch);
  int granted = 0, refused = 0;
  for (auto& r : results) (r.status == code::ok ? granted : refused) += 1;
  EXPECT_EQ(granted, 100);
  EXPECT_EQ(refused, 400);
  EXPECT_EQ(show("hot").reserved, 100);
  EXPECT_EQ(op(reserve("hot", "late", 1, 60'000)).status, code::out_of_stock);
}

TEST_F(sku_test, reserve_is_idempotent_by_hold_id) {
  create("a", 5);
  create("b", 5);
  auto first = op(reserve("a", "h", 2, 10'000));
  ASSERT_EQ(first.status, code::ok);
  auto again = op(reserve("a", "h", 2, 10'000));
  EXPECT_EQ(again.status, code::ok);
  EXPECT_EQ(again.hold.deadline_ms, first.hold.deadline_ms);
  EXPECT_EQ(show("a").reserved, 2);
  EXPECT_EQ(op(reserve("a", "h", 3, 10'000)).status, code::hold_conflict);
  EXPECT_EQ(op(reserve("a", "h", 2, 20'000)).status, code::hold_conflict);
  // The same id on another SKU is someone else's hold.
  auto other = op(reserve("b", "h", 2, 10'000));
  EXPECT_EQ(other.status, code::hold_conflict);
  EXPECT_EQ(other.hold.sku, "a");
  EXPECT_EQ(show("b").reserved, 0);
}

TEST_F(sku_test, confirm_and_release_answer_final_states) {
  create("s", 10);
  ASSERT_EQ(op(reserve("s", "c", 3, 10'000)).status, code::ok);
  ASSERT_EQ(op(reserve("s", "r", 2, 10'000)).status, code::ok);
  auto c = op(confirm("c"));  // no sku: the node looks the hold up
  ASSERT_EQ(c.status, code::ok);
  EXPECT_EQ(c.hold.state, hold_state::confirmed);
  EXPECT_EQ(op(confirm("c")).status, code::ok);
  EXPECT_EQ(op(release("c")).status, code::wrong_state);
  EXPECT_EQ(op(release("r", "s")).hold.state, hold_state::released);
  EXPECT_EQ(op(release("r")).status, code::ok);
  EXPECT_EQ(op(confirm("r")).status, code::wrong_state);
  EXPECT_EQ(op(confirm("ghost")).status, code::unknown_hold);
  auto s = show("s");
  EXPECT_EQ(s.on_hand, 7);
  EXPECT_EQ(s.sold, 3);
  EXPECT_EQ(s.reserved, 0);
  // A reserve repeated after its hold ended still answers the first hold, not a new one.
  EXPECT_EQ(op(reserve("s", "c", 3, 10'000)).hold.state, hold_state::confirmed);
  EXPECT_EQ(show("s").reserved, 0);
}

TEST_F(sku_test, holds_expire_in_deadline_order_with_subsecond_ttls) {
  create("e", 10);
  ASSERT_EQ(op(reserve("e", "late", 1, 900)).status, code::ok);
  ASSERT_EQ(op(reserve("e", "early", 2, 250)).status, code::ok);
  ASSERT_EQ(op(reserve("e", "mid", 3, 500)).status, code::ok);
  EXPECT_EQ(show("e").reserved, 6);
  advance_ms(249);
  EXPECT_EQ(show("e").reserved, 6);
  advance_ms(1);
  EXPECT_EQ(show("e").reserved, 4);
  EXPECT_EQ(op(query("early")).hold.state, hold_state::expired);
  advance_ms(250);
  EXPECT_EQ(show("e").reserved, 1);
  EXPECT_EQ(op(query("late")).hold.state, hold_state::active);
  advance_ms(400);
  EXPECT_EQ(show("e").reserved, 0);
  EXPECT_EQ(op(confirm("mid")).status, code::hold_expired);
  EXPECT_EQ(op(release("mid")).hold.state, hold_state::expired);
  EXPECT_EQ(show("e").on_hand, 10);
}

TEST_F(sku_test, bad_input_is_invalid_and_changes_nothing) {
  create("x", 5);
  ASSERT_EQ(op(reserve("x", "ok", 1, 1000)).status, code::ok);
  auto before = show("x");
  EXPECT_EQ(op(reserve("x", "q0", 0, 1000)).status, code::invalid);
  EXPECT_EQ(op(reserve("x", "qn", -3, 1000)).status, code::invalid);
  EXPECT_EQ(op(reserve("x", "t0", 1, 0)).status, code::invalid);
  EXPECT_EQ(op(reserve("x", "tbig", 1, int64_t{1} << 50)).status, code::invalid);
  EXPECT_EQ(op(reserve("", "h", 1, 1000)).status, code::invalid);
  EXPECT_EQ(op(reserve("x", "", 1, 1000)).status, code::invalid);
  EXPECT_EQ(op(reserve("x y", "h", 1, 1000)).status, code::invalid);
  EXPECT_EQ(op(reserve("nope", "h", 1, 1000)).status, code::unknown_sku);
  EXPECT_EQ(sku(sku_op_kind::create, "neg", -1, 5).status, code::invalid);
  EXPECT_EQ(sku(sku_op_kind::restock, "x", 0).status, code::invalid);
  std::vector<hold_op> huge(5000, reserve("x", "h", 1, 1000));
  for (auto& r : ops(huge)) EXPECT_EQ(r.status, code::invalid);
  auto after = show("x");
  EXPECT_EQ(after.reserved, before.reserved);
  EXPECT_EQ(after.on_hand, before.on_hand);
  EXPECT_EQ(after.active_holds, before.active_holds);
}

TEST_F(sku_test, idle_actors_passivate_and_wake_for_their_deadlines) {
  passivate_after_one_second();
  create("p", 3);
  ASSERT_EQ(op(reserve("p", "h", 2, 5'000)).status, code::ok);
  advance_ms(2'000);
  auto st = call<directory_stats>(stats_atom_v);
  EXPECT_EQ(st.active_actors, 0);
  EXPECT_EQ(st.scheduled_wakeups, 1);
  advance_ms(3'100);  // past the deadline: the directory wakes the SKU, which expires it
  EXPECT_GE(call<directory_stats>(stats_atom_v).spawns, 2);
  EXPECT_EQ(op(query("h")).hold.state, hold_state::expired);
  EXPECT_EQ(show("p").reserved, 0);
}

// A pending CAF timer keeps its actor's memory, so a passivated SKU with an hour-long
// hold must not leave an hour-long timer behind: only the directory's wakeup is that far.
TEST_F(sku_test, a_passivated_actor_leaves_no_far_timer_behind) {
  passivate_after_one_second();
  create("far", 3);
  ASSERT_EQ(op(reserve("far", "h", 1, 3'600'000)).status, code::ok);
  advance_ms(2'000);
  ASSERT_EQ(call<directory_stats>(stats_atom_v).active_actors, 0);
  auto& clock = dynamic_cast<caf::detail::test_actor_clock&>(sched_->clock());
  auto horizon = clock.now() + std::chrono::milliseconds(config_.directory.idle_ms +
                                                         config_.directory.idle_check_interval_ms);
  size_t far = 0;
  for (auto& [due, event] : clock.schedule()) far += due > horizon ? 1 : 0;
  EXPECT_EQ(far, 1u);  // the directory's wakeup at the deadline
  advance_ms(3'600'000);
  EXPECT_EQ(op(query("h")).hold.state, hold_state::expired);
}

TEST_F(sku_test, crash_keeps_acknowledged_state_and_ends_overdue_holds) {
  create("d", 10);
  ASSERT_EQ(op(reserve("d", "sold", 4, 60'000)).status, code::ok);
  ASSERT_EQ(op(confirm("sold")).status, code::ok);
  ASSERT_EQ(op(reserve("d", "short", 1, 1'000)).status, code::ok);
  ASSERT_EQ(op(reserve("d", "long", 2, 60'000)).status, code::ok);
  stop();
  sched_->advance_time(std::chrono::milliseconds(5'000));  // the node is down meanwhile
  start();
  EXPECT_EQ(call<int64_t>(recover_atom_v), 1);
  auto s = show("d");
  EXPECT_EQ(s.on_hand, 6);
  EXPECT_EQ(s.sold, 4);
  EXPECT_EQ(s.reserved, 2);
  EXPECT_EQ(op(query("short")).hold.state, hold_state::expired);
  EXPECT_EQ(op(query("long")).hold.state, hold_state::active);
  EXPECT_EQ(op(query("sold")).hold.state, hold_state::confirmed);
  advance_ms(55'001);
  EXPECT_EQ(show("d").reserved, 0);
}

// An assertion that fails in an SKU's actor (HF_ASSERT) stops that actor, not the node:
// its change is never written, its callers hear unavailable, its claims go, and the next
// call finds the SKU reloaded from what was durable.
TEST_F(sku_test, a_failed_assertion_stops_the_sku_actor_and_writes_nothing) {
  create("a", 1);
  create("b", 5);
  ASSERT_EQ(op(reserve("a", "kept", 1, 60'000)).status, code::ok);
  ASSERT_EQ(op(release("kept")).status, code::ok);
  arm_fault(fault_point::sku_book_miscount);  // the reserve counts 2 units for 1
  auto broke = op(reserve("a", "h1", 1, 60'000));
  arm_fault(fault_point::sku_book_miscount, false);
  EXPECT_EQ(broke.status, code::unavailable) << broke.message;
  // The node keeps serving, this SKU too: its actor starts again from disk.
  EXPECT_EQ(op(reserve("b", "other", 2, 60'000)).status, code::ok);
  auto a = show("a");
  EXPECT_EQ(a.reserved, 0);
  EXPECT_EQ(a.active_holds, 0);
  // The id's claim went with the change that was never written.
  EXPECT_EQ(op(reserve("a", "h1", 1, 60'000)).status, code::ok);
  EXPECT_EQ(show("a").reserved, 1);
  stop();
  start();
  EXPECT_EQ(show("a").reserved, 1);
  EXPECT_EQ(op(query("h1")).hold.state, hold_state::active);
}

// Random operation sequences against a model; the invariants after every step.
TEST_F(sku_test, random_operations_keep_invariants_and_match_model) {
  const uint64_t seed = 20261121;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  create("r", 20);
  struct model_hold {
    int64_t qty;
    int64_t deadline;
    hold_state state;
  };
  std::map<std::string, model_hold> model;
  int64_t on_hand = 20, reserved = 0, sold = 0, stocked = 20;
  auto expire = [&] {
    for (auto& [id, h] : model)
      if (h.state == hold_state::active && h.deadline <= clock_->now_ms()) {
        h.state = hold_state::expired;
        reserved -= h.qty;
      }
  };
  for (int step = 0; step < 400; ++step) {
    auto id = "h" + std::to_string(rng() % 60);
    switch (rng() % 6) {
      case 0:
      case 1: {
        int64_t qty = 1 + rng() % 4, ttl = 50 + rng() % 400;
        auto r = op(reserve("r", id, qty, ttl));
        expire();
        auto it = model.find(id);
        if (it == model.end() && on_hand - reserved >= qty) {
          ASSERT_EQ(r.status, code::ok);
          model[id] = {qty, r.hold.deadline_ms, hold_state::active};
          reserved += qty;
        } else if (it == model.end()) {
          ASSERT_EQ(r.status, code::out_of_stock);
        } else {
          ASSERT_TRUE(r.status == code::ok || r.status == code::hold_conflict);
        }
        break;
      }
      case 2: {
        auto r = op(confirm(id, "r"));
        expire();
        auto it = model.find(id);
        if (it == model.end()) {
          ASSERT_EQ(r.status, code::unknown_hold);
        } else if (it->second.state == hold_state::active) {
          ASSERT_EQ(r.status, code::ok);
          it->second.state = hold_state::confirmed;
          reserved -= it->second.qty;
          on_hand -= it->second.qty;
          sold += it->second.qty;
        }
        break;
      }
      case 3: {
        auto r = op(release(id, "r"));
        expire();
        auto it = model.find(id);
        if (it != model.end() && it->second.state == hold_state::active) {
          ASSERT_EQ(r.status, code::ok);
          it->second.state = hold_state::released;
          reserved -= it->second.qty;
        }
        break;
      }
      case 4:
        if (rng() % 4 == 0) {
          sku(sku_op_kind::restock, "r", 3);
          on_hand += 3;
          stocked += 3;
        }
        break;
      default:
        advance_ms(static_cast<int64_t>(rng() % 200));
        expire();
    }
    auto s = show("r");
    ASSERT_LE(0, s.reserved);
    ASSERT_LE(s.reserved, s.on_hand);
    ASSERT_LE(s.sold, s.stocked);
    ASSERT_EQ(s.reserved, reserved) << "step " << step;
    ASSERT_EQ(s.on_hand, on_hand) << "step " << step;
    ASSERT_EQ(s.sold, sold);
    ASSERT_EQ(s.stocked, stocked);
  }
}

}  // namespace
}  // namespace holdfast::testing

namespace holdfast::testing {
namespace {

// The reply sink an SKU actor answers the network thread through: once at most, in
// order when gathered from parts, and `unavailable` for every operation when the message
// carrying it is dropped (its actor stopped first), so no caller waits for its deadline.
TEST(hold_sink, answers_once_gathers_parts_in_order_and_a_dropped_one_says_unavailable) {
  std::vector<std::vector<hold_result>> heard;
  auto sink = make_hold_sink(2, [&](std::vector<hold_result> rs) { heard.push_back(std::move(rs)); });
  sink->deliver({make_hold_error(code::out_of_stock), make_hold_error(code::ok)});
  sink->deliver({make_hold_error(code::invalid)});  // a second answer is ignored
  sink.reset();
  ASSERT_EQ(heard.size(), 1u);
  EXPECT_EQ(heard[0][0].status, code::out_of_stock);

  heard.clear();
  make_hold_sink(3, [&](std::vector<hold_result> rs) { heard.push_back(std::move(rs)); });  // dropped
  ASSERT_EQ(heard.size(), 1u);
  ASSERT_EQ(heard[0].size(), 3u);
  for (auto& r : heard[0]) EXPECT_EQ(r.status, code::unavailable);

  heard.clear();
  std::vector<hold_result> prefilled(4);
  prefilled[1] = make_hold_error(code::invalid, "answered by the splitter");
  auto whole = make_hold_sink(4, [&](std::vector<hold_result> rs) { heard.push_back(std::move(rs)); });
  auto g = std::make_shared<hold_gather>(whole, prefilled, 2);
  whole.reset();
  auto a = hold_gather::part(g, {0, 3});
  auto b = hold_gather::part(g, {2});
  g.reset();
  a->deliver({make_hold_error(code::out_of_stock), make_hold_error(code::hold_expired)});
  EXPECT_TRUE(heard.empty()) << "one part still out";
  b.reset();  // its actor stopped: its slot says so
  a.reset();
  ASSERT_EQ(heard.size(), 1u);
  EXPECT_EQ(heard[0][0].status, code::out_of_stock);
  EXPECT_EQ(heard[0][1].status, code::invalid);
  EXPECT_EQ(heard[0][2].status, code::unavailable);
  EXPECT_EQ(heard[0][3].status, code::hold_expired);
}

}  // namespace
}  // namespace holdfast::testing
