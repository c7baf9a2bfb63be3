// The node's storage: the log (persistence/log.hpp) in front of LMDB snapshots
// (persistence/lmdb_env.hpp), with the overlay (persistence/overlay.hpp) holding what
// the log has and the snapshot not yet.
//
// A group commit is one log append and one fdatasync; then its batches are applied to
// the overlay, and reads see them. In the background a snapshot freezes the overlay,
// writes it to LMDB in one sorted transaction stamped with the log position it covers,
// and deletes the log segments it made redundant. Recovery opens the snapshot and
// replays the log after its position into the overlay. Reads look in the overlay, then
// in LMDB. Finished holds past the idempotency window are deleted from the snapshot by
// the same background thread, in bounded steps.
//
// Replicated mode (`storage_options::replicated`): the group's Raft log takes the node log's
// place. A group commit is handed to the replicator (the group's Raft replica) and returns
// once the entry is committed and applied; apply_committed() is the replica's apply, on
// every replica, for every committed entry in log order: the decode and overlay apply that
// recovery's log replay is. LMDB snapshots are stamped with the Raft index they cover, and
// entries at or below it are skipped when Raft hands them again at a restart: one recovery
// path (snapshot, then the entries after it) in both modes. The directory has no `log/`.
//
// When a snapshot cannot be written (map or disk full) the overlay grows until
// `overlay_mutations_max`; from there commits are refused with the snapshot's status,
// and reads keep working. Commits wait, instead, while a healthy snapshot catches up.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "persistence/clock.hpp"
#include "persistence/lmdb_env.hpp"
#include "persistence/log.hpp"
#include "persistence/overlay.hpp"
#include "protocol/histogram.hpp"

namespace holdfast {

struct storage_options {
  std::string path;                         // data directory, created if missing
  size_t map_size_bytes = size_t{8} << 30;  // upper bound of data.mdb
  unsigned readers_max = 1024;              // concurrent LMDB read transactions
  bool read_only = false;  // check and backup: an existing directory, no lock, no writes
  // Test-only: the log and LMDB are not synced. The power-loss test uses it to prove
  // that it catches a node that acknowledges before the disk has the write.
  bool sync = true;
  uint64_t log_segment_bytes = uint64_t{64} << 20;
  size_t snapshot_mutations = 262'144;      // a snapshot starts once this many changes wait
  int64_t snapshot_interval_ms = 1'000;     // or once changes have waited this long
  size_t overlay_mutations_max = 4'194'304; // changes not yet in a snapshot, at most
  // A thread takes snapshots and collects finished holds. Without it (deterministic
  // tests) commit() snapshots when the overlay is full and maintain() does the rest.
  bool background = true;
  // Finished holds answer repeated calls (idempotency) this long after they ended, then
  // are deleted with their hold-id index entries; the id may then be used again.
  int64_t finished_hold_retention_ms = 24LL * 3600 * 1000;
  int64_t collect_interval_ms = 1'000;  // between collection steps when there is no backlog
  size_t collect_scan_max = 16'384;     // finished holds read per collection step
  std::shared_ptr<const wall_clock> clock;  // null: the system clock
  bool snapshot_at_close = true;  // false: closing is a crash (recovery tests)
  // Read-only: false skips reading the log (a backup copies it instead of replaying it).
  bool replay_log = true;
  // A replica group's storage: commits go through the replicator (see the top), there is
  // no node log. A directory is one or the other for its life.
  bool replicated = false;
};

// Replicated mode: what carries a group commit to the group.
class replicator {
public:
  virtual ~replicator() = default;
  // Appends `payload` as one entry and waits: ok once it is committed and this storage
  // applied it (apply_committed ran); not_leader when refused without being appended;
  // outcome_unknown when it may or may not commit (leadership lost, the replica closing);
  // io_error when the replica refused it (nothing appended). `tenure` (0: any): the
  // leadership tenure the commit's batches were written in; refused with not_leader unless
  // the replica still leads in it when the entry is appended.
  virtual store_status replicate(std::string payload, uint64_t tenure) = 0;
};

struct storage_stats {
  uint64_t log_appends = 0;
  uint64_t log_bytes = 0;
  uint64_t snapshots = 0;
  uint64_t snapshot_failures = 0;
  uint64_t snapshot_mutations = 0;  // changes written by snapshots
  double last_snapshot_ms = 0;
  uint64_t segments_deleted = 0;
  uint64_t commit_waits = 0;        // commits that waited for a snapshot to catch up
  uint64_t finished_collected = 0;
  uint64_t collection_passes = 0;
  uint64_t snapshot_position = 0;
  uint64_t log_position = 0;
  uint64_t log_segments = 0;
  uint64_t overlay_mutations = 0;
  uint64_t entries_applied = 0;     // replicated: committed entries applied
  uint64_t entries_skipped = 0;     // replicated: entries the snapshot already had
  uint64_t states_installed = 0;    // replicated: group states installed (install_state)
  uint64_t applied_index = 0;       // replicated: the last entry applied
  histogram_counts commit_latency;  // a group commit: from the store's call to durable, seconds
  histogram_counts sync_latency;    // the log append's fdatasync, seconds
  histogram_counts commit_batches;  // entities' batches per group commit
};

class storage {
public:
  // Opens (creating if needed) the directory, recovers, and in write mode starts the
  // background thread. On failure returns null and says why (out of memory or threads
  // included: an allocation or a thread start that throws is a failed open, not an abort).
  static std::unique_ptr<storage> open(const storage_options& options, std::string& error);
  // Stops the background thread and (write mode) takes a last snapshot, so the next
  // start replays little.
  ~storage();
  storage(const storage&) = delete;
  storage& operator=(const storage&) = delete;

