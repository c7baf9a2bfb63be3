// Orders as values: an order's record, the operations users and operators ask of one, and
// pages of the order list and of the order events. Plain data: the saga (actors/order_saga.hpp),
// the order actors, the wire codecs and clients share them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/domain.hpp"
#include "protocol/payment.hpp"

namespace holdfast {

enum class order_state : uint8_t {
  placed = 0, reserved, authorized, confirmed, captured, shipped, delivered, cancelled, refunded
};
const char* to_string(order_state s);

// What the saga is doing now: a forward step or a compensation.
enum class saga_phase : uint8_t {
  reserve = 0, authorize, confirm, capture, done,   // forward
  release, restock, void_auth, refund,              // compensations, in this order
};
const char* to_string(saga_phase p);

struct order_line {
  std::string sku;
  int64_t qty = 0;
  int64_t price_cents = 0;  // as the checkout priced it
};

struct order_record {
  std::string order_id;
  std::string user;
  std::string card;
  std::vector<order_line> lines;
  int64_t total_cents = 0;
  order_state state = order_state::placed;
  saga_phase phase = saga_phase::reserve;
  std::vector<uint8_t> done;       // per line: the current step has its answer
  std::vector<uint8_t> reserved;   // per line: held (released or confirmed since: 0)
  std::vector<uint8_t> sold;       // per line: confirmed (restocked since: 0)
  std::string intent_id;           // the payment intent, once authorized
  bool authorized = false;         // an authorization stands (not voided)
  bool auth_unsure = false;        // an authorize may have been applied (its answer never came)
  bool captured = false;           // a capture stands (not refunded)
  bool refunded = false;           // a refund was made
  bool released_all = false;       // the release step ran: no line is held any more
  bool lookup_pending = false;     // the last payment request had no answer: look it up first
  bool cancel_requested = false;
  std::string reason;              // why it was cancelled or refunded
  std::string last_error;          // the last step without an answer: why
  uint32_t attempt = 0;            // tries of the current step that found no answer
  int64_t retry_at_ms = 0;         // the current step waits until then (0: now)
  int64_t extended_at_ms = 0;      // holds last reserved or extended
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  uint64_t version = 0;            // counts transitions
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_line& x) {
  return f(x.sku, x.qty, x.price_cents);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_record& x) {
  return f(x.order_id, x.user, x.card, x.lines, x.total_cents, x.state, x.phase, x.done, x.reserved,
           x.sold, x.intent_id, x.authorized, x.auth_unsure, x.captured, x.refunded, x.released_all, x.lookup_pending,
           x.cancel_requested, x.reason, x.last_error, x.attempt, x.retry_at_ms, x.extended_at_ms,
           x.created_ms, x.updated_ms, x.version);
}

// An order event (actors/order.hpp, the outbox): the order as one of its transitions
// left it, under its node's sequence number.
struct order_event {
  uint64_t seq = 0;
  order_record order;
};
struct order_event_page {
  std::vector<order_event> events;
  uint64_t next = 0;   // the offset to ask from next
  uint32_t node = 0;   // whose events (0: a single node)
  std::string error;   // not read: why
};

// `order list`: orders in id order after `after`, of one user or all, in one state, in
// any state not finished ("active") or any ("").
struct order_list_query {
  std::string user;
  std::string state;
  std::string after;
  uint32_t limit = 0;
};
// Empty when the query can be answered, else why not.
std::string validate(const order_list_query& q);
struct order_page {
  std::vector<order_record> orders;
  // Set when the node may have more after it (the last order listed, or the last one
  // read for a state filter that found too few); empty: nothing follows.
  std::string next;
  std::string error;  // not read: why
};

// What the user or an operator asks of an order.
// payment_event: a webhook from the payment gateway, as it came (body and signature):
// whoever passes it on, the order directory verifies the signature before the order
// sees it, so a forged, altered or replayed event changes nothing.
enum class order_op_kind : uint8_t { show = 0, cancel, ship, deliver, shipping_failed, place, payment_event };
struct order_op {
  order_op_kind kind = order_op_kind::show;
  std::string order_id;
  std::string detail;  // shipping_failed: why
  std::string user;    // place
  std::string card;    // place
  std::vector<order_line> lines;  // place
  std::string webhook_body;       // payment_event
  std::string webhook_signature;  // payment_event: the Holdfast-Signature header
  payment_intent intent;          // payment_event, once verified (never from the wire)
};
// An operation on an existing order (show, cancel, ship, deliver, shipping_failed).
inline order_op order_op_on(order_op_kind kind, std::string order_id, std::string detail = {}) {
  order_op op;
  op.kind = kind;
  op.order_id = std::move(order_id);
  op.detail = std::move(detail);
  return op;
}
// Empty when well-formed, else why not.
std::string validate(const order_op& op, const request_limits& limits);

struct order_result {
  code status = code::ok;
  std::string message;
  order_record order;
};

// Members' pages of one query merged into the cluster's: orders up to the first point a
// member stopped at are complete in every page, so the first `limit` of them are the
// cluster's; `next` is set when any member has more.
order_page merge_order_pages(std::vector<order_page> pages, uint32_t limit);

}  // namespace holdfast
