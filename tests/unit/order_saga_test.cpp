// The checkout saga against real SKU books (over a real, empty LMDB environment) and the
// in-process gateway: every path, every compensation, unknown outcomes, a resume from
// the durable record, and webhook finality. Deterministic: time is a counter.
#include "test_support.hpp"

#include "actors/order_saga.hpp"
#include "actors/sku_book.hpp"
#include "gateway/in_process.hpp"

namespace holdfast::testing {
namespace {

struct test_clock : wall_clock {
  int64_t now = 1'800'000'000'000;
  int64_t now_ms() const override { return now; }
};

class order_saga_test : public ::testing::Test {
protected:
  void SetUp() override {
    env_ = open_test_storage(dir_.path());
    ASSERT_TRUE(env_);
  }

  void stock(const std::string& sku, int64_t units, int64_t limit_per_user = 0) {
    auto& b = books_[sku] = std::make_unique<sku_book>(sku, sku_book_policy{});
    sku_change c(++seq_, clock_->now, env_.get());
    ASSERT_EQ(b->apply(sku_op{sku_op_kind::create, sku, units, 100, {}, limit_per_user}, c).status, code::ok);
  }
  const sku_info& sku(const std::string& name) { return books_.at(name)->record().sku; }

  void make_gateway(gateway_options o = {}) {
    gateway_ = std::make_unique<in_process_gateway>(o, clock_, "whsec_test");
  }

  std::vector<hold_result> send(const std::vector<hold_op>& ops) {
    std::vector<hold_result> out;
    for (auto& op : ops) {
      if (drop_holds_ > 0) {
        --drop_holds_;
        out.push_back(make_hold_error(code::outcome_unknown, "link lost"));
        continue;
      }
      auto it = books_.find(op.sku);
      if (it == books_.end()) {
        out.push_back(make_hold_error(code::unknown_sku));
        continue;
      }
      sku_change c(++seq_, clock_->now, env_.get());
      it->second->expire_due(clock_->now, c);
      out.push_back(it->second->apply(op, clock_->now, c));
    }
    return out;
  }

  // Runs the saga until it is terminal (or `steps` commands); returns the commands' kinds.
  std::string run(order_saga& saga, int steps = 200) {
    std::string trace;
    for (int i = 0; i < steps && !saga.terminal(); ++i) {
      auto cmd = saga.next(clock_->now);
      switch (cmd.what) {
        case saga_command::kind::holds:
          if (cmd.holds.empty()) return trace + "!";
          trace += std::string(cmd.holds.front().kind == hold_op_kind::reserve ? "R"
                               : cmd.holds.front().kind == hold_op_kind::confirm ? "C"
                               : cmd.holds.front().kind == hold_op_kind::release ? "L"
                               : cmd.holds.front().kind == hold_op_kind::extend ? "E" : "B");
          saga.on_holds(cmd.holds, send(cmd.holds), clock_->now);
          break;
        case saga_command::kind::payment: {
          trace += cmd.payment.op == payment_op::authorize ? "a"
                   : cmd.payment.op == payment_op::capture ? "c"
                   : cmd.payment.op == payment_op::void_auth ? "v"
                   : cmd.payment.op == payment_op::refund ? "f" : "k";  // k: lookup by key
          payment_reply reply;
          gateway_->call(cmd.payment, [&](payment_reply r) { reply = std::move(r); });
          saga.on_payment(cmd.payment, reply, clock_->now);
          break;
        }
        case saga_command::kind::wait:
          trace += ".";
          clock_->now = cmd.wait_until_ms;
          break;
        default:
          return trace;
      }
      if (between_) between_(saga);
    }
    return trace;
  }

  order_saga place(const std::string& id, std::vector<order_line> lines, const std::string& card = "tok_visa",
                   const std::string& user = "ann") {
    return order_saga(order_saga::place(id, user, card, std::move(lines), clock_->now), policy_);
  }