  // -- reads, any thread ------------------------------------------------------
  store_status read_sku(const std::string& sku, sku_record& out) const;
  store_status lookup_hold_sku(const std::string& hold_id, std::string& sku) const;
  store_status read_active_holds(const std::string& sku, std::vector<hold_record>& out) const;
  // One page of `sku`'s finished holds as they are durable (the overlay's records of holds
  // that ended since the last snapshot overrule the snapshot's; active holds are not read:
  // the SKU's book has them): ids after `after`, in id order, that `wanted` accepts, at
  // most `limit`.
  // At most `scan_max` finished holds are read from the snapshot. `next` is set when more
  // may follow (the last id listed, or the last one read when the scan stopped early).
  store_status hold_page(const std::string& sku, const std::string& after,
                         const std::function<bool(const hold_record&)>& wanted, size_t limit, size_t scan_max,
                         std::vector<hold_record>& out, std::string& next) const;
  // An entity record's latest value: not_found when it was never written or is deleted.
  store_status read_record(record_space space, const std::string& key, std::string& value) const;
  // Every live entity record of `space` (deleted ones left out), in key order.
  store_status scan_records(record_space space, const std::function<void(const entity_record&)>& f) const;
  // The live records of `space` from the first key at or after `from_key`, in key order,
  // at most `max` of them (a page: the order events' reader).
  store_status scan_records_from(record_space space, const std::string& from_key, size_t max,
                                 const std::function<void(const entity_record&)>& f) const;
  // Every SKU record in key order; see lmdb_env::scan_skus.
  store_status scan_skus(const std::function<void(const sku_record&)>& f,
                         std::string& problem) const;
  // Every SKU with active holds, as the node stands (snapshot and log), in no order: its
  // name and its earliest deadline. The first call after open answers from what open's
  // own scan of the records kept, and frees it (the directory's start: one scan of a
  // million records, not two), unless a snapshot has been taken since (the log's
  // records that overrule it would have left the overlay); otherwise, and on later
  // calls, it scans the records.
  store_status scan_skus_with_holds(const std::function<void(const std::string&, int64_t)>& f,
                                    std::string& problem) const;
  // One page of SKUs in name order (durable state); `out.next` is set when more follow.
  store_status list_skus(const sku_list_query& query, sku_page& out, std::string& problem) const;

