// The simulated gateway's HTTP API, as both ends speak it (Stripe-like, JSON bodies):
//
//   POST /v1/payment_intents                 {"order_id", "amount", "card"}   authorize
//   POST /v1/payment_intents/{id}/capture    {"order_id"}
//   POST /v1/payment_intents/{id}/cancel     {"order_id"}                     void
//   POST /v1/payment_intents/{id}/refund     {"order_id"}
//   GET  /v1/idempotency_keys/{key}          the first answer given under a key (lookup)
//   GET  /v1/ledger                          every operation applied, and the counters
//
// Every POST carries `Idempotency-Key`. Answers: 200 {"outcome":"ok","payment_intent"},
// 402 declined, 400 refused (bad input, key reused, wrong state), 409 a request with the
// key is in progress, 404 lookup of an unknown key; any 5xx or no answer: unknown.
#pragma once

#include <kj/compat/http.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gateway/gateway.hpp"

namespace holdfast {

constexpr const char* idempotency_key_header = "Idempotency-Key";
constexpr size_t gateway_body_bytes_max = 64 * 1024;

struct http_call {
  std::string method;  // GET or POST
  std::string path;
  std::string body;
};
http_call to_http(const payment_request& r);
// The request an HTTP call asks for; false with `why` when it is not one.
bool from_http(const std::string& method, const std::string& path, const std::string& body,
               const std::string& key, payment_request& out, std::string& why);

std::string reply_json(const payment_reply& r);
// An answer's HTTP status, as above (a refusal's depends on why: see the gateway's admission).
int http_status(const payment_reply& r, gateway::admission verdict);
// The answer an HTTP reply carries: unknown for a status or body the API does not give.
payment_reply reply_from_http(int status, const std::string& body);

std::string ledger_json(const gateway& g);

// Answers an HTTP request with a JSON body and the status's standard reason phrase (the
// gateway's and the node's endpoints alike).
kj::Promise<void> send_json(kj::HttpService::Response& response, const kj::HttpHeaderTable& table, unsigned status,
                            const std::string& body);
kj::Promise<void> send_body(kj::HttpService::Response& response, const kj::HttpHeaderTable& table, unsigned status,
                            const char* content_type, const std::string& body);

struct ledger_view {
  std::vector<ledger_entry> entries;
  gateway_stats stats;
  // Captures per order id, and the most any order got (promise 4: at most one).
  std::map<std::string, size_t> captures;
  size_t max_captures() const;
};
bool parse_ledger_json(const std::string& text, ledger_view& out);

// Blocking HTTP calls with their own event loop (never on a thread that runs one): the
// status and body, or status 0 with `error` set.
int http_get(const std::string& url, int64_t timeout_ms, std::string& body, std::string& error);
int http_post(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
              const std::string& request_body, int64_t timeout_ms, std::string& body, std::string& error);

}  // namespace holdfast
