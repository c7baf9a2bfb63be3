#include "gateway/http_api.hpp"

#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/encoding.h>
#include <nlohmann/json.hpp>

#include "gateway/webhook.hpp"

namespace holdfast {
namespace {

using json = nlohmann::json;

std::string encode(const std::string& s) {
  return kj::encodeUriComponent(kj::StringPtr(s.c_str(), s.size())).cStr();
}

bool decode(const std::string& s, std::string& out) {
  auto d = kj::decodeUriComponent(kj::StringPtr(s.c_str(), s.size()));
  if (d.hadErrors) return false;
  out.assign(d.begin(), d.size());
  return true;
}

payment_reply unknown(std::string why) {
  payment_reply r;
  r.result = payment_reply::outcome::unknown;
  r.error = std::move(why);
  return r;
}

}  // namespace

http_call to_http(const payment_request& r) {
  http_call c;
  c.method = "POST";
  json body{{"order_id", r.order_id}};
  auto intent = "/v1/payment_intents/" + encode(r.intent_id);
  switch (r.op) {
    case payment_op::authorize:
      c.path = "/v1/payment_intents";
      body["amount"] = r.amount_cents;
      body["card"] = r.card;
      break;
    case payment_op::capture: c.path = intent + "/capture"; break;
    case payment_op::void_auth: c.path = intent + "/cancel"; break;
    case payment_op::refund: c.path = intent + "/refund"; break;
    case payment_op::lookup:
      c.method = "GET";
      c.path = "/v1/idempotency_keys/" + encode(r.idempotency_key);
      return c;
  }
  c.body = body.dump();
  return c;
}

bool from_http(const std::string& method, const std::string& path, const std::string& body,
               const std::string& key, payment_request& out, std::string& why) {
  out = payment_request{};
  const std::string keys = "/v1/idempotency_keys/", intents = "/v1/payment_intents";
  if (method == "GET" && path.rfind(keys, 0) == 0) {
    out.op = payment_op::lookup;
    if (!decode(path.substr(keys.size()), out.idempotency_key)) return why = "a malformed key in the path", false;
    return true;
  }
  if (method != "POST" || path.rfind(intents, 0) != 0) return why = "no such endpoint: " + method + " " + path, false;
  out.idempotency_key = key;
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return why = "the body is not a JSON object", false;
  auto text = [&](const char* name, std::string& to) {
    auto it = j.find(name);
    if (it == j.end()) return true;
    if (!it->is_string()) return false;
    to = it->get<std::string>();
    return true;
  };
  if (!text("order_id", out.order_id)) return why = "order_id must be a string", false;
  if (path == intents) {
    out.op = payment_op::authorize;
    auto amount = j.find("amount");
    if (amount == j.end() || !amount->is_number_integer()) return why = "amount must be an integer (cents)", false;
    out.amount_cents = amount->get<int64_t>();
    if (!text("card", out.card)) return why = "card must be a string", false;
    return true;
  }
  auto rest = path.substr(intents.size());
  auto slash = rest.rfind('/');
  if (rest.empty() || rest[0] != '/' || slash == 0) return why = "no such endpoint: " + path, false;
  if (!decode(rest.substr(1, slash - 1), out.intent_id)) return why = "a malformed intent id in the path", false;
  auto action = rest.substr(slash + 1);
  if (action == "capture") out.op = payment_op::capture;
  else if (action == "cancel") out.op = payment_op::void_auth;
  else if (action == "refund") out.op = payment_op::refund;
  else return why = "no such action: " + action, false;
  return true;
}

std::string reply_json(const payment_reply& r) {
  json j{{"outcome", to_string(r.result)}};
  if (!r.error.empty()) j["error"] = {{"message", r.error}};
  if (!r.intent.id.empty()) j["payment_intent"] = json::parse(intent_json(r.intent));
  return j.dump();
}

int http_status(const payment_reply& r, gateway::admission verdict) {
  switch (r.result) {
    case payment_reply::outcome::ok: return 200;
    case payment_reply::outcome::declined: return 402;
    case payment_reply::outcome::unknown: return 500;
    case payment_reply::outcome::refused: break;
  }
  return verdict == gateway::admission::in_progress ? 409 : 400;
}

payment_reply reply_from_http(int status, const std::string& body) {
  if (status >= 500) return unknown("the gateway answered HTTP " + std::to_string(status));
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("outcome") || !j["outcome"].is_string())
    return unknown("the gateway answered HTTP " + std::to_string(status) + " without a payment answer");
  payment_reply r;
  auto outcome = j["outcome"].get<std::string>();
  if (outcome == "ok" && status == 200) r.result = payment_reply::outcome::ok;
  else if (outcome == "declined" && status == 402) r.result = payment_reply::outcome::declined;
  else if (outcome == "refused" && (status == 400 || status == 404 || status == 409)) r.result = payment_reply::outcome::refused;
  else return unknown("the gateway answered HTTP " + std::to_string(status) + " with outcome " + outcome);
  if (j.contains("error") && j["error"].is_object() && j["error"].contains("message") && j["error"]["message"].is_string())
    r.error = j["error"]["message"].get<std::string>();
  if (j.contains("payment_intent")) {
    // Only a refusal may speak of an intent the gateway does not know (status none).
    if (!parse_intent_json(j["payment_intent"].dump(), r.intent, r.result == payment_reply::outcome::refused))
      return unknown("the gateway's payment intent is malformed");
  }
  return r;
}

