// Orders: one order actor per order id on the order's owner node, driving its saga
// (actors/order_saga.hpp). The record is written to the log after every change the saga
// reports, and the saga's next command is sent only once that write is durable: a node
// that dies at any moment resumes the order from its last record, repeating at most the
// command it was waiting on (idempotent by hold id and payment key).
//
// Holds go to their SKUs wherever they live through `hold_calls` (the node's router on
// its network thread; boundary 1), payments through the payment provider (boundary 4).
// Their answers come back as messages. A step whose answer does not come within
// `step_timeout_ms` counts as unknown. The order directory spawns order actors, resumes
// every order that is not finished when the node starts, and stops finished ones.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

#include "actors/order_saga.hpp"
#include "actors/type_ids.hpp"
#include "persistence/clock.hpp"
#include "persistence/store.hpp"

namespace holdfast {

// Hold operations on any SKUs; one answer each, in order. `done` may run on any thread.
class hold_calls {
public:
  virtual ~hold_calls() = default;
  virtual void holds(std::vector<hold_op> ops, std::function<void(std::vector<hold_result>)> done) = 0;
};

std::string encode_order(const order_record& r);

// Order events, the outbox: every write of an order's record also writes, in the same log
// batch, an event under this node's next sequence number (entity records of space
// order_event, key order_event_key(seq), value the order as that write left it). So an
// event exists exactly when its transition is durable. The oldest are deleted past
// `retention` events. A consumer reads pages from an offset (read_order_events), at least
// once, resuming where it stopped.
struct order_event_log {
  std::atomic<uint64_t> next{1};
  uint64_t retention = 1'000'000;
};
std::string order_event_key(uint64_t seq);
// The highest sequence number stored (0: none): where a restarted node goes on.
uint64_t last_order_event(const storage& env);
// At most `limit` events from `from` on. Two orders' writes may become durable out of
// their sequence: the page stops at a missing number (the write before it is still on its
// way) unless the events after it are older than `gap_wait_ms` (that write failed) or the
// number is past the retention.
order_event_page read_order_events(const storage& env, const order_event_log& log, uint64_t from, size_t limit,
                                   int64_t now_ms, int64_t gap_wait_ms = 5'000);
bool decode_order(const std::string& order_id, const std::string& value, order_record& out);

// A user's orders are indexed by these keys (space user_order), written in the batch of
// the order's first record: the user's length, the user, the order id.
std::string user_order_key(const std::string& user, const std::string& order_id);
// This node's orders for one page of `order list`: a user's through their index, all in
// id order otherwise; at most `scan_max` orders are read for a state filter.
order_page list_orders(const storage& env, const order_list_query& q, size_t scan_max = order_list_scan_max);
struct order_context {
  std::shared_ptr<const storage> env;
  store_actor store;
  std::shared_ptr<const wall_clock> clock;
  std::shared_ptr<hold_calls> inventory;
  std::shared_ptr<payment_provider> payments;
  saga_policy policy;
  int64_t step_timeout_ms = 10'000;
  int64_t idle_ms = 60'000;  // a finished order's actor stops after this long unused
  // Test-only (`holdfast node --crash-at`): the process dies (exit 137, as kill -9 would
  // leave it) when an order is about to send the command of this saga phase ("reserve",
  // "authorize", ...), or with "PHASE:answered" when that command's answer arrives,
  // before the saga learns it. Empty: never.
  std::string crash_at;
  std::shared_ptr<order_event_log> events;  // null: no events are written
  // Checks a payment event's signature and reads its payment intent: empty when it may
  // be believed, else why not (gateway/webhook.hpp, wired by the node). Unset: payment
  // events are refused.
  std::function<std::string(const std::string& body, const std::string& signature, int64_t now_ms,
                            payment_intent& out)>
    verify_payment_event;
};

using order_actor = caf::typed_actor<
  caf::replies_to<order_place_atom, order_record>::with<order_result>,
  caf::replies_to<order_op_atom, order_op>::with<order_result>,
  caf::reacts_to<order_step_atom, uint64_t>,
  caf::reacts_to<order_holds_atom, uint64_t, std::vector<hold_op>, std::vector<hold_result>>,
  caf::reacts_to<order_payment_atom, uint64_t, payment_request, payment_reply>,
  caf::reacts_to<durable_atom, uint64_t>,
  caf::reacts_to<write_failed_atom, uint64_t, uint64_t, store_status>>;

struct order_state_t {
  order_context ctx;
  std::unique_ptr<order_saga> saga;
  bool exists = false;
  std::string broken;       // its record could not be read
  uint64_t token = 0;       // the command in flight (answers with another are stale)
  bool in_flight = false;   // a command was sent and not answered
  saga_command pending;     // that command
  bool writing = false;     // a record write is in flight: nothing is sent until durable
  bool dirty = false;       // changed since the write in flight began
  uint64_t epoch = 0;
  uint64_t next_seq = 1;
  uint64_t written_seq = 0;
  uint64_t evented_version = UINT64_MAX;  // the record version last written (with its order event)
  bool unindexed = false;   // placed here: the first write also enters it in its user's orders
  // Callers waiting for the change they asked for to be durable.
  std::deque<std::pair<uint64_t, caf::typed_response_promise<order_result>>> waiting;
  static inline const char* name = "holdfast.order";
};

order_actor::behavior_type order_behavior(order_actor::stateful_pointer<order_state_t> self,
                                          std::string order_id, order_context ctx);

using order_directory_actor = caf::typed_actor<
  caf::replies_to<order_place_atom, order_record>::with<order_result>,
  caf::replies_to<order_op_atom, order_op>::with<order_result>,
  // Operations on any orders (place included); one answer each, in order.
  caf::replies_to<order_ops_atom, std::vector<order_op>>::with<std::vector<order_result>>,
  // Starts every order whose saga is not done; answers how many.
  caf::replies_to<recover_atom>::with<int64_t>,
  caf::replies_to<stats_atom>::with<int64_t>>;

struct order_directory_state {
  order_context ctx;
  std::unordered_map<std::string, order_actor> orders;
  std::unordered_map<caf::actor_id, std::string> order_of;  // a live actor's order: its down message finds it
  static inline const char* name = "holdfast.orders";
};

order_directory_actor::behavior_type order_directory_behavior(
  order_directory_actor::stateful_pointer<order_directory_state> self, order_context ctx);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_op& x) {
  return f(x.kind, x.order_id, x.detail, x.user, x.card, x.lines, x.webhook_body, x.webhook_signature, x.intent);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_result& x) {
  return f(x.status, x.message, x.order);
}

}  // namespace holdfast
