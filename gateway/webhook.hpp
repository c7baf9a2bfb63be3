// Webhook wire format and signatures. An event travels as JSON; its POST carries the
// header `Holdfast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
// (Stripe's scheme). A receiver accepts it only when a v1 signature matches, in constant
// time, and t is within the tolerance (300 s) of its own clock: a replayed old event, a
// forged or altered one changes nothing.
#pragma once

#include <cstdint>
#include <string>

#include "gateway/gateway.hpp"

namespace holdfast {

constexpr const char* webhook_signature_header = "Holdfast-Signature";
constexpr int64_t webhook_tolerance_s = 300;

std::string webhook_body(const webhook_event& e);
// False with `why` when the body is not an event this receiver understands.
bool parse_webhook_body(const std::string& body, webhook_event& out, std::string& why);

// The header value for `body` signed at `timestamp_s`.
std::string sign_webhook(const std::string& secret, int64_t timestamp_s, const std::string& body);

enum class signature_check { ok, missing, malformed, mismatch, too_old, too_new };
const char* to_string(signature_check c);
signature_check verify_webhook(const std::string& secret, const std::string& header,
                               const std::string& body, int64_t now_s,
                               int64_t tolerance_s = webhook_tolerance_s);

// A receiver's whole check: empty when `body` is an event signed with `secret` within the
// tolerance of `now_ms` (then `out` is its payment intent), else why not.
std::string verify_payment_event(const std::string& secret, const std::string& body, const std::string& signature,
                                 int64_t now_ms, payment_intent& out);

// Payment intents and replies as the HTTP API writes them. Status "none" (an intent the
// gateway does not know, in a refusal) only where `none_ok`: never in an event.
std::string intent_json(const payment_intent& in);
bool parse_intent_json(const std::string& text, payment_intent& out, bool none_ok = false);

}  // namespace holdfast
