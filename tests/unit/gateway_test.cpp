// The simulated payment gateway: intents, idempotency keys, the ledger, webhook
// delivery with its faults, and webhook signatures. Deterministic: time is passed in,
// faults come from the seed.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "gateway/http_api.hpp"
#include "gateway/in_process.hpp"
#include "gateway/webhook.hpp"

namespace holdfast {
namespace {

payment_request authorize(const std::string& key, const std::string& order, int64_t amount,
                          const std::string& card = "tok_visa") {
  payment_request r;
  r.op = payment_op::authorize;
  r.idempotency_key = key;
  r.order_id = order;
  r.amount_cents = amount;
  r.card = card;
  return r;
}

payment_request on_intent(payment_op op, const std::string& key, const std::string& intent) {
  payment_request r;
  r.op = op;
  r.idempotency_key = key;
  r.intent_id = intent;
  return r;
}

payment_request lookup(const std::string& key) {
  payment_request r;
  r.op = payment_op::lookup;
  r.idempotency_key = key;
  return r;
}

using outcome = payment_reply::outcome;

TEST(gateway, an_intent_goes_authorize_capture_refund_and_each_step_is_in_the_ledger) {
  gateway g({});
  auto a = g.handle(authorize("o1-auth", "o1", 2500), 1000);
  ASSERT_EQ(a.result, outcome::ok) << a.error;
  EXPECT_EQ(a.intent.status, intent_status::authorized);
  EXPECT_EQ(a.intent.order_id, "o1");
  auto c = g.handle(on_intent(payment_op::capture, "o1-capture", a.intent.id), 1001);
  ASSERT_EQ(c.result, outcome::ok) << c.error;
  EXPECT_EQ(c.intent.status, intent_status::captured);
  // Void after capture is refused: a captured payment is refunded, not voided.
  auto v = g.handle(on_intent(payment_op::void_auth, "o1-void", a.intent.id), 1002);
  EXPECT_EQ(v.result, outcome::refused);
  EXPECT_NE(v.error.find("succeeded"), std::string::npos) << v.error;
  auto r = g.handle(on_intent(payment_op::refund, "o1-refund", a.intent.id), 1003);
  ASSERT_EQ(r.result, outcome::ok) << r.error;
  EXPECT_EQ(r.intent.status, intent_status::refunded);
  ASSERT_EQ(g.ledger().size(), 3u);
  EXPECT_EQ(g.ledger()[0].op, payment_op::authorize);
  EXPECT_EQ(g.ledger()[1].op, payment_op::capture);
  EXPECT_EQ(g.ledger()[2].op, payment_op::refund);
  EXPECT_EQ(g.captures("o1"), 1u);
  // A second capture of the order with a new key applies nothing.
  EXPECT_EQ(g.handle(on_intent(payment_op::capture, "o1-capture-2", a.intent.id), 1004).result, outcome::refused);
  EXPECT_EQ(g.captures("o1"), 1u);
}

// Found by the adversarial pass: a restarted gateway named its intents pi_1.. again, and
// capture/void/refund ignored the order they came for, so a node's refund of its (old)
// pi_1 refunded another customer's new pi_1. Now each run names its own ids, and an
// intent of another order is no intent for the caller (not shown to it either).
TEST(gateway, a_run_names_its_own_ids_and_an_intent_of_another_order_is_unknown_to_the_caller) {
  gateway_options first_run, second_run;
  first_run.run_id = "a1";
  second_run.run_id = "b2";
  gateway g1(first_run), g2(second_run);
  auto mine = g1.handle(authorize("o1-auth", "o1", 2500), 1000);
  auto theirs = g2.handle(authorize("o2-auth", "o2", 900), 1000);
  ASSERT_EQ(mine.result, outcome::ok);
  ASSERT_EQ(theirs.result, outcome::ok);
  EXPECT_EQ(mine.intent.id, "pi_a1_1");
  EXPECT_NE(mine.intent.id, theirs.intent.id);
  auto events = g1.due(5000);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].event.id.rfind("evt_a1_", 0), 0u) << events[0].event.id;

  auto capture = on_intent(payment_op::capture, "o1-capture", theirs.intent.id);
  capture.order_id = "o1";
  auto c = g2.handle(capture, 1001);
  EXPECT_EQ(c.result, outcome::refused);
  EXPECT_EQ(c.intent.status, intent_status::none);
  EXPECT_EQ(c.intent.id, theirs.intent.id);
  EXPECT_EQ(c.intent.order_id, "o1") << "the other order's intent is not shown";
  EXPECT_EQ(c.intent.amount_cents, 0);
  for (auto op : {payment_op::void_auth, payment_op::refund}) {
    auto r = on_intent(op, std::string("o1-") + to_string(op), theirs.intent.id);
    r.order_id = "o1";
    EXPECT_EQ(g2.handle(r, 1002).result, outcome::refused);
  }
  EXPECT_EQ(g2.captures("o2"), 0u);
  EXPECT_EQ(g2.intent(theirs.intent.id)->status, intent_status::authorized) << "the other order's payment is untouched";
}

