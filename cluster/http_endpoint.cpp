#include "cluster/http_endpoint.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>

#include "cluster/dashboard_html.hpp"
#include "gateway/http_api.hpp"
#include "gateway/webhook.hpp"

namespace holdfast {
namespace {

constexpr size_t seen_max = 100'000;

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

kj::Promise<void> answer(kj::HttpService::Response& response, const kj::HttpHeaderTable& table, uint status,
                         const nlohmann::json& body) {
  // Replaced, not thrown: a path of bytes that are not UTF-8 is echoed in a 404.
  return send_json(response, table, status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace

http_endpoint::http_endpoint(const kj::HttpHeaderTable& table, kj::HttpHeaderId signature_header,
                             std::string webhook_secret, route_orders route, request_limits limits,
                             kj::Timer& timer, int64_t body_timeout_ms, probes checks)
  : table_(table), signature_header_(signature_header), secret_(std::move(webhook_secret)), route_(std::move(route)),
    limits_(limits), timer_(timer), body_timeout_ms_(body_timeout_ms), probes_(std::move(checks)) {}

kj::Promise<void> http_endpoint::request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders& headers,
                                         kj::AsyncInputStream& body, Response& response) {
  std::string path = url.cStr();
  if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
  if (path == "/health" || path == "/ready" || path == "/metrics") {
    if (method != kj::HttpMethod::GET && method != kj::HttpMethod::HEAD)
      return answer(response, table_, 405, {{"error", "GET " + path}});
    return probe(path, response);
  }
  if (path == "/" || path == "/dashboard") {
    if (method != kj::HttpMethod::GET && method != kj::HttpMethod::HEAD)
      return answer(response, table_, 405, {{"error", "GET " + path}});
    return send_body(response, table_, 200, "text/html; charset=utf-8", dashboard_html);
  }
  if (path != "/webhooks/payments") return answer(response, table_, 404, {{"error", "no such endpoint: " + path}});
  if (method == kj::HttpMethod::GET) {
    auto& c = counters_;
    return answer(response, table_, 200,
                  {{"received", c.received}, {"applied", c.applied}, {"duplicates", c.duplicates},
                   {"refused", c.refused}, {"unknown_orders", c.unknown_orders}, {"retry_later", c.retry_later}});
  }
  if (method != kj::HttpMethod::POST) return answer(response, table_, 405, {{"error", "POST or GET"}});
  std::string signature;
  KJ_IF_MAYBE(s, headers.get(signature_header_)) { signature = s->cStr(); }
  // Too slow: answered 408; the server then closes the connection (the body is unread).
  auto slow = timer_.afterDelay(body_timeout_ms_ * kj::MILLISECONDS).then([this, &response]() -> kj::Promise<void> {
    counters_.received++;
    counters_.refused++;
    return answer(response, table_, 408,
                  {{"error", "the body did not arrive within " + std::to_string(body_timeout_ms_) + " ms"}});
  });
  return body.readAllText(webhook_body_bytes_max)
    .then([this, signature, &response](kj::String text) { return webhook(signature, text.cStr(), response); },
          [this, &response](kj::Exception&&) {
            counters_.received++;
            counters_.refused++;
            return answer(response, table_, 413,
                          {{"error", "a webhook body of at most " + std::to_string(webhook_body_bytes_max) + " bytes"}});
          })
    .exclusiveJoin(kj::mv(slow));
}

kj::Promise<void> http_endpoint::webhook(std::string signature, std::string body, Response& response) {
  counters_.received++;
  auto refuse = [&](const std::string& why) {
    counters_.refused++;
    spdlog::warn("webhook refused: {}", why);
    return answer(response, table_, 400, {{"error", why}});
  };
  if (secret_.empty()) return refuse("this node has no webhook secret (--webhook-secret)");
  auto check = verify_webhook(secret_, signature, body, now_s());
  if (check != signature_check::ok) return refuse(to_string(check));
  webhook_event e;
  std::string why;
  if (!parse_webhook_body(body, e, why)) return refuse(why);
  if (seen_.count(e.id)) {
    counters_.duplicates++;
    return answer(response, table_, 200, {{"event", e.id}, {"duplicate", true}});
  }
  order_op op;
  op.kind = order_op_kind::payment_event;
  op.order_id = e.intent.order_id;
  op.webhook_body = std::move(body);
  op.webhook_signature = std::move(signature);
  why = validate(op, limits_);
  if (!why.empty()) return refuse(why);
  std::vector<order_op> ops;
  ops.push_back(std::move(op));
  remember(e.id);  // a copy arriving while this one is passed on is a duplicate too
  return route_(std::move(ops)).then([this, id = e.id, &response](std::vector<order_result> rs) {
    auto r = rs.empty() ? order_result{code::outcome_unknown, "no answer", {}} : std::move(rs[0]);
    switch (r.status) {
      case code::ok:
      case code::wrong_state:
        counters_.applied++;
        return answer(response, table_, 200, {{"event", id}, {"order_state", to_string(r.order.state)}});
      case code::unknown_order:
        counters_.unknown_orders++;
        return answer(response, table_, 200, {{"event", id}, {"ignored", r.message}});
      case code::invalid:
        forget(id);
        counters_.refused++;
        return answer(response, table_, 400, {{"error", r.message}});
      default:
        forget(id);  // the retry must get through
        counters_.retry_later++;
        return answer(response, table_, 503, {{"error", r.message}});
    }
  });
}

kj::Promise<void> http_endpoint::probe(const std::string& path, Response& response) {
  if (path == "/health") return answer(response, table_, 200, {{"status", "serving"}});
  if (path == "/ready") {
    auto why = probes_.not_ready ? probes_.not_ready() : std::string();
    if (why.empty()) return answer(response, table_, 200, {{"ready", true}});
    return answer(response, table_, 503, {{"ready", false}, {"reason", why}});
  }
  if (!probes_.metrics) return answer(response, table_, 404, {{"error", "this node exports no metrics"}});
  return probes_.metrics().then([this, &response](std::string text) {
    return send_body(response, table_, 200, "text/plain; version=0.0.4; charset=utf-8", text);
  });
}

void http_endpoint::forget(const std::string& event_id) { seen_.erase(event_id); }

void http_endpoint::remember(const std::string& event_id) {
  if (!seen_.insert(event_id).second) return;
  seen_order_.push_back(event_id);
  if (seen_order_.size() > seen_max) {
    seen_.erase(seen_order_.front());
    seen_order_.pop_front();
  }
}

}  // namespace holdfast