  payment_reply pay(const payment_request& r) {
    payment_reply reply;
    gateway_->call(r, [&](payment_reply x) { reply = std::move(x); });
    return reply;
  }
  static payment_reply lost() {
    payment_reply r;
    r.result = payment_reply::outcome::unknown;
    r.error = "no answer in time";
    return r;
  }
  // What gateway::begin answers a concurrent duplicate.
  static payment_reply busy(const std::string& key) {
    payment_reply r;
    r.result = payment_reply::outcome::refused;
    r.error = "a request with idempotency key '" + key + "' is in progress";
    return r;
  }
  std::string authorized_intent(const std::string& order) {
    for (auto& e : gateway_->core().ledger())
      if (e.order_id == order && e.op == payment_op::authorize && !e.declined) return e.intent_id;
    return {};
  }

  temp_dir dir_;
  std::unique_ptr<storage> env_;
  std::shared_ptr<test_clock> clock_ = std::make_shared<test_clock>();
  std::map<std::string, std::unique_ptr<sku_book>> books_;
  std::unique_ptr<in_process_gateway> gateway_;
  saga_policy policy_;
  uint64_t seq_ = 0;
  int drop_holds_ = 0;  // the next this many hold operations get no answer
  std::function<void(order_saga&)> between_;
};

TEST_F(order_saga_test, a_checkout_reserves_every_line_authorizes_confirms_and_captures_once) {
  stock("tee", 10);
  stock("mug", 5);
  make_gateway();
  auto saga = place("o1", {{"tee", 2, 1500}, {"mug", 1, 900}});
  EXPECT_EQ(saga.record().total_cents, 3900);
  EXPECT_EQ(run(saga), "RaCc");
  EXPECT_EQ(saga.record().state, order_state::captured);
  EXPECT_TRUE(saga.terminal());
  EXPECT_EQ(sku("tee").sold, 2);
  EXPECT_EQ(sku("mug").sold, 1);
  EXPECT_EQ(sku("tee").reserved, 0);
  EXPECT_EQ(gateway_->core().captures("o1"), 1u);
  // Resumed from its record (a restart after the capture): nothing more to do.
  order_saga resumed(saga.record(), policy_);
  EXPECT_EQ(resumed.next(clock_->now).what, saga_command::kind::none);
  EXPECT_EQ(resumed.ship(clock_->now), "");
  EXPECT_EQ(resumed.deliver(clock_->now), "");
  EXPECT_EQ(resumed.record().state, order_state::delivered);
}

TEST_F(order_saga_test, a_refused_line_releases_the_others_and_nothing_is_charged) {
  stock("tee", 10);
  stock("mug", 0);
  make_gateway();
  auto saga = place("o2", {{"tee", 2, 1500}, {"mug", 1, 900}});
  EXPECT_EQ(run(saga), "RL");
  EXPECT_EQ(saga.record().state, order_state::cancelled);
  EXPECT_NE(saga.record().reason.find("out_of_stock"), std::string::npos) << saga.record().reason;
  EXPECT_EQ(sku("tee").reserved, 0);
  EXPECT_EQ(sku("tee").on_hand, 10);
  EXPECT_TRUE(gateway_->core().ledger().empty());
}

TEST_F(order_saga_test, a_per_user_limit_refuses_the_order_that_would_pass_it) {
  stock("drop", 100, 2);
  make_gateway();
  auto first = place("o3a", {{"drop", 2, 100}});
  EXPECT_EQ(run(first), "RaCc");
  auto second = place("o3b", {{"drop", 1, 100}});
  EXPECT_EQ(run(second), "RL");
  EXPECT_EQ(second.record().state, order_state::cancelled);
  EXPECT_NE(second.record().reason.find("limit_reached"), std::string::npos) << second.record().reason;
}

TEST_F(order_saga_test, a_declined_payment_releases_every_hold) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("o4", {{"tee", 3, 1500}}, "tok_decline");
  EXPECT_EQ(run(saga), "RaL");
  EXPECT_EQ(saga.record().state, order_state::cancelled);
  EXPECT_NE(saga.record().reason.find("declined"), std::string::npos);
  EXPECT_EQ(sku("tee").reserved, 0);
  EXPECT_EQ(gateway_->core().captures("o4"), 0u);
}

// Lost replies: the saga asks by idempotency key and never charges twice.
TEST_F(order_saga_test, unknown_payment_outcomes_are_looked_up_never_charged_again) {
  stock("tee", 10);
  gateway_options o;
  o.lost_reply_rate = 1.0;  // every authorize and capture is applied, its reply lost
  make_gateway(o);
  auto saga = place("o5", {{"tee", 1, 1500}});
  auto trace = run(saga);
  EXPECT_EQ(trace, "Ra.kCc.k") << "each lost reply: wait, then a lookup by the key";
  EXPECT_EQ(saga.record().state, order_state::captured) << trace;
  size_t authorizations = 0;
  for (auto& e : gateway_->core().ledger()) authorizations += e.op == payment_op::authorize;
  EXPECT_EQ(authorizations, 1u) << trace;
  EXPECT_EQ(gateway_->core().captures("o5"), 1u) << trace;
}

TEST_F(order_saga_test, lost_hold_answers_are_retried_with_backoff_then_given_up_and_compensated) {
  stock("tee", 10);
  make_gateway();
  drop_holds_ = 3;
  auto saga = place("o6", {{"tee", 1, 1500}});
  auto trace = run(saga);
  EXPECT_EQ(saga.record().state, order_state::captured) << trace;
  EXPECT_EQ(trace.substr(0, 6), "R.R.R.") << "three retries, each after a wait";
  EXPECT_EQ(sku("tee").sold, 1) << "the same hold id: reserved once";
  EXPECT_EQ(sku("tee").active_holds, 0);
  // No answer ever: the forward step gives up and compensates.
  policy_.attempts_max = 4;
  drop_holds_ = 1'000'000;
  auto stuck = place("o7", {{"tee", 1, 1500}});
  run(stuck, 12);
  drop_holds_ = 0;
  trace = run(stuck);
  EXPECT_EQ(stuck.record().state, order_state::cancelled) << trace;
  EXPECT_NE(stuck.record().reason.find("no answer"), std::string::npos) << stuck.record().reason;
  EXPECT_EQ(sku("tee").reserved, 0) << "whatever the lost reserves did is released";
}

// A hold that expires before confirm: the confirmed lines go back, the authorization is
// voided, nothing is captured, and the stock is as before.
TEST_F(order_saga_test, a_hold_expiring_before_confirm_voids_and_gives_back_the_confirmed_lines) {
  stock("tee", 10);
  stock("mug", 10);
  make_gateway();
  policy_.hold_ttl_ms = 1'000;
  auto saga = place("o8", {{"tee", 2, 1500}, {"mug", 1, 900}});
  // After the authorization, the mug's hold expires (its SKU's clock passes the deadline
  // while the tee's hold is extended by another party just in time).
  between_ = [&](order_saga& s) {
    if (s.record().phase == saga_phase::confirm && s.record().state == order_state::authorized &&
        sku("mug").active_holds == 1) {
      std::vector<hold_op> keep{hold_op{hold_op_kind::extend, "tee", "o8-0", 0, 60'000, {}}};
      ASSERT_EQ(send(keep).at(0).status, code::ok);
      clock_->now += 1'001;
      s = order_saga([&] {
        auto r = s.record();
        r.extended_at_ms = clock_->now;  // no extension of its own this time
        return r;
      }(), policy_);
    }
  };
  auto trace = run(saga);
  EXPECT_EQ(trace, "RaCLBv") << "confirm, then release the unsold, give back the sold, void";
  EXPECT_EQ(saga.record().state, order_state::cancelled) << trace;
  EXPECT_NE(saga.record().reason.find("could not be confirmed"), std::string::npos) << saga.record().reason;
  EXPECT_EQ(sku("tee").sold, 0) << trace;
  EXPECT_EQ(sku("tee").on_hand, 10);
  EXPECT_EQ(sku("mug").on_hand, 10);
  EXPECT_EQ(sku("tee").reserved + sku("mug").reserved, 0);
  EXPECT_EQ(gateway_->core().captures("o8"), 0u);
  EXPECT_EQ(gateway_->core().intent(saga.record().intent_id)->status, intent_status::voided);
}

TEST_F(order_saga_test, a_user_cancel_before_capture_releases_and_voids) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("o9", {{"tee", 2, 1500}});
  between_ = [&](order_saga& s) {
    if (s.record().state == order_state::authorized && !s.record().cancel_requested) {
      EXPECT_EQ(s.cancel(clock_->now), "");
      s.apply_cancel(clock_->now);
    }
  };
  auto trace = run(saga);
  EXPECT_EQ(trace, "RaLv");
  EXPECT_EQ(saga.record().state, order_state::cancelled);
  EXPECT_EQ(saga.record().reason, "cancelled by the user");
  EXPECT_EQ(sku("tee").reserved, 0);
  EXPECT_EQ(gateway_->core().captures("o9"), 0u);
  // After capture a cancel is refused.
  between_ = nullptr;
  auto paid = place("o10", {{"tee", 1, 1500}});
  run(paid);
  EXPECT_EQ(paid.cancel(clock_->now), "order is captured: its payment was captured (a shipping failure refunds it)");
  EXPECT_EQ(saga.cancel(clock_->now), "") << "cancelling a cancelled order asks for nothing more";
}

TEST_F(order_saga_test, a_shipping_failure_after_capture_refunds_and_restocks) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("o11", {{"tee", 3, 1500}});
  run(saga);
  ASSERT_EQ(saga.record().state, order_state::captured);
  ASSERT_EQ(saga.ship(clock_->now), "");
  EXPECT_EQ(sku("tee").on_hand, 7);
  ASSERT_EQ(saga.shipping_failed("carrier lost it", clock_->now), "");
  EXPECT_EQ(run(saga), "Bf");
  EXPECT_EQ(saga.record().state, order_state::refunded);
  EXPECT_EQ(sku("tee").on_hand, 10);
  EXPECT_EQ(sku("tee").sold, 0);
  EXPECT_EQ(gateway_->core().captures("o11"), 1u);
  EXPECT_EQ(gateway_->core().intent(saga.record().intent_id)->status, intent_status::refunded);
}

// The record is the saga: an order resumed from its record after every step (a restart
// at each point) ends as one that ran straight through, with every effect once.
TEST_F(order_saga_test, an_order_resumed_from_its_record_at_every_step_ends_the_same) {
  stock("tee", 10);
  stock("mug", 10);
  make_gateway();
  between_ = [&](order_saga& s) { s = order_saga(s.record(), policy_); };
  auto saga = place("o12", {{"tee", 2, 1500}, {"mug", 1, 900}});
  EXPECT_EQ(run(saga), "RaCc");
  EXPECT_EQ(saga.record().state, order_state::captured);
  EXPECT_EQ(sku("tee").sold + sku("mug").sold, 3);
  EXPECT_EQ(gateway_->core().captures("o12"), 1u);
  // A resume that repeats a step already done (the crash came after the effect, before
  // the record): the same ids find the same answers.
  auto again = place("o13", {{"tee", 1, 1500}});
  auto before = again.record();
  EXPECT_EQ(run(again, 2), "Ra");
  order_saga replay(before, policy_);  // the record from before both steps
  EXPECT_EQ(run(replay), "RaCc");
  EXPECT_EQ(replay.record().state, order_state::captured);
  EXPECT_EQ(sku("tee").sold, 3);
  EXPECT_EQ(gateway_->core().captures("o13"), 1u);
  size_t authorizations = 0;
  for (auto& e : gateway_->core().ledger())
    authorizations += e.order_id == "o13" && e.op == payment_op::authorize;
  EXPECT_EQ(authorizations, 1u);
}

// Finality from the webhook: a capture whose reply was lost is settled by the event.
TEST_F(order_saga_test, a_payment_event_settles_a_step_whose_reply_was_lost) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("o14", {{"tee", 1, 1500}});
  EXPECT_EQ(run(saga, 3), "RaC");
  ASSERT_EQ(saga.record().phase, saga_phase::capture);
  auto cmd = saga.next(clock_->now);
  payment_reply applied;
  gateway_->call(cmd.payment, [&](payment_reply r) { applied = std::move(r); });
  payment_reply lost;
  lost.result = payment_reply::outcome::unknown;
  saga.on_payment(cmd.payment, lost, clock_->now);
  // Old news changes nothing; the capture's event settles it.
  payment_intent stale = applied.intent;
  stale.status = intent_status::authorized;
  EXPECT_FALSE(saga.on_payment_event(stale, clock_->now));
  payment_intent other = applied.intent;
  other.order_id = "someone-else";
  EXPECT_FALSE(saga.on_payment_event(other, clock_->now));
  EXPECT_TRUE(saga.on_payment_event(applied.intent, clock_->now));
  EXPECT_EQ(saga.record().state, order_state::captured);
  EXPECT_EQ(gateway_->core().captures("o14"), 1u);
}