TEST(gateway, idempotency_keys_replay_refuse_reuse_and_conflict) {
  gateway g({});
  auto first = g.handle(authorize("k", "o1", 100), 0);
  ASSERT_EQ(first.result, outcome::ok);
  // Same key, same request: the stored first answer, nothing applied again.
  auto again = g.handle(authorize("k", "o1", 100), 10);
  EXPECT_EQ(again.result, outcome::ok);
  EXPECT_EQ(again.intent.id, first.intent.id);
  EXPECT_EQ(g.ledger().size(), 1u);
  EXPECT_EQ(g.stats().replays, 1u);
  // Same key, another request: refused.
  auto other = g.handle(authorize("k", "o1", 101), 20);
  EXPECT_EQ(other.result, outcome::refused);
  EXPECT_NE(other.error.find("another request"), std::string::npos) << other.error;
  // A key whose request is still being handled (the HTTP server's latency): conflict.
  auto begun = g.begin(authorize("slow", "o2", 100), 30);
  ASSERT_EQ(begun.verdict, gateway::admission::proceed);
  auto concurrent = g.begin(authorize("slow", "o2", 100), 31);
  EXPECT_EQ(concurrent.verdict, gateway::admission::in_progress);
  EXPECT_EQ(g.handle(lookup("slow"), 31).result, outcome::refused);
  g.execute(authorize("slow", "o2", 100), 40);
  EXPECT_EQ(g.begin(authorize("slow", "o2", 100), 41).verdict, gateway::admission::replay);
  // Keys are kept 24 h, then forgotten (a new request under the key is new).
  EXPECT_EQ(g.handle(authorize("k", "o1", 100), 24LL * 3600 * 1000 - 1).intent.id, first.intent.id);
  g.expire_keys(24LL * 3600 * 1000 + 100);
  EXPECT_EQ(g.handle(lookup("k"), 24LL * 3600 * 1000 + 100).result, outcome::refused);
  // Bad input.
  EXPECT_EQ(g.handle(authorize("", "o3", 100), 50).result, outcome::refused);
  EXPECT_EQ(g.handle(authorize(std::string(256, 'k'), "o3", 100), 50).result, outcome::refused);
  EXPECT_EQ(g.handle(authorize("neg", "o3", -5), 50).result, outcome::refused);
  EXPECT_EQ(g.handle(on_intent(payment_op::capture, "nope", "pi_404"), 50).result, outcome::refused);
}

