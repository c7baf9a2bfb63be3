// The checkout saga's rules, without CAF or I/O: one order's durable state machine.
// The order actor (next) persists the record after every change that on_*() reports and
// only then sends what next() asks for; answers come back through on_*(). So every
// transition is in the log before it is acted on, and a restarted node resumes an
// order by asking next() again: each command is idempotent (hold id = order id + line,
// payment idempotency key = order id + step).
//
//   placed --reserve all lines--> reserved --authorize--> authorized --confirm all--> confirmed
//   --capture--> captured (--ship--> shipped --deliver--> delivered)
//
// Any refusal walks back with compensations, in order: release the holds not yet
// confirmed, restock the lines already confirmed (their units were sold), void the
// authorization; the order ends `cancelled`. After capture, a shipping failure refunds
// and restocks: `refunded`. No two-phase commit: a hold's TTL is its lease, extended
// while the payment is pending, so an order that stops never holds stock for long. A
// step whose answer is unknown (timeout, lost link, lost reply) is asked again with the
// same ids, with jittered backoff; a forward step gives up after `attempts_max` and
// compensates, a compensation never gives up.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "actors/payment_provider.hpp"
#include "protocol/domain.hpp"

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

struct saga_policy {
  int64_t hold_ttl_ms = 10 * 60'000;  // each line's hold; extended while payment is pending
  int64_t retry_min_ms = 100;         // backoff of a step whose answer was unknown, doubling
  int64_t retry_max_ms = 5'000;
  uint32_t attempts_max = 20;         // a forward step gives up after this many
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

// What the order actor must do now.
struct saga_command {
  enum class kind : uint8_t { none = 0, holds, payment, wait } what = kind::none;
  std::vector<hold_op> holds;      // holds: one kind, the lines still without an answer
  payment_request payment;
  int64_t wait_until_ms = 0;       // wait: retry then
};

class order_saga {
public:
  order_saga(order_record record, saga_policy policy);
  static order_record place(std::string order_id, std::string user, std::string card,
                            std::vector<order_line> lines, int64_t now_ms);

  const order_record& record() const { return r_; }
  bool terminal() const;
  // The next command; `none` when terminal (or waiting for nothing).
  saga_command next(int64_t now_ms) const;
  // Answers to the command next() gave. True when the record changed: persist it
  // before asking next() again.
  bool on_holds(const std::vector<hold_op>& sent, const std::vector<hold_result>& answers, int64_t now_ms);
  bool on_payment(const payment_request& sent, const payment_reply& reply, int64_t now_ms);
  // A verified webhook about this order's payment: finality. True when it changed the record.
  bool on_payment_event(const payment_intent& intent, int64_t now_ms);
  // The user's cancel: accepted before capture (the saga compensates at its next step).
  // Empty when accepted, else why not.
  std::string cancel(int64_t now_ms);
  // With nothing in flight: a requested cancel starts its compensations. True when it did.
  bool apply_cancel(int64_t now_ms);
  // After capture: shipped, delivered, or a shipping failure (refund and restock).
  std::string ship(int64_t now_ms);
  std::string deliver(int64_t now_ms);
  std::string shipping_failed(const std::string& why, int64_t now_ms);

  std::string hold_id(size_t line) const { return r_.order_id + "-" + std::to_string(line); }
  std::string payment_key(saga_phase step) const;

private:
  void enter(saga_phase p, int64_t now_ms);
  void enter_state(order_state s, saga_phase p, int64_t now_ms);
  // The first compensation this order still needs, or done.
  saga_phase compensation() const;
  void compensate(std::string reason, int64_t now_ms);
  // No answer: try again later, or give up (forward steps) after attempts_max.
  void retry_later(const std::string& why, int64_t now_ms);
  bool after_forward_step(int64_t now_ms);
  uint64_t jitter_seed() const;
  // Why an intent the provider speaks of is not this order's payment (another order,
  // another intent than the one authorized, another amount); empty when it may be.
  std::string foreign(const payment_intent& in) const;

  order_record r_;
  saga_policy policy_;
};

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
struct order_page {
  std::vector<order_record> orders;
  // Set when the node may have more after it (the last order listed, or the last one
  // read for a state filter that found too few); empty: nothing follows.
  std::string next;
  std::string error;  // not read: why
};

}  // namespace holdfast