std::string ledger_json(const gateway& g) {
  json entries = json::array();
  for (auto& e : g.ledger())
    entries.push_back({{"seq", e.seq}, {"intent_id", e.intent_id}, {"order_id", e.order_id},
                       {"op", to_string(e.op)}, {"amount", e.amount_cents}, {"declined", e.declined},
                       {"at_ms", e.at_ms}, {"idempotency_key", e.idempotency_key}});
  auto& s = g.stats();
  json stats{{"requests", s.requests}, {"replays", s.replays}, {"conflicts", s.conflicts},
             {"key_reuses", s.key_reuses}, {"lost_replies", s.lost_replies}, {"events", s.events},
             {"duplicate_events", s.duplicates}, {"deliveries", s.deliveries}, {"retries", s.retries},
             {"dropped", s.dropped}};
  return json{{"ledger", entries}, {"stats", stats}}.dump();
}

kj::Promise<void> send_json(kj::HttpService::Response& response, const kj::HttpHeaderTable& table, unsigned status,
                            const std::string& body) {
  return send_body(response, table, status, "application/json", body);
}

kj::Promise<void> send_body(kj::HttpService::Response& response, const kj::HttpHeaderTable& table, unsigned status,
                            const char* content_type, const std::string& body) {
  const char* reason = status == 200   ? "OK"
                       : status == 400 ? "Bad Request"
                       : status == 402 ? "Payment Required"
                       : status == 404 ? "Not Found"
                       : status == 405 ? "Method Not Allowed"
                       : status == 409 ? "Conflict"
                       : status == 413 ? "Payload Too Large"
                       : status == 503 ? "Service Unavailable"
                       : status >= 500 ? "Internal Server Error"
                                       : "Error";
  kj::HttpHeaders headers(table);
  headers.set(kj::HttpHeaderId::CONTENT_TYPE, content_type);
  auto text = kj::heapString(body.data(), body.size());
  auto out = response.send(status, reason, headers, text.size());
  auto written = out->write(text.begin(), text.size());
  return written.attach(kj::mv(out), kj::mv(text));
}

size_t ledger_view::max_captures() const {
  size_t most = 0;
  for (auto& [order, n] : captures) most = std::max(most, n);
  return most;
}