  // Several reads from one LMDB read transaction, behind the overlay: for a handler
  // that looks up many holds. Lives no longer than the handler that opened it.
  class read_view {
  public:
    store_status lookup_hold_sku(const std::string& hold_id, std::string& sku);
    // LMDB's index alone: ids that ended before the last snapshot (after a claim, which
    // looked in the overlay).
    store_status lookup_snapshot_hold_sku(const std::string& hold_id, std::string& sku) {
      return snapshot().lookup_hold_sku(hold_id, sku);
    }
    store_status read_finished_hold(const std::string& sku, const std::string& hold_id,
                                    hold_record& out);
    store_status has_sku(const std::string& sku);
    void refresh();

  private:
    friend class storage;
    read_view(const storage* s);
    lmdb_env::read_view& snapshot();  // renewed when a snapshot landed since it was opened
    const storage* storage_;
    std::unique_ptr<lmdb_env::read_view> view_;
    uint64_t generation_ = 0;
  };
  std::unique_ptr<read_view> read() const;

  // -- the node-wide claim on hold ids (actors/hold_claims.hpp), any thread -----
  using claim_outcome = overlay::claim_outcome;
  uint32_t sku_number(const std::string& sku) { return overlay_.sku_number(sku); }
  claim_outcome claim_hold_id(const hashed_key& hold_id, const std::string& sku, uint32_t number,
                              std::string& owner) {
    return overlay_.claim_hold(hold_id, sku, number, owner);
  }
  // `hold_id_hash`: the id's std::hash.
  void unclaim_hold_id(size_t hold_id_hash, uint32_t number) { overlay_.unclaim_hold(hold_id_hash, number); }

  // -- writes, the store actor only -------------------------------------------
  struct commit_part {
    std::vector<mutation>* mutations;
    uint64_t writer;
  };
  // Appends every sound batch as one log record and syncs it. A batch that breaks its
  // writer's invariants or a key rule is left out with the same writer's later batches; `part_status` says why. The result is the
  // commit's: on failure nothing was written and every batch failed with it. A batch
  // committed may be moved from (the overlay takes its new holds' records).
  // `tenure`: replicated mode, see replicator::replicate.
  store_status commit(const std::vector<commit_part>& parts, std::vector<store_status>& part_status,
                      uint64_t tenure = 0);

  // -- replicated mode ------------------------------------------------------------
  bool replicated() const { return options_.replicated; }
  // Commits go to `r` from now on (null: refused with not_leader). Waits for a commit in
  // replicate() to return: after attach(nullptr) the old replicator is not used again.
  void attach(replicator* r) {
    std::lock_guard<std::mutex> lock(replicator_mutex_);
    replicator_ = r;
  }
  // The replica's apply: entry `index` of the group's log. False: the payload is not a
  // commit (it changed nothing). Entries at or below applied_index() are skipped. An empty
  // payload is a no-op entry (a leader's read barrier).
  bool apply_committed(uint64_t index, std::string_view payload);
  // The active-id index built again from the durable state: every claim an SKU actor made
  // for a write that never committed goes (a replica that led, stopped leading with writes
  // in flight, and leads again). Applies wait meanwhile.
  store_status rebuild_hold_claims(std::string& problem);
  // The last entry applied (at open: the one the LMDB snapshot covers).
  uint64_t applied_index() const { return applied_index_.load(std::memory_order_acquire); }
  // Raft snapshots, on the replica's thread (no entry is applied meanwhile):
  // A reference to the state at applied_index() (lmdb_env::state_reference): what waits in
  // memory is written to LMDB, which from then on holds that state or a later one. Cheap
  // beside the state itself, which is read out only when a follower needs it (read_state).
  store_status snapshot_reference(std::string& out, uint64_t& index);
  // Any thread: the state as LMDB holds it now, whole (lmdb_env::export_state), and the
  // entry it covers (snapshot_now first: the state at applied_index()).
  store_status read_state(std::string& out, uint64_t& index) const { return env_->export_state(out, index); }
  // The group's state at a later entry than this replica has applied (a replica that fell
  // behind the leader's log): what waits in memory is written, LMDB's contents replaced in
  // one transaction, and the active-hold index rebuilt. A state at or below
  // applied_index() changes nothing: this replica's own snapshot, handed back at a restart
  // (its LMDB is at least that far); so does a reference at or below it. A reference to a
  // later state (this replica's LMDB lost or replaced by an older copy) is refused, and so
  // is anything not sound: corrupt with `problem`.
  store_status install_state(std::string_view state, std::string& problem);

