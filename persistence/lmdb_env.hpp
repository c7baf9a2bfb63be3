// The node's LMDB environment: the snapshot half of its storage (persistence/storage.hpp
// puts the log in front of it). Reads may come from any thread (each opens its own read
// transaction, MDB_NOTLS); write_snapshot() and collect_finished() are called by one
// thread at a time. No LMDB handle, transaction or MDB_val leaves this file's
// implementation.
//
// Databases: `skus` (name -> record), `hold_log` ((sku, block number) -> the holds one
// snapshot changed; replayed from the SKU's checkpoint block they give its active holds),
// `finished_holds` ((sku, hold id) -> record), `hold_index` (hold id -> sku), `meta` (the
// directory record, with the log position the snapshot covers). Opening checks that the directory is the node's alone
// and still holds its data (persistence/data_directory.hpp) and that data.mdb is not
// truncated. Every record carries a checksum; SKU records are checked against their
// invariants when read.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "persistence/overlay.hpp"
#include "persistence/records.hpp"

namespace holdfast {

// LMDB's longest key (its default MDB_MAXKEYSIZE). Every key the store builds must fit:
constexpr size_t lmdb_key_bytes_max = 511;
static_assert(sku_bytes_max + 1 + hold_id_bytes_max <= lmdb_key_bytes_max,
              "finished_holds key: sku, NUL, hold id");
static_assert(hold_id_bytes_max <= lmdb_key_bytes_max, "hold_index key: hold id");
static_assert(sku_bytes_max + 1 + 8 <= lmdb_key_bytes_max, "hold_log key: sku, NUL, block");

enum class store_status : uint8_t {
  ok = 0,
  not_found,
  map_full,       // the configured map size is used up
  disk_full,      // ENOSPC / EDQUOT
  readers_full,   // reader table full
  corrupt,        // a record failed its checksum, decoding or invariants
  io_error,
  rejected,       // a write batch failed its checks: only its writer fails
  // A log append failed and could not be undone (it may or may not be replayed at the
  // next start), or a replica lost its group's leadership with the entry in flight (the
  // next leader may or may not commit it): callers hear outcome_unknown and retry with
  // the same ids.
  outcome_unknown,
  // Replicated mode: this replica does not lead its group; nothing was appended.
  not_leader,
};

const char* to_string(store_status s);

struct lmdb_options {
  std::string path;                            // directory, created if missing
  size_t map_size_bytes = size_t{8} << 30;     // upper bound of the data file
  unsigned readers_max = 1024;                 // concurrent read transactions
  bool read_only = false;  // backup and check: an existing directory, no lock, no writes
  // Test-only: MDB_NOSYNC, commits are not fsync'd. The power-loss test uses it to prove
  // that it catches a node that acknowledges before the disk has the write.
  bool sync = true;
};

// What `holdfast check` found.
struct check_report {
  int64_t skus = 0, active_holds = 0, finished_holds = 0, index_entries = 0, records = 0;
  int64_t log_records = 0;        // in the log after the snapshot
  uint64_t snapshot_position = 0; // the last log record the snapshot contains
  uint64_t log_torn_bytes = 0;    // a torn tail the next start cuts
  std::vector<std::string> problems;  // empty: the directory is sound
};

// One step of finished-hold collection.
struct collect_result {
  store_status status = store_status::ok;
  size_t scanned = 0;
  size_t deleted = 0;
  bool wrapped = false;  // the scan reached the end and starts over next time
};

class lmdb_env {
  struct impl;

public:
  // Opens (creating if needed) the environment; on failure returns null and says why.
  static std::unique_ptr<lmdb_env> open(const lmdb_options& options, std::string& error);
  ~lmdb_env();
  lmdb_env(const lmdb_env&) = delete;
  lmdb_env& operator=(const lmdb_env&) = delete;