// Found by the gateway-process test: an authorization whose reply was lost and whose
// decline came by webhook left the order unsure of an authorization; voiding a declined
// intent then never settled that, and the void step looped (100,000 record writes a
// minute). Now the decline ends the order in a few steps, nothing charged.
TEST_F(order_saga_test, a_declined_authorization_known_only_from_its_webhook_ends_the_order) {
  stock("tee", 10);
  gateway_options faults;
  faults.decline_rate = 1;
  make_gateway(faults);
  auto saga = place("o15", {{"tee", 1, 1500}});
  EXPECT_EQ(run(saga, 1), "R");
  auto cmd = saga.next(clock_->now);
  ASSERT_EQ(cmd.payment.op, payment_op::authorize);
  payment_reply declined;
  gateway_->call(cmd.payment, [&](payment_reply r) { declined = std::move(r); });
  ASSERT_EQ(declined.result, payment_reply::outcome::declined);
  payment_reply lost;
  lost.result = payment_reply::outcome::unknown;
  saga.on_payment(cmd.payment, lost, clock_->now);
  EXPECT_TRUE(saga.on_payment_event(declined.intent, clock_->now));
  clock_->now += 10'000;
  auto trace = run(saga, 20);
  EXPECT_TRUE(saga.terminal()) << trace;
  EXPECT_EQ(saga.record().state, order_state::cancelled);
  EXPECT_EQ(sku("tee").reserved, 0);
  EXPECT_EQ(gateway_->core().captures("o15"), 0u);
}