// An unknown outcome is resolved by asking by key, never by charging again.
TEST(gateway, a_lost_reply_is_resolved_by_looking_up_its_key) {
  gateway_options o;
  o.lost_reply_rate = 1.0;
  o.seed = 7;
  struct fixed_clock : wall_clock {
    int64_t now_ms() const override { return 5'000; }
  };
  in_process_gateway g(o, std::make_shared<fixed_clock>(), "whsec");
  payment_reply heard;
  g.call(authorize("o9-auth", "o9", 700), [&](payment_reply r) { heard = std::move(r); });
  EXPECT_EQ(heard.result, outcome::unknown);
  EXPECT_EQ(g.core().ledger().size(), 1u) << "applied although the reply was lost";
  payment_reply found;
  g.call(lookup("o9-auth"), [&](payment_reply r) { found = std::move(r); });
  ASSERT_EQ(found.result, outcome::ok) << found.error;
  EXPECT_EQ(found.intent.status, intent_status::authorized);
  // A retry with the same key replays; nothing is authorized twice.
  g.call(authorize("o9-auth", "o9", 700), [](payment_reply) {});
  EXPECT_EQ(g.core().ledger().size(), 1u);
  // A key never used: refused, so the caller knows it may send the request.
  g.call(lookup("never"), [&](payment_reply r) { found = std::move(r); });
  EXPECT_EQ(found.result, outcome::refused);
}

TEST(gateway, declines_come_from_the_card_and_from_the_seeded_rate) {
  gateway_options o;
  o.decline_rate = 0.3;
  o.seed = 42;
  gateway g(o);
  EXPECT_EQ(g.handle(authorize("d", "o", 100, "tok_decline"), 0).result, outcome::declined);
  int declined = 0;
  for (int i = 0; i < 1000; ++i)
    declined += g.handle(authorize("k" + std::to_string(i), "o" + std::to_string(i), 100), 0).result == outcome::declined;
  EXPECT_GT(declined, 230);
  EXPECT_LT(declined, 370);
  gateway same(o);
  same.handle(authorize("d", "o", 100, "tok_decline"), 0);
  int again = 0;
  for (int i = 0; i < 1000; ++i)
    again += same.handle(authorize("k" + std::to_string(i), "o" + std::to_string(i), 100), 0).result == outcome::declined;
  EXPECT_EQ(again, declined) << "the same seed declines the same payments";
}

// Every event is delivered at least once, retried after failures; with the faults on,
// some twice and some after later ones: a receiver deduplicates by event id.
TEST(gateway, webhooks_arrive_at_least_once_late_duplicated_and_reordered) {
  gateway_options o;
  o.seed = 3;
  o.duplicate_webhook_rate = 0.5;
  o.reorder_webhook_rate = 0.5;
  o.webhook_delay_max_ms = 200;
  gateway g(o);
  for (int i = 0; i < 50; ++i) {
    auto a = g.handle(authorize("a" + std::to_string(i), "o" + std::to_string(i), 100), i);
    g.handle(on_intent(payment_op::capture, "c" + std::to_string(i), a.intent.id), i);
  }
  EXPECT_EQ(g.stats().events, 100u);
  std::map<std::string, int> seen;
  std::vector<std::string> order;
  bool failed_once = false;
  for (int64_t now = 0; now < 120'000 && (g.next_due_ms() != 0); now += 10) {
    for (auto& d : g.due(now)) {
      if (!failed_once && d.event.id == "evt_2") {  // the receiver was down once
        failed_once = true;
        g.failed(d, now);
        continue;
      }
      if (seen[d.event.id]++ == 0) order.push_back(d.event.id);
    }
  }
  EXPECT_EQ(seen.size(), 100u) << "every event arrived";
  EXPECT_GT(g.stats().duplicates, 10u);
  int twice = 0;
  for (auto& [id, n] : seen) twice += n > 1;
  EXPECT_EQ(static_cast<uint64_t>(twice), g.stats().duplicates);
  EXPECT_EQ(g.stats().retries, 1u);
  bool reordered = false;
  for (size_t i = 1; i < order.size(); ++i)
    if (std::stoi(order[i].substr(4)) < std::stoi(order[i - 1].substr(4))) reordered = true;
  EXPECT_TRUE(reordered);
}

TEST(webhook, signatures_accept_the_genuine_and_refuse_forged_altered_and_replayed_events) {
  webhook_event e;
  e.id = "evt_1";
  e.type = "payment_intent.succeeded";
  e.created_ms = 1'700'000'000'000;
  e.intent = {"pi_1", "order-1", 2500, intent_status::captured, {}};
  auto body = webhook_body(e);
  const int64_t t = 1'700'000'000;
  auto header = sign_webhook("whsec_test", t, body);
  EXPECT_EQ(verify_webhook("whsec_test", header, body, t + 10), signature_check::ok);
  webhook_event back;
  std::string why;
  ASSERT_TRUE(parse_webhook_body(body, back, why)) << why;
  EXPECT_EQ(back.id, "evt_1");
  EXPECT_EQ(back.intent.status, intent_status::captured);
  EXPECT_EQ(back.intent.order_id, "order-1");
  EXPECT_EQ(back.intent.amount_cents, 2500);
  // Forged (another secret), altered body, replayed past the tolerance, from the future.
  EXPECT_EQ(verify_webhook("whsec_test", sign_webhook("other", t, body), body, t), signature_check::mismatch);
  auto altered = body;
  altered.replace(altered.find("2500"), 4, "9999");
  EXPECT_EQ(verify_webhook("whsec_test", header, altered, t), signature_check::mismatch);
  EXPECT_EQ(verify_webhook("whsec_test", header, body, t + 301), signature_check::too_old);
  EXPECT_EQ(verify_webhook("whsec_test", header, body, t - 301), signature_check::too_new);
  EXPECT_EQ(verify_webhook("whsec_test", "", body, t), signature_check::missing);
  for (auto bad : {"garbage", "t=,v1=ab", "t=12x,v1=ab", "v1=abc", "t=1700000000", "t=99999999999999,v1=00"})
    EXPECT_EQ(verify_webhook("whsec_test", bad, body, t), signature_check::malformed) << bad;
  // A second v1 (a secret being rolled) is accepted when either matches.
  auto rolled = sign_webhook("whsec_test", t, body) + ",v1=" + std::string(64, '0');
  EXPECT_EQ(verify_webhook("whsec_test", rolled, body, t), signature_check::ok);
  for (auto junk : {"", "[]", "{}", "{\"id\":\"evt\",\"type\":\"x\"}", "{\"id\":5}"})
    EXPECT_FALSE(parse_webhook_body(junk, back, why)) << junk;
}

}  // namespace
}  // namespace holdfast

