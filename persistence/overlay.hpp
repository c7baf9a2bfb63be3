// What the log has and the LMDB snapshot does not yet: the latest state of every SKU
// record and hold changed since the last snapshot, and the hold-id index entries of the
// holds that ended since. Reads look here first, then in LMDB.
//
// Besides, the index of every active hold's id (node-wide, in memory only: the snapshot
// indexes ids once their holds end). It is filled from the snapshot's active holds at
// open and kept by apply().
//
// Two generations: `active` takes the commits; a snapshot freezes it (it becomes
// `frozen`, a new active starts), writes the frozen one to LMDB and drops it. Sharded
// by key hash, one mutex per shard, so SKU actors on many threads read while the store
// thread applies a commit. `generation()` counts freezes and drops: a reader holding an
// LMDB read transaction older than the latest change of generation renews it before
// trusting a miss here.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "persistence/compact_tables.hpp"
#include "persistence/records.hpp"

namespace holdfast {

// What a snapshot writes, sorted by key.
struct snapshot_contents {
  struct sku_changes {
    const sku_record* record;
    std::vector<const hold_record*> holds;  // the latest state of each hold it changed
  };
  std::vector<sku_changes> skus;              // by name
  std::vector<const hold_record*> ended;      // holds that ended, by (sku, hold id)
  // (id, sku) of the holds that ended, by id
  std::vector<std::pair<const std::string*, const std::string*>> index;
  // (record_key, latest state) of the entity records written, by key
  std::vector<std::pair<const std::string*, const entity_record*>> records;
  size_t mutations = 0;
};

class overlay {
public:
  overlay();
  ~overlay();
  overlay(const overlay&) = delete;
  overlay& operator=(const overlay&) = delete;

  // The store thread (or recovery): one write batch, already durable in the log. Its
  // active holds enter the active-id index only when `index_active` (recovery): a
  // commit's new holds are there already, put by their reserves' claims.
  // Without `index_active`, the batch's active hold records are moved into the overlay
  // (the batch is the store's, done with once committed): a copy of each was an
  // allocation and a copy of its id on the store thread.
  void apply(std::vector<mutation>& batch, bool index_active = true);

  // The node-wide claim on hold ids, made in the active-id index itself: one probe per
  // reserve, and the claim simply stays as the id's entry once its hold is durable.
  // `fresh`: the id was in neither the active-id index nor the index of holds that ended
  // since the last snapshot; it is now SKU `number`'s (`sku`'s). `ours`: an active entry
  // already names `sku`. `ended_ours`: a hold of `sku` with this id ended since the last
  // snapshot, and the id is claimed again for `sku` (its finished record may be collected
  // before the caller reads it: a grant then is indexed all the same; a repeat gives the
  // claim back). `theirs`: another SKU's, named in `owner`. LMDB's index (ids that ended
  // before the last snapshot) is the caller's to check after a fresh claim.
  enum class claim_outcome { fresh, ours, ended_ours, theirs };
  claim_outcome claim_hold(const hashed_key& hold_id, const std::string& sku, uint32_t number,
                           std::string& owner);
  claim_outcome claim_hold(const std::string& hold_id, const std::string& sku, uint32_t number,
                           std::string& owner) {
    return claim_hold(hashed_key(hold_id), sku, number, owner);
  }
  // Undoes a fresh claim whose reserve was refused or whose batch failed: the entry goes
  // if it still names `number`.
  // `hold_id_hash`: the id's std::hash (what a claimer keeps instead of a copy of the id).
  void unclaim_hold(size_t hold_id_hash, uint32_t number);
  void unclaim_hold(const std::string& hold_id, uint32_t number) {
    unclaim_hold(std::hash<std::string>{}(hold_id), number);
  }
  // The number that names `sku` in the active-id index (never reused).
  uint32_t sku_number(const std::string& sku);
  // At open, before the log is replayed: the snapshot's active hold ids, many SKUs' at
  // a time, gathered by shard so that each shard is locked once per batch.
  class active_batch {
  public:
    active_batch() : by_shard_(shard_count) {}
    // `number`: the hold's SKU, from sku_number().
    void add(std::string_view hold_id, uint32_t number);
    void clear();

  private:
    friend class overlay;
    std::vector<std::vector<std::pair<uint64_t, uint32_t>>> by_shard_;  // (id hash, number)
  };
  void index_active(active_batch& batch);
  // Empties the active-id index (claims included): before it is built again from the
  // durable state (storage::rebuild_hold_claims).
  void clear_active_index();

