// The node's one LMDB environment. Reads may come from any thread (each opens its own
// read transaction, MDB_NOTLS); commit() is called only by the store actor. No LMDB
// handle, transaction or MDB_val leaves this file's implementation.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "persistence/records.hpp"

namespace holdfast {

enum class store_status : uint8_t {
  ok = 0,
  not_found,
  map_full,       // the configured map size is used up
  disk_full,      // ENOSPC / EDQUOT
  readers_full,   // reader table full
  corrupt,        // a record failed to decode
  io_error,
};

const char* to_string(store_status s);

struct lmdb_options {
  std::string path;                            // directory, created if missing
  size_t map_size_bytes = size_t{8} << 30;     // upper bound of the data file
  unsigned readers_max = 1024;                 // concurrent read transactions
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
  // The SKU the hold id was first reserved on.
  store_status lookup_hold_sku(const std::string& hold_id, std::string& sku) const;
  // Replays the SKU's hold log; `entries` (if given) gets the number of log entries read.
  store_status read_active_holds(const std::string& sku, std::vector<hold_record>& out,
                                 size_t* entries = nullptr) const;
  // Calls f for every SKU record, in key order.
  store_status scan_skus(const std::function<void(const sku_record&)>& f) const;

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

  private:
    friend class lmdb_env;
    read_view(const impl* env, void* txn, int rc) : env_(env), txn_(txn), rc_(rc) {}
    const impl* env_;
    void* txn_;  // MDB_txn
    int rc_;
  };
  std::unique_ptr<read_view> read() const;

  // -- writes, the store actor only -------------------------------------------
  // Applies every mutation in one transaction and commits it with fsync. All or
  // nothing: on any failure the transaction is aborted.
  store_status commit(const std::vector<const std::vector<mutation>*>& batches);

  // Consistent hot copy with compaction into an empty directory.
  store_status backup(const std::string& directory, std::string& error) const;

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
