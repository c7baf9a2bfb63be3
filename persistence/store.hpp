// The store actor: the only writer of the node's storage (persistence/storage.hpp).
//
// Entities send write batches tagged (epoch, seq), each with an optional `done` callback. The store gathers every batch that
// arrived while the previous commit was in flight into one group commit (one log
// append, one fdatasync), then calls each batch's `done` and tells each writer the highest seq now durable. If a commit fails
// (map or disk full) every writer in it hears write_failed(epoch, seq, status) and the
// store refuses that writer's later batches of the same epoch, so nothing written after
// a failure can make the failed changes durable. The writer reloads its state from
// storage and continues with epoch + 1. A batch that fails on its own (it breaks its
// writer's invariants or a key rule) fails only its writer; the others commit.
//
// Snapshots and the collection of finished holds run on the storage's own thread; when
// the storage has none (deterministic tests) the store's collect_atom timer runs them.
//
// Spawn it detached in a node (an fsync must not block a CAF worker); tests spawn it
// on the deterministic scheduler.
#pragma once

#include <atomic>
#include <functional>
#include <memory>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "persistence/clock.hpp"
#include "persistence/storage.hpp"
#include "persistence/type_ids.hpp"

namespace holdfast {

struct write_batch {
  uint64_t epoch = 0;
  uint64_t seq = 0;
  std::vector<mutation> mutations;  // may be empty: a batch that only waits its turn
  // Called once by the store, on its thread, when the batch is durable (nullptr) or has
  // failed (why): an answer that waits for the disk leaves from there, not through the
  // writer's mailbox. Local only: not serialized.
  std::function<void(const store_status*)> done;
  // Replicated SKUs: the leadership tenure of the directory whose actor wrote it; a batch
  // of an earlier tenure than the store's fence fails with not_leader (a killed
  // directory's actors may have left batches in the store's mailbox). Local only.
  uint64_t tenure = 0;
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
  uint64_t snapshots = 0;            // LMDB snapshots written
  uint64_t snapshot_position = 0;    // the log record the latest snapshot covers
  uint64_t log_position = 0;         // the latest log record
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, store_stats& x) {
  return f(x.commits, x.failed_commits, x.batches, x.mutations, x.largest_commit_mutations,
           x.largest_commit_batches, x.rejected_batches, x.finished_collected,
           x.collection_passes, x.snapshots, x.snapshot_position, x.log_position);
}

// What a writer tells its caller when the store failed its write.
inline code code_for(store_status s) {
  if (s == store_status::outcome_unknown) return code::outcome_unknown;
  return s == store_status::map_full || s == store_status::disk_full ? code::storage_full
                                                                     : code::unavailable;
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
  // Replicated SKUs: batches of a tenure below this fail (see write_batch::tenure). Null: none.
  std::shared_ptr<std::atomic<uint64_t>> fence;
  int64_t collect_interval_ms = 1'000;  // maintenance steps of a storage without a thread
};

struct store_state {
  struct pending {
    store_listener writer;
    write_batch batch;
  };
  std::shared_ptr<storage> env;
  store_config config;
  std::vector<pending> batches;
  size_t mutations_pending = 0;
  bool flush_scheduled = false;
  // writer -> (failed epoch, why): later batches of that epoch are refused.
  std::unordered_map<caf::actor_id, std::pair<uint64_t, store_status>> poisoned;
  store_stats stats;
  static inline const char* name = "holdfast.store";
};

store_actor::behavior_type store_behavior(store_actor::stateful_pointer<store_state> self,
                                          std::shared_ptr<storage> env, store_config config);

}  // namespace holdfast