// Found by the adversarial pass on checkout: a total past int64 wrapped to a few cents;
// a free order (price 0) was refused by the gateway and cancelled.
TEST_F(order_saga_test, an_overflowing_total_is_refused_and_a_free_order_needs_no_payment) {
  stock("gold", 10);
  make_gateway();
  auto huge = place("o20", {{"gold", int64_t{1} << 29, int64_t{1} << 35}, {"gold", 1, 100}});
  EXPECT_TRUE(huge.terminal());
  EXPECT_EQ(huge.record().state, order_state::cancelled);
  EXPECT_NE(huge.record().reason.find("overflow"), std::string::npos);
  auto free_order = place("o21", {{"gold", 2, 0}});
  EXPECT_EQ(run(free_order), "RC");
  EXPECT_EQ(free_order.record().state, order_state::captured);
  EXPECT_EQ(sku("gold").sold, 2);
  EXPECT_TRUE(gateway_->core().ledger().empty());
}

// Found by an adversarial review of the saga (each failed before its fix; P10, a
// resume from a record older than several of its effects, cannot happen: a record is
// written before its command is sent, so only the last command can be repeated).
// P1. Cancel while the authorization's outcome is unknown: compensation() only voids when
// `authorized` is set, so an authorization that did happen is never voided (order_saga.cpp:136,
// 202-204). Same with the give-up after attempts_max (187-191) and an extend loss (228-231).
TEST_F(order_saga_test, cancel_while_authorize_outcome_unknown_leaves_the_authorization_standing) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("r1", {{"tee", 1, 1500}});
  ASSERT_EQ(run(saga, 1), "R");
  auto cmd = saga.next(clock_->now);
  ASSERT_EQ(cmd.payment.op, payment_op::authorize);
  pay(cmd.payment);                                      // applied at the provider...
  saga.on_payment(cmd.payment, lost(), clock_->now);     // ...its reply lost: lookup_pending
  ASSERT_EQ(saga.cancel(clock_->now), "");
  ASSERT_TRUE(saga.apply_cancel(clock_->now));           // order.cpp calls this in step()
  auto trace = run(saga);
  EXPECT_EQ(saga.record().state, order_state::cancelled) << trace;
  auto id = authorized_intent("r1");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(gateway_->core().intent(id)->status, intent_status::voided)
      << trace << ": cancelled, but the authorization " << id << " is left requires_capture";
}

