// The store actor: the only writer of the node's LMDB environment.
//
// Entities send write batches tagged (epoch, seq). The store gathers every batch that
// arrived while the previous commit was in flight into one fsync'd transaction (group
// commit), then tells each writer the highest seq now durable. If a commit fails
// (map or disk full) every writer in it hears write_failed(epoch, seq, status) and the
// store refuses that writer's later batches of the same epoch, so nothing written after
// a failure can make the failed changes durable. The writer reloads its state from
// LMDB and continues with epoch + 1. A batch that fails on its own (it breaks its
// writer's invariants or a key rule) fails only its writer; the others commit.
//
// Between commits the store deletes finished holds older than the idempotency window,
// in bounded batches (collect_atom, on a timer).
//
// Spawn it detached in a node (an fsync must not block a CAF worker); tests spawn it
// on the deterministic scheduler.
#pragma once

#include <memory>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "persistence/clock.hpp"
#include "persistence/lmdb_env.hpp"
#include "persistence/type_ids.hpp"

namespace holdfast {

struct write_batch {
  uint64_t epoch = 0;
  uint64_t seq = 0;
  std::vector<mutation> mutations;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, write_batch& x) {
  return f(x.epoch, x.seq, x.mutations);
}

struct store_stats {
  uint64_t commits = 0;
  uint64_t failed_commits = 0;
  uint64_t batches = 0;
  uint64_t mutations = 0;
  uint64_t largest_commit_mutations = 0;
  uint64_t largest_commit_batches = 0;
  uint64_t rejected_batches = 0;     // failed alone; their writers heard why
  uint64_t finished_collected = 0;   // finished holds deleted after the window
  uint64_t collection_passes = 0;    // full scans of the finished holds completed
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, store_stats& x) {
  return f(x.commits, x.failed_commits, x.batches, x.mutations, x.largest_commit_mutations,
           x.largest_commit_batches, x.rejected_batches, x.finished_collected,
           x.collection_passes);
}

// What a writer must understand to use the store.
using store_listener = caf::typed_actor<
  caf::reacts_to<durable_atom, uint64_t>,
  caf::reacts_to<write_failed_atom, uint64_t, uint64_t, store_status>>;

using store_actor = caf::typed_actor<
  caf::reacts_to<write_atom, store_listener, write_batch>,
  caf::reacts_to<flush_atom>,
  caf::reacts_to<collect_atom>,
  caf::replies_to<stats_atom>::with<store_stats>>;

struct store_config {
  size_t commit_mutations_max = 16384;  // a larger backlog commits without waiting
  // Finished holds answer repeated calls (idempotency) this long after they ended, then
  // are deleted with their hold-id index entries; the id may then be used again.
  int64_t finished_hold_retention_ms = 24LL * 3600 * 1000;
  int64_t collect_interval_ms = 1'000;  // between collection steps when there is no backlog
  size_t collect_scan_max = 16'384;     // finished holds read per collection step
};

struct store_state {
  struct pending {
    store_listener writer;
    write_batch batch;
  };
  std::shared_ptr<lmdb_env> env;
  std::shared_ptr<const wall_clock> clock;
  store_config config;
  std::string collect_cursor;  // where the next collection step resumes
  std::vector<pending> batches;
  size_t mutations_pending = 0;
  bool flush_scheduled = false;
  // writer -> (failed epoch, why): later batches of that epoch are refused.
  std::unordered_map<caf::actor_id, std::pair<uint64_t, store_status>> poisoned;
  store_stats stats;
  static inline const char* name = "holdfast.store";
};

store_actor::behavior_type store_behavior(store_actor::stateful_pointer<store_state> self,
                                          std::shared_ptr<lmdb_env> env, store_config config,
                                          std::shared_ptr<const wall_clock> clock);

}  // namespace holdfast
