// Order actors on the deterministic scheduler over a real LMDB environment: the saga
// driven end to end against real SKU actors and the in-process gateway, and a crash
// (every actor and all memory gone) at every step of it, resumed from the log.
#include "test_support.hpp"

#include "actors/order.hpp"
#include "gateway/in_process.hpp"
#include "gateway/webhook.hpp"

namespace holdfast::testing {
namespace {

// Hold operations through the node's SKU directory, answered as a message would be.
struct directory_calls final : hold_calls {
  caf::actor_system& sys;
  directory_actor* directory;
  explicit directory_calls(caf::actor_system& s, directory_actor* d) : sys(s), directory(d) {}
  void holds(std::vector<hold_op> ops, std::function<void(std::vector<hold_result>)> done) override {
    auto d = *directory;
    sys.spawn([ops = std::move(ops), done = std::move(done), d](caf::event_based_actor* self) {
      self->request(d, caf::infinite, hold_ops_atom_v, ops)
        .then([done](std::vector<hold_result>& rs) { done(std::move(rs)); },
              [done, n = ops.size()](caf::error&) {
                done(std::vector<hold_result>(n, make_hold_error(code::outcome_unknown, "lost")));
              });
    });
  }
};

class order_test : public node_fixture {
protected:
  void SetUp() override {
    gateway_ = std::make_shared<in_process_gateway>(gateway_options{}, clock_, "whsec");
    boot();
  }
  void TearDown() override { crash(); }

  void boot() {
    start();
    order_context ctx;
    ctx.env = env_;
    ctx.store = store_;
    ctx.clock = clock_;
    ctx.inventory = std::make_shared<directory_calls>(*sys_, &directory_);
    ctx.payments = gateway_;
    ctx.verify_payment_event = [](const std::string& body, const std::string& signature, int64_t now_ms,
                                  payment_intent& out) -> std::string {
      return verify_payment_event("whsec", body, signature, now_ms, out);
    };
    orders_ = sys_->spawn(order_directory_behavior, ctx);
    sched_->run();
  }
  // Every actor and all memory gone; the log and the gateway (another process) remain.
  void crash() {
    if (!orders_) return;
    caf::anon_send_exit(orders_, caf::exit_reason::kill);
    sched_->run();
    orders_ = nullptr;
    stop();
  }
  template <class T, class... Ts>
  T ask(Ts... xs) {
    caf::scoped_actor self{*sys_};
    auto handle = self->request(orders_, caf::infinite, xs...);
    sched_->run();
    T out{};
    handle.receive([&](T& r) { out = std::move(r); },
                   [&](caf::error& e) { ADD_FAILURE() << "error: " << sys_->render(e); });
    return out;
  }
  order_result place(const std::string& id, std::vector<order_line> lines, const std::string& card = "tok_visa") {
    return ask<order_result>(order_place_atom_v, order_saga::place(id, "ann", card, std::move(lines), clock_->now_ms()));
  }
  sku_info show_sku(const std::string& name) { return node_fixture::show(name); }
  order_result show(const std::string& id) { return ask<order_result>(order_op_atom_v, order_op_on(order_op_kind::show, id)); }
  size_t authorizations(const std::string& id) {
    size_t n = 0;
    for (auto& e : gateway_->core().ledger()) n += e.order_id == id && e.op == payment_op::authorize;
    return n;
  }