TEST_F(order_saga_test, giving_up_on_an_unknown_authorize_leaves_the_authorization_standing) {
  stock("tee", 10);
  make_gateway();
  policy_.attempts_max = 1;
  auto saga = place("r1b", {{"tee", 1, 1500}});
  ASSERT_EQ(run(saga, 1), "R");
  auto cmd = saga.next(clock_->now);
  pay(cmd.payment);
  saga.on_payment(cmd.payment, lost(), clock_->now);     // gives up at once
  auto trace = run(saga);
  auto id = authorized_intent("r1b");
  // The webhook that would tell: ignored, the saga is terminal (order_saga.cpp:375-394).
  saga.on_payment_event(*gateway_->core().intent(id), clock_->now);
  trace += run(saga);
  EXPECT_EQ(saga.record().state, order_state::cancelled) << trace;
  EXPECT_EQ(gateway_->core().intent(id)->status, intent_status::voided) << trace;
}

// P2. A capture refused with an empty intent ("in progress", key reused, ...) is read as
// "not captured": authorized=false, restock, cancelled. The in-flight capture lands: the
// customer is charged for a cancelled order whose units went back (order_saga.cpp:338-341).
TEST_F(order_saga_test, a_capture_refused_as_in_progress_is_not_a_capture_that_failed) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("r2", {{"tee", 2, 1500}});
  ASSERT_EQ(run(saga, 3), "RaC");
  auto cmd = saga.next(clock_->now);
  ASSERT_EQ(cmd.payment.op, payment_op::capture);
  saga.on_payment(cmd.payment, busy(cmd.payment.idempotency_key), clock_->now);
  pay(cmd.payment);  // the duplicate that was in progress completes
  auto trace = run(saga);
  auto in = *gateway_->core().intent(saga.record().intent_id);
  bool consistent = (saga.record().state == order_state::captured && sku("tee").sold == 2) ||
                    (saga.record().state == order_state::refunded && in.status == intent_status::refunded);
  EXPECT_TRUE(consistent) << trace << ": state " << to_string(saga.record().state) << ", intent "
                          << to_string(in.status) << ", sold " << sku("tee").sold;
}

