// `holdfast gateway`: the simulated payment gateway process (gateway/http_gateway.hpp),
// and `holdfast gateway ledger`: every charge it applied, so anyone can count captures
// per order from the gateway's side.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

#include "cli/commands.hpp"
#include "gateway/http_api.hpp"
#include "gateway/http_gateway.hpp"

namespace holdfast::cli {

namespace {

int print_ledger(const context& ctx, const std::string& url, const std::string& order) {
  std::string body, error;
  auto status = http_get(url + "/v1/ledger", ctx.timeout_ms, body, error);
  if (status == 0) return fail(ctx, "unavailable", error);
  ledger_view view;
  if (status != 200 || !parse_ledger_json(body, view))
    return fail(ctx, "unavailable", "the gateway answered HTTP " + std::to_string(status) + " without a ledger");
  size_t authorized = 0, declined = 0, captured = 0, voided = 0, refunded = 0;
  nlohmann::json rows = nlohmann::json::array();
  for (auto& e : view.entries) {
    if (!order.empty() && e.order_id != order) continue;
    if (e.op == payment_op::authorize) (e.declined ? declined : authorized)++;
    if (e.op == payment_op::capture) captured++;
    if (e.op == payment_op::void_auth) voided++;
    if (e.op == payment_op::refund) refunded++;
    if (ctx.as_json)
      rows.push_back({{"seq", e.seq}, {"op", to_string(e.op)}, {"order_id", e.order_id}, {"intent_id", e.intent_id},
                      {"amount", e.amount_cents}, {"declined", e.declined}, {"at_ms", e.at_ms}});
    else
      std::printf("%6llu  %-9s %-10s %-40s %-10s %10.2f\n", static_cast<unsigned long long>(e.seq),
                  to_string(e.op), e.declined ? "declined" : "", e.order_id.c_str(), e.intent_id.c_str(),
                  static_cast<double>(e.amount_cents) / 100);
  }
  size_t most = 0;
  if (order.empty()) most = view.max_captures();
  else if (auto it = view.captures.find(order); it != view.captures.end()) most = it->second;
  auto& s = view.stats;
  if (ctx.as_json) {
    std::cout << nlohmann::json{{"status", "ok"},
                                {"entries", rows},
                                {"authorized", authorized},
                                {"declined", declined},
                                {"captured", captured},
                                {"voided", voided},
                                {"refunded", refunded},
                                {"max_captures_per_order", most},
                                {"stats",
                                 {{"requests", s.requests}, {"replays", s.replays}, {"conflicts", s.conflicts},
                                  {"key_reuses", s.key_reuses}, {"lost_replies", s.lost_replies},
                                  {"events", s.events}, {"duplicate_events", s.duplicates},
                                  {"deliveries", s.deliveries}, {"retries", s.retries}, {"dropped", s.dropped}}}}
                   .dump()
              << "\n";
    return 0;
  }
  std::printf("%zu authorized, %zu declined, %zu captured, %zu voided, %zu refunded; most captures of one order: %zu\n"
              "%llu requests (%llu replayed by key, %llu conflicts, %llu keys reused, %llu replies lost); %llu "
              "webhook events (%llu duplicated), %llu deliveries, %llu retried, %llu dropped\n",
              authorized, declined, captured, voided, refunded, most, static_cast<unsigned long long>(s.requests),
              static_cast<unsigned long long>(s.replays), static_cast<unsigned long long>(s.conflicts),
              static_cast<unsigned long long>(s.key_reuses), static_cast<unsigned long long>(s.lost_replies),
              static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.duplicates),
              static_cast<unsigned long long>(s.deliveries), static_cast<unsigned long long>(s.retries),
              static_cast<unsigned long long>(s.dropped));
  return 0;
}

}  // namespace

void add_gateway_command(CLI::App& app, context& ctx) {
  auto o = std::make_shared<gateway_process_options>();
  auto* cmd = app.add_subcommand("gateway", "run the simulated payment gateway (HTTP + signed webhooks)");
  cmd->add_option("--listen", o->listen, "HOST:PORT to serve (port 0: any)")->capture_default_str();
  cmd->add_option("--webhook", o->webhooks,
                  "a node's webhook URL, http://HOST:PORT/webhooks/payments (repeat: deliveries take turns)");
  cmd->add_option("--secret", o->secret, "signs the webhooks (the nodes' --webhook-secret)")
    ->envname("HOLDFAST_WEBHOOK_SECRET");
  cmd->add_option("--seed", o->core.seed, "seed of every simulated fault")->capture_default_str();
  cmd->add_option("--decline-rate", o->core.decline_rate, "share of authorizations declined")
    ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--lost-reply-rate", o->core.lost_reply_rate,
                  "share of applied requests answered 500 (the charge happened; the caller must look it up)")
    ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--duplicate-webhook-rate", o->core.duplicate_webhook_rate, "share of events delivered twice")
    ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--reorder-webhook-rate", o->core.reorder_webhook_rate,
                  "share of events held back behind later ones")
    ->check(CLI::Range(0.0, 1.0));
  add_duration_ms(cmd, "--webhook-delay-max-ms", o->core.webhook_delay_max_ms, "events arrive up to this much late",
                  0, 3'600'000);
  add_duration_ms(cmd, "--latency-ms", o->latency_ms, "each request takes up to this long (seeded)", 0, 60'000);
  add_duration_ms(cmd, "--webhook-timeout-ms", o->webhook_timeout_ms, "a delivery not answered by then is retried",
                  1, 3'600'000);

  auto order = std::make_shared<std::string>();
  auto url = std::make_shared<std::string>("http://127.0.0.1:7500");
  auto* ledger = cmd->add_subcommand("ledger", "print every charge the gateway applied, and the counts");
  ledger->add_option("--gateway", *url, "the gateway, http://HOST:PORT")->capture_default_str();
  ledger->add_option("--order", *order, "only this order's entries");
  ledger->callback([&ctx, url, order] { ctx.action = [&ctx, url, order] { return print_ledger(ctx, *url, *order); }; });

  cmd->callback([&ctx, o, ledger] {
    if (ledger->parsed()) return;
    ctx.action = [o] { return run_gateway(*o); };
  });
}

}  // namespace holdfast::cli