  // Reads: true when the overlay knows the key.
  bool find_sku(const std::string& sku, sku_record& out) const;
  bool find_hold_sku(const std::string& hold_id, std::string& sku) const;
  bool find_hold(const std::string& sku, const std::string& hold_id, hold_record& out) const;
  // Every hold of `sku` the overlay knows, its latest state, each once (appended to `out`).
  void holds_of(const std::string& sku, std::vector<hold_record>& out) const;
  // The holds of `sku` that ended since the last snapshot (the latest record of each id)
  // with ids after `after` that `wanted` accepts: the first `max` in id order. Copies
  // only those: a hot SKU's changes are walked in place under its shard's mutex.
  std::vector<hold_record> ended_holds(const std::string& sku, const std::string& after,
                                       const std::function<bool(const hold_record&)>& wanted, size_t max) const;
  void each_sku(const std::function<void(const sku_record&)>& f) const;
  // Up to `max` names of SKUs the overlay has records of, in order, from the first after
  // `after` that starts with `prefix` (the catalog's page, without a walk of the overlay).
  std::vector<std::string> sku_names(const std::string& prefix, const std::string& after, size_t max) const;
  // `key` as record_key() makes it; true when the overlay knows it (maybe as deleted).
  bool find_record(const std::string& key, entity_record& out) const;
  // Every entity record of `space` the overlay knows, latest state, by key (at start).
  void records_of(record_space space, std::map<std::string, entity_record>& out) const;

  size_t active_mutations() const { return active_mutations_.load(std::memory_order_relaxed); }
  size_t frozen_mutations() const { return frozen_mutations_.load(std::memory_order_relaxed); }
  bool has_frozen() const { return has_frozen_.load(std::memory_order_acquire); }
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // The snapshot thread. freeze() must not run concurrently with apply().
  void freeze();
  snapshot_contents frozen_contents() const;  // valid until drop_frozen()
  void drop_frozen();

private:
  struct sku_entry {
    bool has_record = false;
    sku_record record;
    // Hold changes in commit order: active states appended (no lookup on the store
    // thread), ended ones by id (repeated calls look them up). An ended state overrules
    // an active one of the same generation.
    // A deque: a hot SKU appends hundreds of thousands between snapshots, and a vector
    // relocated them all at every doubling (7% of the node's CPU in bench hot-sku 1b).
    // Made on the first change: an empty libstdc++ deque already holds ~600 bytes, and a
    // generation may touch a million SKUs.
    std::unique_ptr<std::deque<hold_record>> active_changes;
    std::deque<hold_record>& changes() {
      if (!active_changes) active_changes = std::make_unique<std::deque<hold_record>>();
      return *active_changes;
    }
    size_t change_count() const { return active_changes ? active_changes->size() : 0; }
    template <class F>
    void each_change(F&& f) const {
      if (active_changes)
        for (auto& h : *active_changes) f(h);
    }
    flat_string_map<hold_record> ended;
  };
  struct generation_maps {
    flat_string_map<sku_entry> skus;
    flat_string_map<std::string> index;
    flat_string_map<entity_record> records;  // by record_key()
  };
  struct shard {
    mutable std::mutex mutex;
    generation_maps gens[2];  // [active_index_], the other frozen
    hash_owner_table active;  // active hold id (hash) -> sku number, all generations
  };
  // SKU names by number, for the active-id index; numbers are never reused.
  std::string sku_name(uint32_t number) const;
  mutable std::mutex names_mutex_;
  name_table names_;
  // The names of the SKUs each generation has records of, in order: one insert per SKU
  // per generation (its first change since the last snapshot), not per commit.
  mutable std::mutex ordered_mutex_;
  std::set<std::string> ordered_[2];
  static constexpr size_t shard_count = 64;
  shard& shard_of(const std::string& key) const;
  shard& shard_of_hash(size_t std_hash) const { return shards_[std_hash % shard_count]; }

  std::unique_ptr<shard[]> shards_;
  std::atomic<int> active_index_{0};  // read under a shard mutex
  std::atomic<size_t> active_mutations_{0};
  std::atomic<size_t> frozen_mutations_{0};
  std::atomic<bool> has_frozen_{false};
  std::atomic<uint64_t> generation_{0};
};

}  // namespace holdfast
