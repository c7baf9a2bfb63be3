// The sku actor: the one owner of one SKU's stock and holds on this node. It
// serializes every reservation in its mailbox; no other code changes an SKU.
//
// Every change goes to the store as one write batch per handled message; the reply is
// held back until the store reports that batch durable, so an acknowledged hold
// survives kill -9. A batch from the directory carries its reply sink to the store,
// which answers it when the batch is durable (or failed), in the order the batches were
// sent: the answer does not wait in this actor's mailbox. (Requests answered through the
// mailbox, SKU operations, leave in their own order, not interleaved with those.) One timer is
// armed for the earliest hold deadline. Spawned by the sku directory; loads its state
// from storage when it starts and quits only when the directory passivates it with no
// write in flight. A record that fails its checks at load leaves the actor answering
// `unavailable` with the reason, naming the SKU, and changing nothing.
//
// When the store fails a write, the actor reloads its durable state once and then
// refuses writes at once (storage_full or unavailable, as the store said) for a backoff
// period that doubles while failures repeat, instead of reloading on every refusal;
// reads keep being served.
#pragma once

#include <deque>
#include <functional>
#include <memory>

#include "persistence/clock.hpp"
#include "actors/hold_sink.hpp"
#include "actors/sku_book.hpp"
#include "actors/type_ids.hpp"
#include "persistence/store.hpp"

namespace holdfast {

using sku_actor = caf::typed_actor<
  caf::replies_to<hold_ops_atom, std::vector<hold_op>>::with<std::vector<hold_result>>,
  caf::replies_to<sku_op_atom, sku_op>::with<sku_result>,
  // From the directory: the answers go to the sink (the caller) once durable. (A request
  // per batch would keep a response handler in the directory, and CAF 0.17 keeps those
  // in a flat vector: thousands in flight cost a linear scan each.) Conflicts with a hold
  // on another SKU go back to the directory first (conflicts_atom).
  caf::reacts_to<hold_ops_atom, std::vector<hold_op>, hold_sink_ptr>,
  caf::reacts_to<durable_atom, uint64_t>,
  caf::reacts_to<write_failed_atom, uint64_t, uint64_t, store_status>,
  caf::reacts_to<expire_atom>,
  // Answered with (passivated_atom, sku, quit?, earliest active deadline or 0) to the
  // sender, as a message.
  caf::reacts_to<passivate_atom>>;

// What an sku actor needs from its node; the simulator passes its own.
struct sku_context {
  std::shared_ptr<const storage> env;  // reads
  store_actor store;                    // writes
  std::shared_ptr<const wall_clock> clock;
  int64_t timer_slack_ms = 0;  // extra delay on the expiry timer (0: fire at the deadline)
  // The expiry timer looks at most this far ahead and is re-armed when it fires early. A
  // pending CAF timer message holds a strong reference to its actor, so a passivated
  // actor's memory stays allocated until its last timer fires; the directory sets this
  // to its idle period, and a passivated SKU's later deadlines are the directory's.
  int64_t timer_horizon_ms = 30'000;
  sku_book_policy book;
  std::shared_ptr<hold_claims> claims;  // node-wide; null only in single-SKU tests
  uint64_t tenure = 0;  // replicated SKUs: the leadership tenure its writes carry (store.hpp)
  int64_t storage_backoff_min_ms = 100;   // refuse writes this long after a failed write,
  int64_t storage_backoff_max_ms = 5'000; // doubling up to this while failures repeat
};

struct sku_state {
  sku_context ctx;
  std::unique_ptr<sku_book> book;
  uint64_t epoch = 0;
  uint64_t next_seq = 1;
  uint64_t durable_seq = 0;
  struct pending_reply {
    uint64_t seq;
    std::function<void(const store_status*)> deliver;  // null: durable; else why not
  };
  std::deque<pending_reply> replies;
  int64_t timer_armed_ms = 0;  // when the pending timer message fires, 0 if none
  std::string broken;          // why the SKU cannot be served (failed its load checks)
  store_status storage_failure = store_status::ok;  // the last failed write's status
  int64_t storage_retry_ms = 0;   // writes are refused until then
  int64_t storage_backoff_ms = 0; // the current backoff, 0 after a successful write
  size_t expire_batch = 0;        // holds one change may expire: shrinks after failures
  static inline const char* name = "holdfast.sku";
};

// `known`: the SKU's record as the directory just read it (null: read it here).
sku_actor::behavior_type sku_behavior(sku_actor::stateful_pointer<sku_state> self,
                                      std::string sku, sku_context ctx,
                                      std::shared_ptr<const sku_record> known);

}  // namespace holdfast
