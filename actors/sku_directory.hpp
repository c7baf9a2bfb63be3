// The sku directory: the node's entry point for inventory operations. It validates
// requests, resolves a hold id to its SKU, spawns an sku actor on first use, routes
// each SKU's share of a batch to it, and passivates idle sku actors.
//
// It is the only sender of operations to sku actors (their answers go straight to the
// caller's sink: actors/hold_sink.hpp), which is what makes passivation safe: once it asks an actor to passivate it forwards nothing more to it, holding
// new operations for that SKU until the actor has quit (then a fresh actor loads the
// committed state) or declined (it had a write in flight). A passivated SKU with active
// holds is woken at its earliest deadline, so every hold ends even when nobody asks.
//
// Only SKUs that exist get an actor: an operation on a name with no record (other than
// create) is answered unknown_sku from one index read, so a flood of made-up names costs
// no memory. A reserve refused as hold_conflict because its id is taken on another SKU
// is answered with that hold as its owner reports it.
#pragma once

#include <functional>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "actors/hold_sink.hpp"
#include "actors/sku.hpp"

namespace holdfast {

struct directory_stats {
  int64_t active_actors = 0;
  int64_t scheduled_wakeups = 0;
  int64_t passivations = 0;
  int64_t spawns = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, directory_stats& x) {
  return f(x.active_actors, x.scheduled_wakeups, x.passivations, x.spawns);
}

using directory_actor = caf::typed_actor<
  // The hot path: the answers go to the sink from the SKU actor that applied them.
  caf::reacts_to<hold_ops_atom, std::vector<hold_op>, hold_sink_ptr>,
  // The same as a request (tests and in-process callers).
  caf::replies_to<hold_ops_atom, std::vector<hold_op>>::with<std::vector<hold_result>>,
  // From an SKU actor: answers of which some conflict with a hold on another SKU.
  caf::reacts_to<conflicts_atom, std::vector<hold_op>, std::vector<hold_result>, hold_sink_ptr>,
  caf::replies_to<sku_op_atom, sku_op>::with<sku_result>,
  // Creates: the new SKUs' records go to the store as the directory's own write batches,
  // one group commit for the lot, no SKU actor started. Answers in order.
  caf::replies_to<create_batch_atom, std::vector<sku_op>>::with<std::vector<sku_result>>,
  // The store's answers to those writes (the directory is their writer).
  caf::reacts_to<durable_atom, uint64_t>,
  caf::reacts_to<write_failed_atom, uint64_t, uint64_t, store_status>,
  // The answers to a request's batch (see hold_ops_atom), and an SKU actor's to passivate_atom.
  caf::reacts_to<routed_results_atom, uint64_t, std::vector<hold_result>>,
  caf::reacts_to<passivated_atom, std::string, bool, int64_t>,
  // Ends holds that expired while the node was down; replies with how many SKUs had some.
  caf::replies_to<recover_atom>::with<int64_t>,
  // One page of the catalog from storage (durable state); a read failure is `partial`.
  caf::replies_to<list_skus_atom, sku_list_query>::with<sku_page>,
  caf::reacts_to<idle_check_atom>,
  caf::reacts_to<wake_atom>,
  caf::replies_to<stats_atom>::with<directory_stats>>;

struct directory_config {
  request_limits limits;
  int64_t idle_ms = 30'000;                // an sku actor idle this long is passivated
  int64_t idle_check_interval_ms = 1'000;  // how often idleness is checked
  // Operations held for one SKU while its actor passivates; past it they are answered
  // unavailable. (Mailboxes are bounded upstream: the RPC server admits at most
  // --inflight-max operations, and every queue here holds only admitted operations.)
  size_t deferred_max = 65'536;
  int64_t clock_step_tolerance_ms = 1'000;  // a wall clock this far back was stepped
};

struct directory_state {
  struct entry {
    sku_actor actor;
    int64_t last_used_ms = 0;
    bool passivating = false;
    std::vector<std::function<void()>> deferred;  // arrived while passivating
  };
  // Hold requests waiting for their answers, by token.
  std::unordered_map<uint64_t, caf::typed_response_promise<std::vector<hold_result>>> requests;
  uint64_t next_token = 0;
  sku_context ctx;
  directory_config config;
  std::unordered_map<std::string, entry> actors;
  std::unordered_map<caf::actor_id, std::string> sku_of;
  // Passivated SKUs with holds, by earliest deadline: a min-heap in one allocation. It
  // is the only memory an idle SKU keeps (with a name of up to 15 bytes), and one block
  // keeps the heap compact after the actors' memory is freed around it.
  struct wakeup {
    int64_t deadline_ms;
    std::string sku;
    bool operator>(const wakeup& o) const { return deadline_ms > o.deadline_ms; }
  };
  std::vector<wakeup> wakeups;
  int64_t wake_armed_ms = 0;
  int64_t last_now_ms = 0;  // to notice the wall clock being set back
  int64_t passivations_at_trim = 0;
  // Batch creates written and not yet durable: seq -> how to answer. Their names are in
  // `creating`; an operation on one of them meanwhile answers unavailable.
  struct pending_create {
    std::string sku;
    std::function<void(const store_status*)> answer;  // null: durable
  };
  std::map<uint64_t, pending_create> creates;
  std::unordered_set<std::string> creating;
  uint64_t create_epoch = 0;
  uint64_t create_seq = 0;
  directory_stats stats;
  static inline const char* name = "holdfast.directory";
  // SKU actors are neither linked nor monitored (CAF keeps those in a list that every
  // unlink scans, which is quadratic with a million actors); they report their own
  // exit, and the directory stops them when it goes.
  ~directory_state();
};

directory_actor::behavior_type
directory_behavior(directory_actor::stateful_pointer<directory_state> self, sku_context ctx,
                   directory_config config);

}  // namespace holdfast
