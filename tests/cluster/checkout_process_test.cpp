// Checkout with the payment gateway as its own process: three `holdfast node` processes
// on loopback (mutual TLS) and `holdfast gateway`, its webhooks signed and POSTed to the
// nodes' HTTP endpoints. The gateway's ledger is the witness: no order is ever captured
// twice, whatever the gateway's faults and wherever a node dies.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "protocol/order_wire.hpp"
#include "gateway/http_api.hpp"
#include "gateway/webhook.hpp"
#include "harness/gateway_process.hpp"
#include "cluster_fixture.hpp"

namespace holdfast {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

const std::string secret = "whsec-test";

class checkout_test : public cluster_test {
protected:
  // The cluster's nodes are made (not started), the gateway starts with their webhook
  // URLs, then the nodes start with its URL and `node_args`.
  void start_with_gateway(std::vector<std::string> gateway_args, std::vector<std::string> node_args = {}) {
    nodes_ = std::make_unique<local_cluster>(HOLDFAST_BINARY, dir_ + "/c", 3, std::vector<std::string>{}, false);
    std::vector<std::string> args{"--secret", secret};
    for (auto& url : nodes_->webhook_urls()) args.insert(args.end(), {"--webhook", url});
    args.insert(args.end(), gateway_args.begin(), gateway_args.end());
    gateway_args_ = args;
    gateway_ = std::make_unique<gateway_process>(HOLDFAST_BINARY, dir_ + "/gateway.log", args);
    base_args_ = {"--gateway", gateway_->url(), "--webhook-secret", secret, "--payment-timeout-ms", "2000"};
    auto all = base_args_;
    all.insert(all.end(), node_args.begin(), node_args.end());
    nodes_->set_args(all);
    for (auto id : nodes_->ids()) nodes_->start(id);
    ASSERT_TRUE(nodes_->wait_links_up(20s)) << log(1);
  }
  command_result cli(uint32_t via, std::vector<std::string> args) {
    std::vector<std::string> argv{HOLDFAST_BINARY, "--json", "--node", nodes_->address(via)};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv);
  }
  // The order as a member shows it once its saga is done; empty JSON if it never is.
  json finished(const std::string& order, uint32_t via, std::chrono::seconds limit = 60s) {
    json shown;
    wait_until(
      [&] {
        shown = json::parse(cli(via, {"order", "show", order}).output, nullptr, false);
        return !shown.is_discarded() && shown.value("step", "") == "done";
      },
      limit);
    return shown.is_discarded() || shown.value("step", "") != "done" ? json{} : shown;
  }
  ledger_view ledger() {
    ledger_view v;
    std::string error;
    EXPECT_TRUE(gateway_->ledger(v, error)) << error;
    return v;
  }
  std::string gateway_log() {
    std::ifstream in(dir_ + "/gateway.log");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  // The gateway stopped and started again where the nodes expect it: it remembers nothing.
  void restart_gateway() {
    auto address = gateway_->url().substr(std::string("http://").size());
    gateway_->stop();
    auto args = gateway_args_;
    args.insert(args.end(), {"--listen", address});
    gateway_ = std::make_unique<gateway_process>(HOLDFAST_BINARY, dir_ + "/gateway-2.log", args);
  }
  std::unique_ptr<gateway_process> gateway_;
  std::vector<std::string> gateway_args_, base_args_;
};

// On a thread of its own: the test thread may run a KJ loop of a client.
int post_webhook(const std::string& url, const std::string& signature, const std::string& body) {
  int status = 0;
  std::thread([&] {
    std::string answer, error;
    std::vector<std::pair<std::string, std::string>> headers;
    if (!signature.empty()) headers.emplace_back(webhook_signature_header, signature);
    status = http_post(url, headers, body, 10'000, answer, error);
  }).join();
  return status;
}

json get_json(const std::string& url) {
  json out;
  std::thread([&] {
    std::string body, error;
    if (http_get(url, 10'000, body, error) == 200) out = json::parse(body, nullptr, false);
  }).join();
  return out;
}

TEST_F(checkout_test, the_gateway_process_charges_each_order_once_through_lost_replies_and_unruly_webhooks) {
  start_with_gateway({"--seed", "7", "--decline-rate", "0.15", "--lost-reply-rate", "0.3", "--duplicate-webhook-rate",
                      "0.5", "--reorder-webhook-rate", "0.3", "--webhook-delay-max-ms", "300", "--latency-ms", "20"});
  ASSERT_EQ(cli(1, {"sku", "create", "hot", "--stock", "12", "--price", "900", "--limit-per-user", "2"}).status, 0);
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(cli(2, {"sku", "create", "tail-" + std::to_string(i), "--stock", "100", "--price", "250"}).status, 0);
  const int users = 18;
  std::vector<std::thread> shoppers;
  std::vector<std::atomic<bool>> placed(users);
  std::atomic<int> refused_sold_out{0};
  for (int u = 0; u < users; ++u)
    shoppers.emplace_back([&, u] {
      auto user = "u" + std::to_string(u);
      auto via = static_cast<uint32_t>(u % 3 + 1);
      cli(via, {"cart", "add", user, "hot", std::to_string(1 + u % 2)});
      cli(via, {"cart", "add", user, "tail-" + std::to_string(u % 4), "1"});
      auto r = cli(via % 3 + 1, {"checkout", user, "--card", "tok_visa", "--key", "k-" + user});
      auto j = json::parse(r.output, nullptr, false);
      // Placed, or refused with the reason (sold out lines): then there is no order.
      if (!j.is_discarded() && j.contains("order")) placed[u] = true;
      else if (!j.is_discarded() && j.value("status", "") == "changed") refused_sold_out++;
      else ADD_FAILURE() << user << ": " << r.output;
    });
  for (auto& t : shoppers) t.join();
  EXPECT_GT(refused_sold_out.load(), 0) << "more wanted than there is: some checkouts see sold_out";

  int64_t hot_sold = 0;
  std::map<std::string, std::string> states;
  for (int u = 0; u < users; ++u) {
    if (!placed[u]) continue;
    auto user = "u" + std::to_string(u);
    auto order = checkout_order_id(user, "k-" + user);
    auto shown = finished(order, static_cast<uint32_t>(u % 3 + 1));
    ASSERT_FALSE(shown.empty()) << order << " never ended: " << cli(1, {"order", "show", order}).output << "\n"
                                << log(1) << log(2) << log(3) << gateway_log();
    states[order] = shown["state"];
    if (shown["state"] == "captured")
      for (auto& l : shown["lines"])
        if (l["sku"] == "hot") hot_sold += l["qty"].get<int64_t>();
  }
  auto v = ledger();
  EXPECT_LE(v.max_captures(), 1u) << "an order captured twice";
  for (auto& [order, state] : states) {
    auto captures = v.captures.count(order) ? v.captures.at(order) : 0;
    EXPECT_EQ(captures, state == "captured" ? 1u : 0u) << order << " is " << state;
  }
  EXPECT_GT(v.stats.lost_replies, 0u) << "the faults were exercised";
  EXPECT_GT(v.stats.duplicates, 0u);
  auto hot = on(1, [](blocking_client& c) { return c.query_sku("hot"); });
  EXPECT_EQ(hot.sku.sold, hot_sold) << "captured orders and sold units agree";
  EXPECT_EQ(hot.sku.reserved, 0);
  EXPECT_LE(hot.sku.sold, 12);

  // The order event stream of the whole cluster: every order's transitions, its last one
  // its end; resumable from the cursor it printed.
  auto streamed = cli(1, {"order", "events", "--limit", "7"});
  ASSERT_EQ(streamed.status, 0) << streamed.output;
  std::map<std::string, json> last_event;
  std::set<std::pair<int, uint64_t>> offsets;
  std::string next;
  std::istringstream lines(streamed.output);
  for (std::string line; std::getline(lines, line);) {
    auto j = json::parse(line);
    if (j.contains("next")) {
      next = j["next"];
      continue;
    }
    EXPECT_TRUE(offsets.insert({j["node"].get<int>(), j["seq"].get<uint64_t>()}).second) << line;
    if (!last_event.count(j["order"])) {
      EXPECT_EQ(j["state"], "placed") << "an order's first event: " << line;
    }
    auto& last = last_event[j["order"]];
    if (!last.is_null()) {
      EXPECT_GT(j["version"].get<uint64_t>(), last["version"].get<uint64_t>()) << line;
    }
    last = j;
  }
  for (auto& [order, state] : states) {
    ASSERT_TRUE(last_event.count(order)) << order << " has no events";
    EXPECT_EQ(last_event[order]["state"], state) << order;
    EXPECT_EQ(last_event[order]["step"], "done") << order;
  }
  auto resumed = cli(2, {"order", "events", "--from", next});
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(json::parse(resumed.output)["next"], next) << "nothing new since";

  // Webhooks were taken (eventually: they come late and are retried), none refused.
  uint64_t applied = 0;
  for (auto& url : nodes_->webhook_urls()) {
    auto j = get_json(url);
    ASSERT_TRUE(j.is_object()) << url;
    EXPECT_EQ(j["refused"], 0) << j.dump();
    applied += j["applied"].get<uint64_t>() + j["duplicates"].get<uint64_t>();
  }
  EXPECT_GT(applied, 0u);

  // A forged or replayed event changes nothing and the node answers 400.
  auto victim = states.begin()->first;
  webhook_event forged;
  forged.id = "evt_forged";
  forged.type = "charge.refunded";
  forged.intent = payment_intent{"pi_1", victim, 100, intent_status::refunded, ""};
  auto body = webhook_body(forged);
  auto now_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto url = nodes_->webhook_urls()[0];
  EXPECT_EQ(post_webhook(url, sign_webhook("not-the-secret", now_s, body), body), 400);
  EXPECT_EQ(post_webhook(url, sign_webhook(secret, now_s - 3600, body), body), 400) << "older than the tolerance";
  EXPECT_EQ(post_webhook(url, "", body), 400);
  auto signed_body = sign_webhook(secret, now_s, body);
  EXPECT_EQ(post_webhook(url, signed_body, body + " "), 400) << "altered after signing";
  auto after = json::parse(cli(1, {"order", "show", victim}).output);
  EXPECT_EQ(after["state"], states[victim]);

  // `order list` merges every member's orders in id order: small pages neither skip nor
  // repeat, a user's and a state's orders are theirs alone, bad filters are typed.
  auto listed = cli(2, {"order", "list", "--limit", "3", "--all"});
  ASSERT_EQ(listed.status, 0) << listed.output;
  std::vector<std::string> ids;
  auto pages = json::parse(listed.output);
  for (auto& o : pages["orders"]) {
    ids.push_back(o["order"]);
    EXPECT_EQ(o["state"], states[o["order"]]) << o.dump();
  }
  std::vector<std::string> want;
  for (auto& [order, state] : states) want.push_back(order);
  EXPECT_EQ(ids, want) << listed.output;
  size_t captured = 0;
  for (auto& [order, state] : states) captured += state == "captured";
  auto by_state = json::parse(cli(3, {"order", "list", "--state", "captured", "--all"}).output);
  EXPECT_EQ(by_state["orders"].size(), captured) << by_state.dump();
  for (int u = 0; u < users; ++u) {
    if (!placed[u]) continue;
    auto user = "u" + std::to_string(u);
    auto mine = json::parse(cli(1, {"order", "list", "--user", user}).output);
    ASSERT_EQ(mine["orders"].size(), 1u) << user << ": " << mine.dump();
    EXPECT_EQ(mine["orders"][0]["order"], checkout_order_id(user, "k-" + user));
    break;
  }
  auto bad = cli(1, {"order", "list", "--state", "paid"});
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("invalid"), std::string::npos) << bad.output;
  // A member down: the list fails rather than skip its orders, unless --partial.
  nodes_->kill9(3);
  auto without = cli(1, {"order", "list", "--all"});
  EXPECT_EQ(without.status, 2) << without.output;
  EXPECT_NE(without.output.find("unavailable"), std::string::npos) << without.output;
  auto partial = cli(1, {"order", "list", "--all", "--partial"});
  ASSERT_EQ(partial.status, 0) << partial.output;
  auto j = json::parse(partial.output);
  EXPECT_LE(j["orders"].size(), states.size()) << "what the others have";
  EXPECT_TRUE(j.contains("partial")) << partial.output;
  // So does `order events`: a run that skipped a member's events is not "everything so
  // far" (its cursor for that member stays where it was).
  auto events_without = cli(1, {"order", "events", "--limit", "1000"});
  EXPECT_EQ(events_without.status, 2) << events_without.output;
  EXPECT_NE(events_without.output.find("unavailable"), std::string::npos) << events_without.output;
  auto events_partial = cli(1, {"order", "events", "--limit", "1000", "--partial"});
  EXPECT_EQ(events_partial.status, 0) << events_partial.output;
  EXPECT_NE(events_partial.output.find("\"partial\""), std::string::npos) << events_partial.output;
}

// A test-only crash point kills the order's owner at each saga step; restarted (without
// it), the node resumes the order to an end: one capture at most (the gateway's ledger),
// stock consistent with the order's end, nothing held.
class crash_at_step : public checkout_test, public ::testing::WithParamInterface<const char*> {};

TEST_P(crash_at_step, the_owner_dies_and_the_order_still_ends_with_at_most_one_capture) {
  std::string step = GetParam();
  start_with_gateway({"--seed", "3", "--latency-ms", "5"}, {"--crash-at", step});
  placement p(nodes_->ids());
  std::string user = "crash-user", key = "k1";
  auto order = checkout_order_id(user, key);
  auto owner = p.owner(order);
  auto other = owner % 3 + 1;
  std::vector<std::string> skus;
  for (int i = 0; skus.size() < 2; ++i) {
    auto name = "c-" + std::to_string(i);
    if (skus.empty() || p.owner(name) != p.owner(skus[0])) skus.push_back(name);
  }
  for (auto& s : skus) ASSERT_EQ(cli(other, {"sku", "create", s, "--stock", "10", "--price", "400"}).status, 0);
  ASSERT_EQ(cli(other, {"cart", "add", user, skus[0], "2"}).status, 0);
  ASSERT_EQ(cli(other, {"cart", "add", user, skus[1], "1"}).status, 0);
  cli(other, {"checkout", user, "--card", "tok_visa", "--key", key});  // its answer may be lost with the owner
  auto pid = nodes_->process(owner)->pid();
  ASSERT_TRUE(wait_until([&] { return process_gone(pid); }, 30s)) << "the crash point was never reached\n" << log(owner);
  nodes_->kill9(owner);  // reaps it
  EXPECT_NE(log(owner).find("--crash-at " + step), std::string::npos);
  nodes_->set_args(base_args_);
  nodes_->start(owner);
  ASSERT_TRUE(nodes_->wait_links_up(20s));
  auto shown = finished(order, other);
  ASSERT_FALSE(shown.empty()) << order << " never ended\n" << log(owner) << gateway_log();
  auto v = ledger();
  auto captures = v.captures.count(order) ? v.captures.at(order) : 0;
  EXPECT_LE(captures, 1u);
  bool captured = shown["state"] == "captured";
  EXPECT_TRUE(captured || shown["state"] == "cancelled") << shown.dump();
  EXPECT_EQ(captures, captured ? 1u : 0u) << shown.dump();
  // Promise 4 in the other direction: after any crash the saga completes, it is not
  // abandoned (a crash at any step resumes forward).
  EXPECT_TRUE(captured) << shown.dump();
  for (size_t i = 0; i < skus.size(); ++i) {
    auto s = on(other, [&](blocking_client& c) { return c.query_sku(skus[i]); });
    EXPECT_EQ(s.sku.reserved, 0) << skus[i];
    EXPECT_EQ(s.sku.sold, captured ? (i == 0 ? 2 : 1) : 0) << skus[i];
    EXPECT_EQ(s.sku.available(), 10 - s.sku.sold) << skus[i];
  }
}

INSTANTIATE_TEST_SUITE_P(steps, crash_at_step,
                         ::testing::Values("reserve", "reserve:answered", "authorize", "authorize:answered",
                                           "confirm", "confirm:answered", "capture", "capture:answered"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           for (auto& c : name)
                             if (c == ':') c = '_';
                           return name;
                         });

// Found by the adversarial pass: a restarted gateway named its intents pi_1.. again, so
// a refund for an order paid before the restart refunded another customer's payment made
// after it. Now each gateway run names its own intents, an intent answers only for its
// order, and a payment the gateway does not know is refunded as nothing, said.
TEST_F(checkout_test, a_restarted_gateway_never_acts_on_another_customers_payment) {
  start_with_gateway({});
  ASSERT_EQ(cli(1, {"sku", "create", "tee", "--stock", "10", "--price", "500"}).status, 0);
  auto buy = [&](const std::string& user, int qty) {
    EXPECT_EQ(cli(2, {"cart", "add", user, "tee", std::to_string(qty)}).status, 0);
    auto r = cli(3, {"checkout", user, "--card", "tok_visa", "--key", "k-" + user});
    EXPECT_EQ(r.status, 0) << r.output;
    auto order = checkout_order_id(user, "k-" + user);
    auto shown = finished(order, 1);
    EXPECT_EQ(shown.value("state", ""), "captured") << shown.dump() << cli(1, {"order", "show", order}).output;
    return shown;
  };
  auto before = buy("ann", 2);
  restart_gateway();
  auto after = buy("bob", 3);
  ASSERT_FALSE(before.empty());
  ASSERT_FALSE(after.empty());
  EXPECT_NE(before["intent"], after["intent"]) << "a restarted gateway reused an intent id";

  auto ann = before["order"].get<std::string>();
  ASSERT_EQ(cli(1, {"order", "fail-shipping", ann, "--reason", "lost"}).status, 0);
  // Nothing could be refunded (the gateway does not know the payment): ended, and said.
  auto refunded = finished(ann, 2);
  EXPECT_EQ(refunded.value("state", ""), "cancelled") << refunded.dump();
  EXPECT_NE(refunded.value("reason", "").find("does not know payment"), std::string::npos) << refunded.dump();
  auto v = ledger();
  for (auto& e : v.entries)
    EXPECT_NE(e.op, payment_op::refund) << "refunded " << e.intent_id << " of order " << e.order_id;
  EXPECT_EQ(v.captures[after["order"].get<std::string>()], 1u);
  auto tee = on(1, [](blocking_client& c) { return c.query_sku("tee"); });
  EXPECT_EQ(tee.sku.sold, 3) << "ann's units came back, bob's stay sold";
  EXPECT_EQ(tee.sku.reserved, 0);
}

}  // namespace
}  // namespace holdfast
