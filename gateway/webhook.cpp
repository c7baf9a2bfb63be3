#include "gateway/webhook.hpp"

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdio>

namespace holdfast {
namespace {

using json = nlohmann::json;

json to_json(const payment_intent& in) {
  json j{{"id", in.id},
         {"object", "payment_intent"},
         {"amount", in.amount_cents},
         {"status", to_string(in.status)},
         {"metadata", {{"order_id", in.order_id}}}};
  if (!in.decline_reason.empty()) j["last_payment_error"] = {{"code", in.decline_reason}};
  return j;
}

bool from_json(const json& j, payment_intent& in, bool none_ok = false) {
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("status") ||
      !j["status"].is_string() || !j.contains("amount") || !j["amount"].is_number_integer())
    return false;
  in.id = j["id"].get<std::string>();
  in.amount_cents = j["amount"].get<int64_t>();
  auto status = j["status"].get<std::string>();
  in.status = intent_status::none;
  for (auto s : {intent_status::none, intent_status::authorized, intent_status::captured, intent_status::voided,
                 intent_status::refunded, intent_status::declined})
    if (status == to_string(s)) in.status = s;
  if (in.status == intent_status::none && (!none_ok || status != to_string(intent_status::none))) return false;
  auto meta = j.find("metadata");
  if (meta != j.end() && meta->is_object() && meta->contains("order_id") && (*meta)["order_id"].is_string())
    in.order_id = (*meta)["order_id"].get<std::string>();
  if (j.contains("last_payment_error") && j["last_payment_error"].is_object() &&
      j["last_payment_error"].contains("code") && j["last_payment_error"]["code"].is_string())
    in.decline_reason = j["last_payment_error"]["code"].get<std::string>();
  return true;
}

std::string hex(const unsigned char* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  return out;
}

std::string hmac_hex(const std::string& secret, const std::string& payload) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), mac, &len);
  return hex(mac, len);
}

}  // namespace

std::string webhook_body(const webhook_event& e) {
  json j{{"id", e.id}, {"object", "event"}, {"type", e.type}, {"created_ms", e.created_ms},
         {"data", {{"object", to_json(e.intent)}}}};
  return j.dump();
}

bool parse_webhook_body(const std::string& body, webhook_event& out, std::string& why) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    why = "the body is not a JSON object";
    return false;
  }
  if (!j.contains("id") || !j["id"].is_string() || j["id"].get<std::string>().empty() ||
      !j.contains("type") || !j["type"].is_string()) {
    why = "the event has no id or type";
    return false;
  }
  out.id = j["id"].get<std::string>();
  out.type = j["type"].get<std::string>();
  out.created_ms = j.contains("created_ms") && j["created_ms"].is_number_integer() ? j["created_ms"].get<int64_t>() : 0;
  auto data = j.find("data");
  if (data == j.end() || !data->is_object() || !data->contains("object") || !from_json((*data)["object"], out.intent)) {
    why = "the event carries no payment intent";
    return false;
  }
  return true;
}

std::string sign_webhook(const std::string& secret, int64_t timestamp_s, const std::string& body) {
  auto t = std::to_string(timestamp_s);
  return "t=" + t + ",v1=" + hmac_hex(secret, t + "." + body);
}

const char* to_string(signature_check c) {
  switch (c) {
    case signature_check::ok: return "ok";
    case signature_check::missing: return "no signature";
    case signature_check::malformed: return "malformed signature header";
    case signature_check::mismatch: return "signature does not match";
    case signature_check::too_old: return "timestamp older than the tolerance";
    case signature_check::too_new: return "timestamp ahead of the tolerance";
  }
  return "?";
}

signature_check verify_webhook(const std::string& secret, const std::string& header,
                               const std::string& body, int64_t now_s, int64_t tolerance_s) {
  if (header.empty()) return signature_check::missing;
  // "t=...,v1=...[,v1=...]": every v1 is tried (a secret being rolled signs twice).
  std::string t;
  std::vector<std::string> signatures;
  size_t at = 0;
  while (at <= header.size()) {
    auto end = header.find(',', at);
    if (end == std::string::npos) end = header.size();
    auto part = header.substr(at, end - at);
    auto eq = part.find('=');
    if (eq == std::string::npos) return signature_check::malformed;
    auto name = part.substr(0, eq), value = part.substr(eq + 1);
    if (name == "t") t = value;
    else if (name == "v1") signatures.push_back(value);
    at = end + 1;
  }
  if (t.empty() || t.size() > 12 || signatures.empty() ||
      t.find_first_not_of("0123456789") != std::string::npos)
    return signature_check::malformed;
  auto expected = hmac_hex(secret, t + "." + body);
  bool match = false;
  for (auto& s : signatures)
    if (s.size() == expected.size() && CRYPTO_memcmp(s.data(), expected.data(), s.size()) == 0) match = true;
  if (!match) return signature_check::mismatch;
  auto ts = std::stoll(t);
  if (ts < now_s - tolerance_s) return signature_check::too_old;
  if (ts > now_s + tolerance_s) return signature_check::too_new;
  return signature_check::ok;
}

std::string verify_payment_event(const std::string& secret, const std::string& body, const std::string& signature,
                                 int64_t now_ms, payment_intent& out) {
  auto check = verify_webhook(secret, signature, body, now_ms / 1000);
  if (check != signature_check::ok) return to_string(check);
  webhook_event e;
  std::string why;
  if (!parse_webhook_body(body, e, why)) return why;
  out = e.intent;
  return {};
}

std::string intent_json(const payment_intent& in) { return to_json(in).dump(); }

bool parse_intent_json(const std::string& text, payment_intent& out, bool none_ok) {
  auto j = json::parse(text, nullptr, false);
  return !j.is_discarded() && from_json(j, out, none_ok);
}

}  // namespace holdfast