// P3. Same for authorize: refused "in progress" -> compensate without void (order_saga.cpp:326-331).
TEST_F(order_saga_test, an_authorize_refused_as_in_progress_is_voided_or_used_never_left) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("r3", {{"tee", 1, 1500}});
  ASSERT_EQ(run(saga, 1), "R");
  auto cmd = saga.next(clock_->now);
  saga.on_payment(cmd.payment, busy(cmd.payment.idempotency_key), clock_->now);
  pay(cmd.payment);
  auto trace = run(saga);
  auto id = authorized_intent("r3");
  if (saga.record().state == order_state::cancelled)
    EXPECT_EQ(gateway_->core().intent(id)->status, intent_status::voided) << trace;
  else
    EXPECT_EQ(saga.record().state, order_state::captured) << trace;
}

// P4. A void refused with an empty intent (in progress, key reused, rate limited) counts as
// voided: `in.status != authorized` is true for status none (order_saga.cpp:345-347).
TEST_F(order_saga_test, a_void_refused_without_an_intent_is_not_a_void) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("r4", {{"tee", 1, 1500}});
  ASSERT_EQ(run(saga, 2), "Ra");
  ASSERT_EQ(saga.cancel(clock_->now), "");
  ASSERT_TRUE(saga.apply_cancel(clock_->now));
  ASSERT_EQ(run(saga, 1), "L");
  auto cmd = saga.next(clock_->now);
  ASSERT_EQ(cmd.payment.op, payment_op::void_auth);
  saga.on_payment(cmd.payment, busy(cmd.payment.idempotency_key), clock_->now);
  EXPECT_FALSE(saga.terminal()) << "ended " << to_string(saga.record().state) << " with nothing voided";
  run(saga);
  EXPECT_EQ(gateway_->core().intent(saga.record().intent_id)->status, intent_status::voided);
}