namespace holdfast {
namespace {

// The HTTP API both ends speak: every request survives the trip, hostile paths and bodies
// are refused, and only the answers the API defines are believed (anything else: unknown).
TEST(gateway_http, requests_round_trip_and_odd_answers_are_unknown) {
  std::vector<payment_request> requests{
    {payment_op::authorize, "o-1-authorize", "o-1", "", 1200, "tok_visa"},
    {payment_op::capture, "o-1-capture", "o-1", "pi_7", 0, ""},
    {payment_op::void_auth, "o-1-void", "o-1", "pi/../7 x", 0, ""},
    {payment_op::refund, "o-1-refund", "o-1", "pi_7", 0, ""},
    {payment_op::lookup, "o-1 authorize/?&", "", "", 0, ""},
  };
  for (auto& r : requests) {
    auto call = to_http(r);
    payment_request back;
    std::string why;
    ASSERT_TRUE(from_http(call.method, call.path, call.body, r.idempotency_key, back, why)) << call.path << ": " << why;
    EXPECT_EQ(back.op, r.op) << call.path;
    EXPECT_EQ(back.idempotency_key, r.idempotency_key);
    EXPECT_EQ(back.intent_id, r.intent_id) << call.path;
    if (r.op != payment_op::lookup) {
      EXPECT_EQ(back.order_id, r.order_id);
    }
    EXPECT_EQ(back.amount_cents, r.amount_cents);
    EXPECT_EQ(back.card, r.card);
  }
  payment_request out;
  std::string why;
  EXPECT_FALSE(from_http("POST", "/v1/payment_intents", "[1]", "k", out, why));
  EXPECT_FALSE(from_http("POST", "/v1/payment_intents", R"({"amount":"12"})", "k", out, why));
  EXPECT_FALSE(from_http("POST", "/v1/payment_intents/pi_1/explode", "{}", "k", out, why));
  EXPECT_FALSE(from_http("DELETE", "/v1/payment_intents/pi_1", "{}", "k", out, why));
  EXPECT_FALSE(from_http("GET", "/v1/idempotency_keys/%zz", "", "", out, why));

  payment_reply ok;
  ok.intent = payment_intent{"pi_1", "o-1", 1200, intent_status::authorized, ""};
  auto back = reply_from_http(200, reply_json(ok));
  EXPECT_EQ(back.result, payment_reply::outcome::ok);
  EXPECT_EQ(back.intent.id, "pi_1");
  EXPECT_EQ(back.intent.status, intent_status::authorized);
  EXPECT_EQ(back.intent.order_id, "o-1");
  EXPECT_EQ(reply_from_http(500, reply_json(ok)).result, payment_reply::outcome::unknown);
  EXPECT_EQ(reply_from_http(200, "<html>").result, payment_reply::outcome::unknown);
  EXPECT_EQ(reply_from_http(402, reply_json(ok)).result, payment_reply::outcome::unknown) << "status and outcome disagree";
  payment_reply refused;
  refused.result = payment_reply::outcome::refused;
  refused.error = "in progress";
  EXPECT_EQ(http_status(refused, gateway::admission::in_progress), 409);
  EXPECT_EQ(reply_from_http(409, reply_json(refused)).result, payment_reply::outcome::refused);

  // Found by the adversarial pass: "no such intent" (status none) read as malformed, so
  // an order whose gateway forgot its payment looped in capture for ever. A refusal may
  // say so; an answer that claims success with it is still unknown.
  payment_reply forgotten;
  forgotten.result = payment_reply::outcome::refused;
  forgotten.error = "no payment intent 'pi_9'";
  forgotten.intent = payment_intent{"pi_9", "o-1", 0, intent_status::none, ""};
  auto said = reply_from_http(400, reply_json(forgotten));
  EXPECT_EQ(said.result, payment_reply::outcome::refused);
  EXPECT_EQ(said.intent.id, "pi_9");
  EXPECT_EQ(said.intent.status, intent_status::none);
  forgotten.result = payment_reply::outcome::ok;
  EXPECT_EQ(reply_from_http(200, reply_json(forgotten)).result, payment_reply::outcome::unknown);
  // And never in an event.
  webhook_event e;
  e.id = "evt_1";
  e.type = "payment_intent.succeeded";
  e.intent = forgotten.intent;
  webhook_event parsed;
  EXPECT_FALSE(parse_webhook_body(webhook_body(e), parsed, why));
}

}  // namespace
}  // namespace holdfast
