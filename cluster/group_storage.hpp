// One node's replica of a replica group's storage: the storage (persistence/storage.hpp)
// in replicated mode on DIR, and the group's Raft replica (replication/raft_host.hpp) on
// DIR/raft. Each serves the other: the storage's group commits go to Raft as entries
// (replicate: submitted, then waited for until committed on a majority's disks and
// applied here), and the replica's state machine is the storage (apply = the storage's
// apply_committed, the log replay of the unreplicated node). Leadership changes reach
// `on_leading` / `on_following` on the replica's thread (they must not block).
//
// Snapshots: the LMDB snapshot the storage writes in the background is what a restart
// starts from (entries at or below its stamped Raft index are skipped when Raft hands
// them again). A Raft snapshot (libraft asks every `snapshot_threshold` entries on the
// replica's thread, synchronously, then drops the log behind it but `snapshot_trailing`
// entries) is a reference: what waits in memory is written to LMDB, and the snapshot says
// "LMDB at entry N or later" (storage::snapshot_reference), so taking one costs a flush, not
// a read-out of the whole state on the thread that heartbeats. When a follower needs it
// (its next entry is gone from the leader's log), `ship` reads the whole state out of LMDB
// on a libuv pool thread (raft_uv_c.c wraps raft_uv's snapshot_get) and that is sent; the
// follower installs it (storage::install_state) and skips the entries it already covers.
// At a restart libraft hands back this replica's own latest snapshot, which LMDB covers:
// nothing is installed then (a reference LMDB does not cover refuses the start).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>
#include <string>

#include "persistence/storage.hpp"
#include "replication/raft_host.hpp"

namespace holdfast {

struct group_storage_options {
  storage_options storage;            // path: the group's directory on this node
  replication::raft_host_options raft;  // dir: set to storage.path + "/raft"
  // `tenure` counts this replica's changes of leadership (see stamp()): an SKU directory
  // started for one serves only its answers.
  std::function<void(uint64_t term, uint64_t tenure)> on_leading;
  std::function<void(uint64_t tenure)> on_following;
  std::shared_ptr<void> keep_alive;  // held until the replica is closed (its connector)
};

class group_storage final : public replication::state_machine, public replicator {
public:
  // Opens the storage, then starts the replica on it. Null with why on failure.
  static std::unique_ptr<group_storage> open(group_storage_options options,
                                             replication::raft_connector& connector, std::string& error);
  // Closes the replica first (commits in flight answer outcome_unknown, later ones
  // not_leader), then lets go of the storage.
  ~group_storage() override;

  const std::shared_ptr<storage>& store() const { return storage_; }
  replication::raft_host& host() { return *host_; }
  replication::replica_status status() { return host_->status(); }

  // replication::state_machine, on the replica's thread.
  void apply(uint64_t index, std::string_view command) override;
  bool snapshot(std::string& out) override;
  bool restore(std::string_view data) override;
  bool ship(uint64_t index, std::string_view stored, std::string& out) override;
  void leading(uint64_t term) override;
  void following() override;

  // replicator: the storage's commit thread.
  store_status replicate(std::string payload, uint64_t tenure) override;

  // -- answers confirmed by the group ---------------------------------------------
  // An answer computed on this replica while it leads (a read, the replay of a finished
  // write, a write's result) is sent only once an entry this replica submitted *after* the
  // call arrived has committed: that proves no newer leader can have acknowledged anything
  // the answer does not show. A write's own entry is such an entry, so its answer waits for
  // nothing more; an answer with none behind it gets an empty entry (one at a time, for
  // every answer waiting). A replica that lost leadership without knowing it (partitioned,
  // stopped) cannot commit one, so it answers nothing from its memory.
  //
  // Answers are tied to a tenure (bumped at every start and end of leading): one computed
  // by a directory of an earlier tenure is refused, never released by a later tenure's
  // commits.
  //
  // stamp(tenure): taken when a call reaches the directory of `tenure`. after(stamp,
  // release, refuse): runs `release` once an entry submitted after the stamp committed in
  // the same tenure (at once if one has), or `refuse` when the tenure is over (at once if
  // it is), from any thread.
  struct confirmation_stamp {
    uint64_t tenure = 0;
    uint64_t submitted = 0;
  };
  confirmation_stamp stamp(uint64_t tenure);
  void after(confirmation_stamp stamp, std::function<void()> release, std::function<void()> refuse);

private:
  group_storage() = default;
  bool ship_or_throw(uint64_t index, std::string_view stored, std::string& out);
  // `tenure` (0: any): refused (not_leader) unless still leading in it on the replica's thread.
  uint64_t submit_tracked(std::string payload, replication::replica::done_fn done, uint64_t tenure = 0);
  void committed(uint64_t submission);
  void submit_barrier();
  void barrier_done(bool ok);
  void end_tenure();  // and refuses what waits
  void refuse_all();
  struct waiting {
    uint64_t stamp;
    std::function<void()> release, refuse;
  };
  std::mutex confirm_mutex_;
  uint64_t tenure_ = 0;     // odd while leading
  uint64_t submitted_ = 0;  // entries this replica submitted (writes and barriers), counted
  uint64_t confirmed_ = 0;  // the highest submission known committed in this tenure
  bool barrier_in_flight_ = false;
  std::chrono::steady_clock::time_point snapshot_retry_at_{};  // the replica's thread

  std::vector<waiting> waiting_;
  group_storage_options options_;
  std::shared_ptr<storage> storage_;
  std::unique_ptr<replication::raft_host> host_;
};

}  // namespace holdfast