  std::shared_ptr<in_process_gateway> gateway_;
  order_directory_actor orders_;
};

TEST_F(order_test, an_order_runs_its_saga_to_captured_and_answers_from_its_record) {
  create("tee", 10);
  create("mug", 10);
  auto placed = place("o1", {{"tee", 2, 1500}, {"mug", 1, 900}});
  ASSERT_EQ(placed.status, code::ok) << placed.message;
  sched_->run();
  auto o = show("o1");
  EXPECT_EQ(o.order.state, order_state::captured) << o.order.last_error;
  EXPECT_EQ(show_sku("tee").sold, 2);
  EXPECT_EQ(show_sku("mug").sold, 1);
  EXPECT_EQ(gateway_->core().captures("o1"), 1u);
  // Placing it again is the same order; an unknown one is typed.
  EXPECT_EQ(place("o1", {{"tee", 9, 1}}).order.total_cents, 3900);
  EXPECT_EQ(show("nope").status, code::unknown_order);
  // A finished order's actor stops once unused for a while; the record answers after.
  EXPECT_GE(ask<int64_t>(stats_atom_v), 1);
  advance_ms(61'000);
  EXPECT_EQ(ask<int64_t>(stats_atom_v), 0) << "finished orders' actors stopped";
  EXPECT_EQ(show("o1").order.state, order_state::captured);
  // Finished orders come back from the log.
  crash();
  boot();
  EXPECT_EQ(ask<int64_t>(recover_atom_v), 0) << "nothing to resume";
  EXPECT_EQ(show("o1").order.state, order_state::captured);
}

TEST_F(order_test, a_cancel_before_capture_compensates_and_is_refused_after) {
  create("tee", 10);
  gateway_ = std::make_shared<in_process_gateway>(gateway_options{}, clock_, "whsec");
  auto placed = place("o2", {{"tee", 2, 1500}}, "tok_decline");
  sched_->run();
  EXPECT_EQ(show("o2").order.state, order_state::cancelled);
  EXPECT_EQ(show_sku("tee").reserved, 0);
  place("o3", {{"tee", 1, 1500}});
  sched_->run();
  auto refused = ask<order_result>(order_op_atom_v, order_op_on(order_op_kind::cancel, "o3"));
  EXPECT_EQ(refused.status, code::wrong_state);
  auto shipped = ask<order_result>(order_op_atom_v, order_op_on(order_op_kind::ship, "o3"));
  EXPECT_EQ(shipped.order.state, order_state::shipped);
  ask<order_result>(order_op_atom_v, order_op_on(order_op_kind::shipping_failed, "o3", "lost"));
  sched_->run();
  EXPECT_EQ(show("o3").order.state, order_state::refunded);
  EXPECT_EQ(show_sku("tee").on_hand, 10);
}

// Payment events reach an order only signed with the secret, fresh, and about that very
// order: whoever passes one on (a peer, a client), the directory checks it first.
TEST_F(order_test, a_payment_event_is_believed_only_when_signed_fresh_and_about_its_order) {
  create("tee", 10);
  place("o4", {{"tee", 1, 1500}});
  place("o5", {{"tee", 1, 1500}});
  sched_->run();
  ASSERT_EQ(show("o4").order.state, order_state::captured);
  auto intent = *gateway_->core().intent(show("o4").order.intent_id);
  intent.status = intent_status::refunded;  // what a forger would like the node to believe
  webhook_event e{"evt_x", "charge.refunded", clock_->now_ms(), intent};
  auto body = webhook_body(e);
  auto now_s = clock_->now_ms() / 1000;
  auto event = [&](const std::string& order, const std::string& signature, const std::string& b) {
    order_op op;
    op.kind = order_op_kind::payment_event;
    op.order_id = order;
    op.webhook_body = b;
    op.webhook_signature = signature;
    return ask<order_result>(order_op_atom_v, op);
  };
  EXPECT_EQ(event("o4", sign_webhook("guess", now_s, body), body).status, code::invalid);
  EXPECT_EQ(event("o4", sign_webhook("whsec", now_s - 301, body), body).status, code::invalid) << "stale";
  EXPECT_EQ(event("o4", sign_webhook("whsec", now_s, body), body + " ").status, code::invalid) << "altered";
  EXPECT_EQ(event("o5", sign_webhook("whsec", now_s, body), body).status, code::invalid) << "another order's";
  EXPECT_EQ(show("o4").order.state, order_state::captured);
  EXPECT_FALSE(show("o4").order.refunded);
  // A genuine event of a step already settled changes nothing either (old news).
  auto genuine = event("o4", sign_webhook("whsec", now_s, body), body);
  EXPECT_EQ(genuine.status, code::ok);
  EXPECT_EQ(genuine.order.state, order_state::captured);
}

// The crash-point test, in-process: the node dies after each of the saga's messages in
// turn; after the restart every order ends captured, with one authorization and one
// capture at the gateway, and its units sold once.
TEST_F(order_test, a_crash_at_every_step_resumes_to_one_capture_and_one_sale) {
  create("tee", 1000);
  create("mug", 1000);
  int64_t sold = 0, resumed = 0, unplaced = 0;
  for (size_t k = 1; k <= 60; ++k) {
    auto id = "crash-" + std::to_string(k);
    caf::scoped_actor self{*sys_};
    self->send(orders_, order_place_atom_v,
               order_saga::place(id, "ann", "tok_visa", {{"tee", 2, 1500}, {"mug", 1, 900}}, clock_->now_ms()));
    for (size_t i = 0; i < k && sched_->try_run_once(); ++i) {
    }
    crash();
    boot();
    auto n = ask<int64_t>(recover_atom_v);
    ASSERT_GE(n, 0);
    resumed += n;
    sched_->run();
    advance_ms(60'000);  // retries after backoff, if any
    auto o = show(id);
    if (o.status == code::unknown_order) {  // died before its record was written
      ++unplaced;
      continue;
    }
    ASSERT_EQ(o.order.state, order_state::captured) << id << ": " << o.order.last_error;
    EXPECT_EQ(authorizations(id), 1u) << id;
    EXPECT_EQ(gateway_->core().captures(id), 1u) << id;
    sold += 2;
    EXPECT_EQ(show_sku("tee").sold, sold) << id;
    EXPECT_EQ(show_sku("tee").active_holds, 0) << id;
  }
  EXPECT_GT(sold, 60) << "most crash points came after the order was placed";
  EXPECT_GT(resumed, 15) << "many crashes came in the middle of a saga (" << unplaced << " before its record)";
}

// `order list` on one node: a user's orders through their index (written with the first
// record, so it survives a crash), a state filter that reads a bounded number of orders
// per page and says where it stopped, and pages that neither skip nor repeat.
TEST_F(order_test, orders_list_by_user_and_state_in_pages_that_neither_skip_nor_repeat) {
  create("tee", 100);
  std::map<std::string, std::string> user_of;
  for (int i = 0; i < 30; ++i) {
    auto id = "o" + std::to_string(100 + i);
    auto user = i % 3 == 0 ? "bob" : "ann";
    user_of[id] = user;
    auto r = ask<order_result>(order_place_atom_v,
                               order_saga::place(id, user, i % 5 == 0 ? "tok_decline" : "tok_visa", {{"tee", 1, 1500}},
                                                 clock_->now_ms()));
    ASSERT_EQ(r.status, code::ok) << r.message;
  }
  sched_->run();
  crash();  // the index comes back from the log like the orders
  boot();
  auto all_pages = [&](order_list_query q, size_t scan_max) {
    std::vector<std::string> ids;
    for (int pages = 0; pages < 100; ++pages) {
      auto page = list_orders(*env_, q, scan_max);
      EXPECT_TRUE(page.error.empty()) << page.error;
      EXPECT_LE(page.orders.size(), q.limit);
      for (auto& o : page.orders) {
        if (!q.user.empty()) {
          EXPECT_EQ(o.user, q.user) << o.order_id;
        }
        if (!q.state.empty()) {
          EXPECT_EQ(to_string(o.state), q.state) << o.order_id;
        }
        ids.push_back(o.order_id);
      }
      if (page.next.empty()) return ids;
      EXPECT_GT(page.next, q.after) << "a page moves on";
      q.after = page.next;
    }
    ADD_FAILURE() << "paging never ended";
    return ids;
  };
  auto expect = [&](const std::string& user, order_state state, bool any_state) {
    std::vector<std::string> ids;
    for (auto& [id, u] : user_of) {
      auto o = show(id).order;
      if ((user.empty() || u == user) && (any_state || o.state == state)) ids.push_back(id);
    }
    return ids;
  };
  EXPECT_EQ(all_pages({"", "", "", 7}, 1000), expect("", {}, true));
  EXPECT_EQ(all_pages({"ann", "", "", 4}, 1000), expect("ann", {}, true));
  EXPECT_EQ(all_pages({"bob", "", "", 1000}, 1000).size(), 10u);
  EXPECT_TRUE(all_pages({"carl", "", "", 10}, 1000).empty());
  // A state filter with a tiny read budget: pages end early, none is lost.
  EXPECT_EQ(all_pages({"", "cancelled", "", 2}, 3), expect("", order_state::cancelled, false));
  EXPECT_EQ(all_pages({"ann", "captured", "", 3}, 4), expect("ann", order_state::captured, false));
  EXPECT_EQ(expect("", order_state::cancelled, false).size(), 6u) << "every fifth was declined";
  EXPECT_TRUE(all_pages({"", "active", "", 10}, 1000).empty()) << "every saga ended";
  // A user name that is a prefix of another lists only its own orders.
  ask<order_result>(order_place_atom_v, order_saga::place("o900", "annie", "tok_visa", {{"tee", 1, 1500}}, clock_->now_ms()));
  sched_->run();
  EXPECT_EQ(all_pages({"ann", "", "", 100}, 1000).size(), 20u);
  EXPECT_EQ(all_pages({"annie", "", "", 100}, 1000), std::vector<std::string>{"o900"});
  // Bad queries are typed by validate() (the RPC refuses them before reading).
  EXPECT_FALSE(validate(order_list_query{"", "paid", "", 10}).empty());
  EXPECT_FALSE(validate(order_list_query{std::string(300, 'u'), "", "", 10}).empty());
  EXPECT_FALSE(validate(order_list_query{"", "", "", order_list_limit_max + 1}).empty());
  EXPECT_TRUE(validate(order_list_query{"ann", "active", "o1", 10}).empty());
}

// Members' pages merged: past the point where the first member stopped, another member's
// orders may be missing, so the merged page ends there and goes on from it.
TEST(order_pages, merged_pages_end_where_the_first_member_stopped) {
  auto page = [](std::vector<std::string> ids, std::string next) {
    order_page p;
    for (auto& id : ids) {
      order_record o;
      o.order_id = id;
      p.orders.push_back(std::move(o));
    }
    p.next = std::move(next);
    return p;
  };
  auto ids = [](const order_page& p) {
      std::vector<std::string> out;
    for (auto& o : p.orders) out.push_back(o.order_id);
    return out;
  };
  // Node 2 read up to "c" without a match beyond: "d" of node 1 waits for the next page.
  auto m = merge_order_pages({page({"a", "d"}, ""), page({"b"}, "c")}, 10);
  EXPECT_EQ(ids(m), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(m.next, "c");
  // The limit cuts first.
  m = merge_order_pages({page({"a", "c", "e"}, "e"), page({"b", "d", "f"}, "f")}, 3);
  EXPECT_EQ(ids(m), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(m.next, "c");
  // Everyone done: no next.
  m = merge_order_pages({page({"a"}, ""), page({}, "")}, 3);
  EXPECT_EQ(ids(m), std::vector<std::string>{"a"});
  EXPECT_TRUE(m.next.empty());
  // Errors are kept.
  auto bad = page({}, "");
  bad.error = "storage: io";
  EXPECT_EQ(merge_order_pages({bad}, 3).error, "storage: io");
}

}  // namespace
}  // namespace holdfast::testing