// P5. Finished holds are collected after finished_hold_retention_ms (24 h, storage.cpp:523,
// lmdb_env.cpp collect_finished deletes record and index): return_hold then answers
// unknown_hold and the saga takes it as "never sold" (order_saga.cpp:251-253). A shipping
// failure two days after the capture refunds the money and never gives the units back.
TEST_F(order_saga_test, a_restock_after_the_hold_was_collected_does_not_forget_the_sale) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("r5", {{"tee", 3, 1500}});
  run(saga);
  ASSERT_EQ(saga.record().state, order_state::captured);
  ASSERT_EQ(saga.shipping_failed("lost in transit", clock_->now), "");
  auto cmd = saga.next(clock_->now);
  ASSERT_EQ(cmd.holds.at(0).kind, hold_op_kind::return_hold);
  // What sku_book::end_hold answers (line 408) once the finished hold was collected.
  saga.on_holds(cmd.holds, {make_hold_error(code::unknown_hold)}, clock_->now);
  // The book cannot give back a hold it no longer knows (a return by id alone, with a
  // qty, would let any caller "unsell" units). The saga says so instead of forgetting.
  auto trace = run(saga);
  EXPECT_EQ(saga.record().state, order_state::refunded) << trace;
  EXPECT_NE(saga.record().reason.find("line 0 (tee x3) was sold before the hold retention: restock it by hand"),
            std::string::npos)
      << saga.record().reason;
}

// P6. A restock answer that is neither ok/unknown_hold/wrong_state/unanswered (unknown_sku,
// invalid from give_back's on_hand_max, hold_conflict) sets done=1 but keeps sold=1;
// compensate() re-enters restock with attempt=0, retry_at=0: a hot loop with no backoff,
// a persisted write per turn, forever (order_saga.cpp:250-256, 284-285, 135, 110-123).
TEST_F(order_saga_test, a_restock_that_keeps_failing_backs_off) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("r6", {{"tee", 1, 1500}});
  run(saga);
  ASSERT_EQ(saga.shipping_failed("damaged", clock_->now), "");
  bool waited = false;
  auto v0 = saga.record().version;
  for (int i = 0; i < 10 && !waited; ++i) {
    auto cmd = saga.next(clock_->now);  // the clock does not move
    if (cmd.what == saga_command::kind::wait) { waited = true; break; }
    ASSERT_EQ(cmd.what, saga_command::kind::holds);
    saga.on_holds(cmd.holds, {make_hold_error(code::invalid, "would take on_hand past the max")}, clock_->now);
  }
  EXPECT_TRUE(waited) << "10 return_hold commands at the same instant, version " << v0 << " -> "
                      << saga.record().version;
}

// P7. ship()/deliver() look at the state only; during the refund's compensations the
// state is still `captured`: an order being refunded and restocked is shipped, then ends
// `refunded` (order_saga.cpp:411-427).
TEST_F(order_saga_test, an_order_being_refunded_cannot_be_shipped) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("r7", {{"tee", 1, 1500}});
  run(saga);
  ASSERT_EQ(saga.shipping_failed("address unknown", clock_->now), "");
  EXPECT_NE(saga.ship(clock_->now), "");
  EXPECT_NE(saga.deliver(clock_->now), "");
  run(saga);
  EXPECT_EQ(saga.record().state, order_state::refunded);
}

// P8. An order with no lines: next() answers `holds` with an empty batch; on_holds ignores
// empty batches (order_saga.cpp:181), nothing changes, next() asks the same: stuck forever
// (order.cpp step() -> inventory->holds({}) -> learn -> step ...). Nothing validates lines.
TEST_F(order_saga_test, an_order_without_lines_ends) {
  make_gateway();
  auto saga = place("r8", {});
  for (int i = 0; i < 10 && !saga.terminal(); ++i) {
    auto cmd = saga.next(clock_->now);
    if (cmd.what != saga_command::kind::holds) break;
    EXPECT_FALSE(cmd.holds.empty()) << "empty hold batch, turn " << i;
    saga.on_holds(cmd.holds, {}, clock_->now);
  }
  EXPECT_TRUE(saga.terminal()) << "phase " << to_string(saga.record().phase);
}

