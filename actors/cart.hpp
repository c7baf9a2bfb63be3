// Carts: one cart actor per user id, on the node that owns the user (placement by user
// id, like SKUs by name). The cart directory spawns a user's actor on first use and
// stops it when it has been idle for a while; its state is an entity record (space
// cart), so a stopped or crashed cart comes back as it was last acknowledged.
//
// A change is answered only once its write batch is durable; a view that arrives while
// changes are in flight is answered after them, so nothing shown is ever lost to a
// crash. When the store fails a write, the actor reloads the durable cart and fails
// that change and every later one still in flight.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

#include "actors/type_ids.hpp"
#include "persistence/clock.hpp"
#include "persistence/store.hpp"

namespace holdfast {

// A cart's rules, without CAF.
class cart_book {
public:
  explicit cart_book(std::string user);
  // The durable cart, or an empty one; returns why it cannot be read, empty on success.
  std::string load(const storage& env);
  // Applies `op` (validated); `changed` says whether the cart must be written.
  cart_result apply(const cart_op& op, int64_t now_ms, bool& changed);
  const cart_info& cart() const { return cart_; }
  // The cart as the entity record that persists it.
  entity_record record() const;

private:
  cart_info cart_;
};

using cart_actor = caf::typed_actor<
  caf::replies_to<cart_op_atom, cart_op>::with<cart_result>,
  caf::reacts_to<durable_atom, uint64_t>,
  caf::reacts_to<write_failed_atom, uint64_t, uint64_t, store_status>>;

struct cart_context {
  std::shared_ptr<const storage> env;  // reads
  store_actor store;                    // writes
  std::shared_ptr<const wall_clock> clock;
  int64_t idle_ms = 60'000;  // a cart actor unused this long is stopped
};

struct cart_state {
  cart_context ctx;
  std::unique_ptr<cart_book> book;
  std::string broken;  // why the cart cannot be served (its record failed to load)
  uint64_t epoch = 0;
  uint64_t next_seq = 1;
  struct pending_reply {
    uint64_t seq;  // durable from this batch on (a view: the last batch before it)
    caf::typed_response_promise<cart_result> promise;
    cart_result answer;
    bool view;
  };
  std::deque<pending_reply> replies;
  static inline const char* name = "holdfast.cart";
};

cart_actor::behavior_type cart_behavior(cart_actor::stateful_pointer<cart_state> self, std::string user,
                                        cart_context ctx);

using cart_directory_actor = caf::typed_actor<
  // Operations of any users; one answer each, in order.
  caf::replies_to<cart_ops_atom, std::vector<cart_op>>::with<std::vector<cart_result>>,
  caf::reacts_to<idle_check_atom>,
  // Cart actors running now.
  caf::replies_to<stats_atom>::with<int64_t>>;

struct cart_directory_state {
  cart_context ctx;
  struct entry {
    cart_actor actor;
    int64_t last_used_ms = 0;
    size_t inflight = 0;  // requests sent and not answered: it is stopped only at 0
  };
  std::unordered_map<std::string, entry> carts;
  bool sweep_armed = false;
  static inline const char* name = "holdfast.carts";
};

cart_directory_actor::behavior_type cart_directory_behavior(
  cart_directory_actor::stateful_pointer<cart_directory_state> self, cart_context ctx);

}  // namespace holdfast
