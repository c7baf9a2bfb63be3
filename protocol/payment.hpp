// Payments as values: what the saga asks of the payment provider (actors/payment_provider.hpp,
// boundary 4) and what it answers, and the payment intent an order op may carry. Plain
// data, no I/O: clients, the gateway and the node share them.
#pragma once

#include <cstdint>
#include <string>

namespace holdfast {

enum class payment_op : uint8_t { authorize = 0, capture, void_auth, refund, lookup };
const char* to_string(payment_op op);

// A payment intent's life: authorized -> captured -> refunded, or authorized -> voided;
// an authorization may be declined.
enum class intent_status : uint8_t { none = 0, authorized, captured, voided, refunded, declined };
const char* to_string(intent_status s);

struct payment_request {
  payment_op op = payment_op::authorize;
  // The request's key; for a lookup, the key of the request looked up.
  std::string idempotency_key;
  std::string order_id;     // authorize
  std::string intent_id;    // capture, void_auth, refund
  int64_t amount_cents = 0; // authorize
  std::string card;         // authorize: a card token ("tok_decline" is always declined)
};

struct payment_intent {
  std::string id;
  std::string order_id;
  int64_t amount_cents = 0;
  intent_status status = intent_status::none;
  std::string decline_reason;  // declined only
};

struct payment_reply {
  enum class outcome : uint8_t {
    ok = 0,    // applied (or applied before, under this key): `intent` as it is now
    declined,  // the authorization was declined: `intent` says why
    unknown,   // no answer (timeout, lost reply): it may have been applied. Ask again
               // with `lookup` and the same key; never charge anew
    refused,   // not applied: the key was used for another request, the intent is in a
               // state that forbids it, a request with the key is in progress, or bad input
  };
  outcome result = outcome::ok;
  payment_intent intent;
  std::string error;  // refused, unknown: why
};
const char* to_string(payment_reply::outcome o);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_request& x) {
  return f(x.op, x.idempotency_key, x.order_id, x.intent_id, x.amount_cents, x.card);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_intent& x) {
  return f(x.id, x.order_id, x.amount_cents, x.status, x.decline_reason);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_reply& x) {
  return f(x.result, x.intent, x.error);
}

}  // namespace holdfast