  // -- maintenance --------------------------------------------------------------
  bool background() const { return options_.background; }
  // Without the background thread: a snapshot of whatever waits, then one collection step.
  void maintain();
  // Freezes what waits and writes it now (tests; the destructor).
  store_status snapshot_now();

  // A consistent hot copy (snapshot plus the log after it) into a new or empty
  // directory, marked as a copy of this one and checked by opening it.
  store_status backup(const std::string& directory, std::string& error) const;
  // The snapshot's check, the log's state, and every SKU the log changed checked
  // against its holds.
  check_report check() const;

  const directory_meta& meta() const { return env_->meta(); }
  int64_t clock_high_water_at_open_ms() const { return env_->clock_high_water_at_open_ms(); }
  const std::string& path() const { return env_->path(); }
  lmdb_env::usage space() const { return env_->space(); }
  const log_recovery& recovery() const { return recovery_; }
  storage_stats stats() const;

private:
  static std::unique_ptr<storage> open_or_throw(const storage_options& options, std::string& error);
  storage() = default;
  void run_background();
  store_status snapshot_once();
  store_status commit_replicated(std::vector<std::vector<mutation>*>& batches,
                                 std::unique_lock<std::mutex>& lock,
                                 std::chrono::steady_clock::time_point started, uint64_t tenure);
  void collect_step(int64_t now_ms, bool& backlog);
  int64_t now_ms() const { return options_.clock->now_ms(); }

  storage_options options_;
  std::unique_ptr<lmdb_env> env_;
  std::unique_ptr<node_log> log_;
  overlay overlay_;
  log_recovery recovery_;

  std::mutex snapshot_mutex_;  // one snapshot at a time
  std::mutex commit_mutex_;    // a commit's append + apply; a freeze
  std::condition_variable snapshot_done_;
  uint64_t frozen_position_ = 0;
  std::mutex replicator_mutex_;  // held across replicate(): see attach
  replicator* replicator_ = nullptr;
  std::atomic<uint64_t> applied_index_{0};  // replicated: guarded by commit_mutex_ for writes
  store_status snapshot_status_ = store_status::ok;  // of the last attempt
  // Steady-clock ms when the oldest change not yet frozen was committed; 0: none.
  std::atomic<int64_t> changes_since_ms_{0};

  // SKUs with holds in the snapshot, as a writer's open scan found them all: (earliest
  // deadline, name), until scan_skus_with_holds takes them.
  mutable std::mutex holders_mutex_;
  mutable std::optional<std::vector<std::pair<int64_t, std::string>>> holders_at_open_;
  uint64_t holders_generation_ = 0;  // the overlay's then: a snapshot since makes them stale
  mutable std::mutex stats_mutex_;
  storage_stats stats_;
  histogram commit_us_ = latency_histogram();
  histogram commit_batches_ = size_histogram();
  std::string collect_cursor_;

  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
  bool opened_ = false;  // open() succeeded: closing may take a last snapshot
};

}  // namespace holdfast