bool parse_ledger_json(const std::string& text, ledger_view& out) {
  out = ledger_view{};
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("ledger") || !j["ledger"].is_array()) return false;
  try {
    for (auto& e : j["ledger"]) {
      ledger_entry l;
      l.seq = e.at("seq").get<uint64_t>();
      l.intent_id = e.at("intent_id").get<std::string>();
      l.order_id = e.at("order_id").get<std::string>();
      auto op = e.at("op").get<std::string>();
      for (auto o : {payment_op::authorize, payment_op::capture, payment_op::void_auth, payment_op::refund})
        if (op == to_string(o)) l.op = o;
      l.amount_cents = e.at("amount").get<int64_t>();
      l.declined = e.at("declined").get<bool>();
      l.at_ms = e.at("at_ms").get<int64_t>();
      l.idempotency_key = e.at("idempotency_key").get<std::string>();
      if (l.op == payment_op::capture) out.captures[l.order_id]++;
      out.entries.push_back(std::move(l));
    }
    auto& s = j.at("stats");
    out.stats.requests = s.at("requests").get<uint64_t>();
    out.stats.replays = s.at("replays").get<uint64_t>();
    out.stats.conflicts = s.at("conflicts").get<uint64_t>();
    out.stats.key_reuses = s.at("key_reuses").get<uint64_t>();
    out.stats.lost_replies = s.at("lost_replies").get<uint64_t>();
    out.stats.events = s.at("events").get<uint64_t>();
    out.stats.duplicates = s.at("duplicate_events").get<uint64_t>();
    out.stats.deliveries = s.at("deliveries").get<uint64_t>();
    out.stats.retries = s.at("retries").get<uint64_t>();
    out.stats.dropped = s.at("dropped").get<uint64_t>();
  } catch (const json::exception&) {
    return false;
  }
  return true;
}

namespace {

int blocking_http(kj::HttpMethod method, const std::string& url,
              const std::vector<std::pair<std::string, std::string>>& extra, const std::string& request_body,
              int64_t timeout_ms, std::string& body, std::string& error) {
  try {
    auto io = kj::setupAsyncIo();
    auto& timer = io.provider->getTimer();
    kj::HttpHeaderTable::Builder builder;
    std::vector<kj::HttpHeaderId> ids;
    for (auto& [name, value] : extra) ids.push_back(builder.add(kj::StringPtr(name.c_str())));
    auto table = builder.build();
    auto client = kj::newHttpClient(timer, *table, io.provider->getNetwork(), nullptr);
    kj::HttpHeaders headers(*table);
    for (size_t i = 0; i < extra.size(); ++i) headers.set(ids[i], kj::StringPtr(extra[i].second.c_str()));
    kj::Maybe<uint64_t> size = nullptr;
    if (method != kj::HttpMethod::GET) size = uint64_t(request_body.size());
    auto req = client->request(method, kj::StringPtr(url.c_str()), headers, size);
    kj::Promise<void> sent = kj::READY_NOW;
    if (!request_body.empty()) sent = req.body->write(request_body.data(), request_body.size());
    sent = sent.attach(kj::mv(req.body));
    auto got = sent.then([response = kj::mv(req.response)]() mutable { return kj::mv(response); })
                 .then([](kj::HttpClient::Response&& r) {
                   auto status = static_cast<int>(r.statusCode);
                   return r.body->readAllText().attach(kj::mv(r.body)).then([status](kj::String text) {
                     return std::make_pair(status, std::string(text.cStr()));
                   });
                 });
    auto timed = got.exclusiveJoin(timer.afterDelay(timeout_ms * kj::MILLISECONDS).then([] {
      return std::make_pair(0, std::string());
    }));
    auto [status, text] = timed.wait(io.waitScope);
    if (status == 0) error = "no answer from " + url + " within " + std::to_string(timeout_ms) + " ms";
    body = std::move(text);
    return status;
  } catch (const kj::Exception& e) {
    error = std::string("cannot reach ") + url + ": " + e.getDescription().cStr();
    return 0;
  }
}

}  // namespace

int http_get(const std::string& url, int64_t timeout_ms, std::string& body, std::string& error) {
  return blocking_http(kj::HttpMethod::GET, url, {}, {}, timeout_ms, body, error);
}

int http_post(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
              const std::string& request_body, int64_t timeout_ms, std::string& body, std::string& error) {
  return blocking_http(kj::HttpMethod::POST, url, headers, request_body, timeout_ms, body, error);
}

}  // namespace holdfast