  // -- reads, any thread ------------------------------------------------------
  store_status read_sku(const std::string& sku, sku_record& out) const;
  // An entity record by record_key(); not_found when LMDB has none.
  store_status read_record(const std::string& key, entity_record& out) const;
  // Reads every entity record: each must pass its checksum and sit under its own key (a
  // record under another key would read as missing: a buyer's purchases as none).
  // corrupt with `problem` naming the first that does not.
  store_status verify_records(std::string& problem, int64_t* count = nullptr) const;
  // Every entity record of `space`, in key order.
  // From the first key at or after `from_key`, at most `max` records.
  store_status scan_records(record_space space, const std::function<void(const entity_record&)>& f,
                            const std::string& from_key = {}, size_t max = SIZE_MAX) const;
  // The SKU the hold id was first reserved on.
  store_status lookup_hold_sku(const std::string& hold_id, std::string& sku) const;
  store_status read_active_holds(const std::string& sku, std::vector<hold_record>& out) const;
  // The ids of the active holds of each of `skus` (best in key order), from one read
  // transaction and one cursor: `f(sku, status, ids)` for each, until it answers false
  // (the views are valid during the call). Only ids and states are decoded: indexing the
  // active ids at open needs nothing else. Returns why the transaction could not be had;
  // each SKU's own outcome goes to `f`.
  store_status read_active_hold_ids_of(
    const std::vector<std::string>& skus,
    const std::function<bool(const std::string&, store_status, const std::vector<std::string_view>&)>& f) const;
  // `sku`'s finished holds with ids after `after`, in id order, while `f` returns true.
  store_status scan_finished_holds(const std::string& sku, const std::string& after,
                                   const std::function<bool(const hold_record&)>& f) const;
  // Calls f for every SKU record, in key order. A record that fails its checksum or
  // invariants stops the scan with `corrupt`, and `problem` names it.
  store_status scan_skus(const std::function<void(const sku_record&)>& f,
                         std::string& problem) const;
  // The same from the first name at or after `from`, until `f` answers false.
  store_status scan_skus_from(const std::string& from,
                              const std::function<bool(const sku_record&)>& f,
                              std::string& problem) const;

  // Several reads from one read transaction: for a handler that looks up many holds.
  // Lives no longer than the handler that opened it.
  class read_view {
  public:
    ~read_view();
    read_view(const read_view&) = delete;
    read_view& operator=(const read_view&) = delete;
    store_status lookup_hold_sku(const std::string& hold_id, std::string& sku);
    // A hold of `sku` that has ended (confirmed, released, expired).
    store_status read_finished_hold(const std::string& sku, const std::string& hold_id,
                                    hold_record& out);
    // ok when the SKU has a record, not_found when not.
    store_status has_sku(const std::string& sku);
    // Moves the view to the latest commit.
    void refresh();

  private:
    friend class lmdb_env;
    read_view(const impl* env, void* txn, int rc) : env_(env), txn_(txn), rc_(rc) {}
    const impl* env_;
    void* txn_;  // MDB_txn
    int rc_;
  };
  std::unique_ptr<read_view> read() const;

  // -- writes, one thread at a time ---------------------------------------------
  // Writes a frozen overlay generation in one transaction, stamps it with the log
  // position it covers (and the clock's high-water mark), and commits it with fsync.
  // On failure nothing was written.
  store_status write_snapshot(const snapshot_contents& contents, uint64_t position,
                              int64_t now_ms);

  // Deletes finished holds (and their hold-id index entries) that ended at or before
  // `ended_before_ms`, scanning at most `scan_max` records from `cursor` on, which it
  // advances, and records `now_ms` as the clock's high-water mark if it is later. One
  // transaction.
  collect_result collect_finished(int64_t ended_before_ms, size_t scan_max, std::string& cursor,
                                  int64_t now_ms);

  // -- the whole state, as a replica group ships it (a Raft snapshot) ------------------
  // Every record of the data databases from one read transaction, with the position that
  // transaction's snapshot covers, checksummed. The directory record (the directory's
  // identity) is not part of it.
  store_status export_state(std::string& out, uint64_t& position) const;
  // Replaces every data database's contents with `state` (export_state's) and stamps the
  // snapshot with its position, in one transaction; the directory record keeps its
  // identity. A state that fails its checksum, its framing, key order, or a record's own
  // check is refused as corrupt with `problem`, and nothing changes.
  store_status import_state(std::string_view state, int64_t now_ms, uint64_t& position,
                            std::string& problem);
  // A reference to the state as LMDB holds it at `position` or later (a Raft snapshot
  // that costs nothing to take: the state itself is read out when it is sent), checksummed.
  static std::string state_reference(uint64_t position);
  static bool is_state_reference(std::string_view state);
  // The position a state or a reference says it covers (a state's header alone; a
  // reference whole, checksum included); false: neither.
  static bool state_position(std::string_view state, uint64_t& position);

  // Consistent hot copy with compaction of data.mdb into `directory`, synced.
  store_status copy_to(const std::string& directory, std::string& error) const;

  // Reads the whole snapshot: checksums, SKU invariants, every SKU's holds against its
  // counters, the hold-id index.
  check_report check() const;

  const directory_meta& meta() const;
  class data_directory& directory() const;
  // The snapshot position recorded in the data.mdb of `directory` (a backup's copy).
  static bool read_snapshot_position(const std::string& directory, uint64_t& position,
                                     std::string& error);
  // The latest wall-clock time a node recorded in this directory before this open.
  int64_t clock_high_water_at_open_ms() const;
  const std::string& path() const;

  struct usage {
    size_t map_size_bytes;
    size_t used_bytes;
  };
  usage space() const;

private:
  explicit lmdb_env(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace holdfast