// P9. A confirm whose answer was lost, then the lease renewal (due at ttl/2) extends that
// line: the book says wrong_state (hold confirmed); the extend branch reads every non-ok
// answer as "the hold ended" and cancels a fully confirmed order (order_saga.cpp:192-201).
TEST_F(order_saga_test, an_extend_that_finds_the_hold_confirmed_does_not_cancel) {
  stock("tee", 10);
  make_gateway();
  policy_.hold_ttl_ms = 1'000;
  auto saga = place("r9", {{"tee", 1, 1500}});
  ASSERT_EQ(run(saga, 2), "Ra");
  auto cmd = saga.next(clock_->now);
  ASSERT_EQ(cmd.holds.at(0).kind, hold_op_kind::confirm);
  ASSERT_EQ(send(cmd.holds).at(0).status, code::ok);  // confirmed...
  saga.on_holds(cmd.holds, {make_hold_error(code::outcome_unknown, "link lost")}, clock_->now);  // ...answer lost
  clock_->now += 600;  // past ttl/2 since the reserve
  auto trace = run(saga);
  EXPECT_EQ(saga.record().state, order_state::captured) << trace << " " << saga.record().reason;
  EXPECT_EQ(gateway_->core().captures("r9"), 1u);
}

// Found by the adversarial pass: a gateway that lost its intents (restarted) answered a
// capture "no payment intent" and the order retried for ever, its units sold. The
// provider not knowing the payment is a definite answer: nothing can be captured, the
// lines are given back, the order ends cancelled.
TEST_F(order_saga_test, a_capture_the_provider_knows_nothing_of_gives_the_lines_back) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("o30", {{"tee", 2, 1500}});
  EXPECT_EQ(run(saga, 3), "RaC");
  ASSERT_EQ(saga.record().phase, saga_phase::capture);
  EXPECT_EQ(sku("tee").sold, 2);
  make_gateway();  // the provider restarted and remembers nothing
  auto trace = run(saga);
  EXPECT_EQ(saga.record().state, order_state::cancelled) << trace << " " << saga.record().last_error;
  EXPECT_NE(saga.record().reason.find("does not know payment"), std::string::npos) << saga.record().reason;
  EXPECT_EQ(sku("tee").sold, 0);
  EXPECT_EQ(sku("tee").available(), 10);
  EXPECT_EQ(gateway_->core().captures("o30"), 0u);
}

// Found by the adversarial pass: replies and validly signed events about another order's
// payment, another intent or another amount advanced an order (a refund landed on
// someone else's payment). Only this order's payment, for its total, is an answer.
TEST_F(order_saga_test, answers_about_another_payment_are_not_answers) {
  stock("tee", 10);
  make_gateway();
  auto saga = place("o31", {{"tee", 1, 1500}});
  EXPECT_EQ(run(saga, 1), "R");
  ASSERT_EQ(saga.record().phase, saga_phase::authorize);
  auto cmd = saga.next(clock_->now);
  auto real = pay(cmd.payment);
  ASSERT_EQ(real.result, payment_reply::outcome::ok);
  // A signed event for the same order but another amount, or another order: ignored.
  auto cheaper = real.intent;
  cheaper.amount_cents = 1;
  EXPECT_FALSE(saga.on_payment_event(cheaper, clock_->now));
  auto other = real.intent;
  other.order_id = "o-other";
  EXPECT_FALSE(saga.on_payment_event(other, clock_->now));
  EXPECT_EQ(saga.record().phase, saga_phase::authorize);
  // A reply speaking of another order's intent is not an answer: asked again.
  auto wrong = real;
  wrong.intent.order_id = "o-other";
  auto version = saga.record().version;
  EXPECT_TRUE(saga.on_payment(cmd.payment, wrong, clock_->now));
  EXPECT_EQ(saga.record().phase, saga_phase::authorize);
  EXPECT_FALSE(saga.record().authorized);
  EXPECT_NE(saga.record().last_error.find("another payment"), std::string::npos) << saga.record().last_error;
  EXPECT_EQ(saga.record().version, version) << "a retry is not a transition (no record, no event)";
  // The real answer settles it; from then on only that intent speaks for the order.
  EXPECT_TRUE(saga.on_payment(cmd.payment, real, clock_->now));
  EXPECT_EQ(saga.record().state, order_state::authorized);
  EXPECT_EQ(saga.record().intent_id, real.intent.id);
  auto stranger = real.intent;
  stranger.id = "pi_somebody";
  stranger.status = intent_status::voided;
  EXPECT_FALSE(saga.on_payment_event(stranger, clock_->now));
  EXPECT_EQ(run(saga), "Cc");
  EXPECT_EQ(saga.record().state, order_state::captured);
  EXPECT_EQ(gateway_->core().captures("o31"), 1u);
}

}  // namespace
}  // namespace holdfast::testing
