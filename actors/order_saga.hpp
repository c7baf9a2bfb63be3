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
#include "protocol/orders.hpp"

namespace holdfast {

struct saga_policy {
  int64_t hold_ttl_ms = 10 * 60'000;  // each line's hold; extended while payment is pending
  int64_t retry_min_ms = 100;         // backoff of a step whose answer was unknown, doubling
  int64_t retry_max_ms = 5'000;
  uint32_t attempts_max = 20;         // a forward step gives up after this many
};

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

}  // namespace holdfast
