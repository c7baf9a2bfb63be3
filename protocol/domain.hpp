// Domain messages exchanged inside a node: plain structs, no CAF, no Cap'n Proto.
// protocol/codec.hpp converts them to and from the wire; persistence/ to and from LMDB.
// The free inspect() functions let CAF carry them in messages (persistence/type_ids.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/limits.hpp"

namespace holdfast {

// Outcomes a caller reacts to differently. Values, never exceptions.
enum class code : uint8_t {
  ok = 0,
  out_of_stock,
  unknown_sku,
  unknown_hold,
  hold_expired,
  hold_conflict,
  wrong_state,
  sku_exists,
  insufficient,
  invalid,
  unavailable,
  storage_full,
  outcome_unknown,
  limit_reached,  // the SKU's per-user limit
  unknown_order,
  forbidden,  // the connection's role may not do this (a node started with --tokens)
};

const char* to_string(code c);

enum class hold_state : uint8_t { active = 0, confirmed, released, expired, returned };

const char* to_string(hold_state s);

struct hold_info {
  std::string hold_id;
  std::string sku;
  int64_t qty = 0;
  hold_state state = hold_state::active;
  int64_t deadline_ms = 0;  // absolute, Unix wall-clock milliseconds
};

struct hold_result {
  code status = code::ok;
  hold_info hold;          // set for ok, hold_expired, hold_conflict, wrong_state
  int64_t available = 0;   // set for out_of_stock
  std::string message;     // set for invalid, unavailable, storage_full, outcome_unknown
};

struct sku_info {
  std::string sku;
  int64_t on_hand = 0;
  int64_t reserved = 0;
  int64_t price_cents = 0;
  int64_t sold = 0;
  int64_t stocked = 0;
  int64_t active_holds = 0;
  int64_t written_off = 0;  // units removed by stock-take adjustments
  std::string title;        // what a storefront shows; may be empty
  int64_t limit_per_user = 0;  // units one user may hold and buy in all; 0: no limit
  int64_t available() const { return on_hand - reserved; }
};

// The rules every stored and served SKU obeys: counters not negative, 0 <= reserved <=
// on_hand, sold + on_hand + written_off == stocked. Empty when they hold, else which
// one broke and the numbers.
std::string check_invariants(const sku_info& s);

struct sku_result {
  code status = code::ok;
  sku_info sku;  // set for ok, sku_exists, insufficient
  std::string message;
  // list_holds: one page of the SKU's holds in hold-id order, and where the next page
  // starts (empty: nothing follows).
  std::vector<hold_info> holds = {};
  std::string next = {};
};

enum class hold_op_kind : uint8_t { reserve = 0, confirm, release, query, extend, return_hold };
constexpr size_t hold_op_kinds = 6;

// One operation on one hold. For confirm/release/query only hold_id (and sku, if
// known) matter; extend also takes ttl_ms (the hold lasts at least that long from now).
struct hold_op {
  hold_op_kind kind = hold_op_kind::reserve;
  std::string sku;
  std::string hold_id;
  int64_t qty = 0;
  int64_t ttl_ms = 0;
  std::string user;  // reserve: who buys (required by an SKU with a per-user limit)
};

// An operation that names an existing hold (confirm, release, query, extend, return).
inline hold_op hold_ref(hold_op_kind kind, const std::string& hold_id, const std::string& sku) {
  hold_op op;
  op.kind = kind;
  op.hold_id = hold_id;
  op.sku = sku;
  return op;
}

// list_holds: a page of the SKU's holds (`hold list`): active ones from the SKU's memory,
// finished ones from storage while the idempotency window keeps them.
enum class sku_op_kind : uint8_t { create = 0, query, restock, adjust, set_price, list_holds };
// Reads: served while writes are refused, and a late answer is `unavailable`.
inline bool reads_only(sku_op_kind k) { return k == sku_op_kind::query || k == sku_op_kind::list_holds; }

struct sku_op {
  sku_op_kind kind = sku_op_kind::query;
  std::string sku;
  int64_t amount = 0;       // stock (create), qty (restock), on_hand (adjust)
  int64_t price_cents = 0;  // create, set_price
  std::string title;        // create only
  int64_t limit_per_user = 0;  // create only; 0: none
  // list_holds: holds whose ids sort after `after`, in state `state` ("" any, "active",
  // "finished" any ended state, or one state's name), at most `limit` (0: the default).
  std::string after = {};  // (initialized: aggregate initializers of the fields above may stop early)
  std::string state = {};
  uint32_t limit = 0;
};
// list_holds' state filter: true when a hold in state `s` is wanted.
bool hold_state_wanted(const std::string& filter, hold_state s);

// Carts, one per user id, owned by the user's node.
enum class cart_op_kind : uint8_t { view = 0, add, remove, set, clear, take };

struct cart_op {
  cart_op_kind kind = cart_op_kind::view;
  std::string user;
  std::string sku;  // add, remove, set
  int64_t qty = 0;  // add (> 0), set (>= 0; 0 removes the line)
  int64_t price_cents = 0;  // add, set: the SKU's price now (the member that checked it sets it)
  uint64_t version = 0;     // take: the cart as it was read
  std::string order_id;     // take: the order the lines go to
};

struct cart_line {
  std::string sku;
  int64_t qty = 0;
  int64_t price_cents = 0;  // the SKU's price when the line was added or last set
};

struct cart_info {
  std::string user;
  std::vector<cart_line> lines;  // in the order they were added
  uint64_t version = 0;          // counts the cart's changes
  int64_t updated_ms = 0;        // wall clock of the last change; 0: never changed
  std::string taken_by;          // the last checkout's order id
  std::vector<cart_line> taken;  // the lines it took
};

struct cart_result {
  code status = code::ok;
  std::string message;
  cart_info cart;
};

// One page of the catalog, in SKU order.
struct sku_list_query {
  std::string prefix;  // only names starting with it
  std::string after;   // only names after it (the previous page's `next`)
  uint32_t limit = 0;  // at most this many; 0: sku_list_limit_default
};

struct sku_page {
  std::vector<sku_info> skus;
  std::string next;     // empty: the last page
  std::string partial;  // members that could not be asked, and why
  std::string invalid;  // the query was refused, and why
};


// Limits every entry point enforces before anything reaches an actor.
struct request_limits {
  size_t batch_size_max = hold_batch_default;  // hold and SKU operations in one call (--batch-max)
  int64_t qty_max = on_hand_max;  // of a reserve or a restock
  int64_t hold_ttl_min_ms = 1;
  int64_t hold_ttl_max_ms = 7LL * 24 * 3600 * 1000;
  int64_t price_cents_max = 1'000'000'000'000LL;
};

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points
// past U+10FFFF): Cap'n Proto's Text is UTF-8, and names end up in JSON.
bool valid_utf8(const std::string& text);

// Returns an empty string when the operation is well-formed, else why not.
std::string validate(const hold_op& op, const request_limits& limits);
std::string validate(const sku_op& op, const request_limits& limits);
std::string validate(const cart_op& op, const request_limits& limits);
std::string validate(const sku_list_query& q);

hold_result make_hold_error(code status, std::string message = {});
sku_result make_sku_error(code status, std::string message = {});
cart_result make_cart_error(code status, std::string message = {});

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hold_info& x) {
  return f(x.hold_id, x.sku, x.qty, x.state, x.deadline_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hold_result& x) {
  return f(x.status, x.hold, x.available, x.message);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sku_info& x) {
  return f(x.sku, x.on_hand, x.reserved, x.price_cents, x.sold, x.stocked, x.active_holds,
           x.written_off, x.title, x.limit_per_user);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sku_result& x) {
  return f(x.status, x.sku, x.message, x.holds, x.next);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hold_op& x) {
  return f(x.kind, x.sku, x.hold_id, x.qty, x.ttl_ms, x.user);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sku_op& x) {
  return f(x.kind, x.sku, x.amount, x.price_cents, x.title, x.limit_per_user, x.after, x.state, x.limit);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sku_list_query& x) {
  return f(x.prefix, x.after, x.limit);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sku_page& x) {
  return f(x.skus, x.next, x.partial, x.invalid);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_op& x) {
  return f(x.kind, x.user, x.sku, x.qty, x.price_cents, x.version, x.order_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_line& x) {
  return f(x.sku, x.qty, x.price_cents);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_info& x) {
  return f(x.user, x.lines, x.version, x.updated_ms, x.taken_by, x.taken);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_result& x) {
  return f(x.status, x.message, x.cart);
}

}  // namespace holdfast

namespace holdfast {
// "500ms", "30s", "15m", "2h" -> milliseconds; -1 when malformed.
int64_t parse_duration_ms(const std::string& text);
}  // namespace holdfast
