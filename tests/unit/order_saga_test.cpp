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
    storage_options options;
    options.path = dir_.path() + "/data";
    options.map_size_bytes = size_t{64} << 20;
    std::string error;
    env_ = storage::open(options, error);
    ASSERT_TRUE(env_) << error;
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
  EXPECT_NE(paid.cancel(clock_->now), "");
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

}  // namespace
}  // namespace holdfast::testing
