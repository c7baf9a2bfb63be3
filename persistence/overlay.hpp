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

#include "persistence/records.hpp"

namespace holdfast {

// std::hash of a string, remixed (splitmix64's finalizer): the overlay picks its shard
// by std::hash modulo the shard count, so within a shard those low bits are all alike
// and a table indexed by them would use one slot in 64 as a home.
inline uint64_t mix_hash(uint64_t h) {
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

// A hash map of strings: the entries in one dense vector (key, value and 32 bits of the
// key's hash), and an open-addressing index (linear probing, at most half full) of
// 8-byte slots naming them. No node per entry, which at a million holds is what a
// node-based map spent its time and memory on; and growing moves 8-byte slots, not
// whole entries (a table of entries cost a fifth of the node's CPU in rehashes while
// holds accumulated). Iteration walks the dense entries. A pointer from find() or
// operator[] lasts until the next insert or erase.
template <class V>
class flat_string_map {
public:
  flat_string_map() = default;
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  V* find(const std::string& key) {
    if (entries_.empty()) return nullptr;
    auto h = hash(key);
    auto i = probe(key, h);
    return slots_[i] ? &entries_[index_of(slots_[i])].value : nullptr;
  }
  const V* find(const std::string& key) const {
    return const_cast<flat_string_map*>(this)->find(key);
  }
  V& operator[](const std::string& key) {
    // At most half full: a lookup of an absent key (every new hold id) then probes about
    // 2.5 slots where three quarters full took 8.5.
    if ((entries_.size() + 1) * 2 > slots_.size()) rehash(std::max<size_t>(16, slots_.size() * 2));
    auto h = hash(key);
    auto i = probe(key, h);
    if (!slots_[i]) {
      entries_.push_back(entry{key, V{}, h});
      slots_[i] = slot_of(h, entries_.size() - 1);
    }
    return entries_[index_of(slots_[i])].value;
  }
  // Room for `n` keys without growing.
  void reserve(size_t n) {
    entries_.reserve(n);
    size_t want = 16;
    while (want < 2 * n) want *= 2;
    if (want > slots_.size()) rehash(want);
  }
  // Backward-shift deletion in the index (no tombstones, probe chains stay short); the
  // last entry moves into the erased one's place.
  bool erase(const std::string& key) {
    if (entries_.empty()) return false;
    size_t i = probe(key, hash(key));
    if (!slots_[i]) return false;
    size_t gone = index_of(slots_[i]);
    remove_slot(i);
    size_t last = entries_.size() - 1;
    if (gone != last) {
      size_t j = slot_naming(entries_[last].hash, last);
      entries_[gone] = std::move(entries_[last]);
      slots_[j] = slot_of(entries_[gone].hash, gone);
    }
    entries_.pop_back();
    return true;
  }
  template <class F>
  void each(F&& f) const {
    for (auto& e : entries_) f(e.key, e.value);
  }
  template <class F>
  void each(F&& f) {
    for (auto& e : entries_) f(static_cast<const std::string&>(e.key), e.value);
  }
  void clear() {
    std::vector<entry>().swap(entries_);
    std::vector<uint64_t>().swap(slots_);
  }

private:
  struct entry {
    std::string key;
    V value;
    uint32_t hash;  // the low 32 bits of the key's hash: a slot's home, and a filter
  };
  // A slot: 0 empty; else the entry's index + 1 (low 32 bits) and its hash (high 32).
  static uint64_t slot_of(uint32_t h, size_t index) { return (uint64_t{h} << 32) | (index + 1); }
  static size_t index_of(uint64_t slot) { return static_cast<uint32_t>(slot) - 1; }
  static uint32_t hash_of(uint64_t slot) { return static_cast<uint32_t>(slot >> 32); }
  static uint32_t hash(const std::string& key) {
    return static_cast<uint32_t>(mix_hash(std::hash<std::string>{}(key)));
  }
  size_t probe(const std::string& key, uint32_t h) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask)
      if (!slots_[i] || (hash_of(slots_[i]) == h && entries_[index_of(slots_[i])].key == key)) return i;
  }
  // The slot that names entry `index` (whose hash is `h`).
  size_t slot_naming(uint32_t h, size_t index) const {
    size_t mask = slots_.size() - 1;
    size_t i = h & mask;
    while (index_of(slots_[i]) != index) i = (i + 1) & mask;
    return i;
  }
  void remove_slot(size_t i) {
    size_t mask = slots_.size() - 1;
    slots_[i] = 0;
    for (size_t j = (i + 1) & mask; slots_[j]; j = (j + 1) & mask) {
      size_t home = hash_of(slots_[j]) & mask;
      bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (stays) continue;
      slots_[i] = slots_[j];
      slots_[j] = 0;
      i = j;
    }
  }
  void rehash(size_t count) {
    // Slots hold 32 bits of hash: an index of up to 2^32 slots.
    std::vector<uint64_t>(count).swap(slots_);
    size_t mask = count - 1;
    for (size_t k = 0; k < entries_.size(); ++k) {
      size_t i = entries_[k].hash & mask;
      while (slots_[i]) i = (i + 1) & mask;
      slots_[i] = slot_of(entries_[k].hash, k);
    }
  }
  // A vector (an empty deque costs ~600 bytes, and there are maps per SKU): its doublings
  // move entries, which costs a hot SKU's book a few percent while holds accumulate.
  std::vector<entry> entries_;
  std::vector<uint64_t> slots_;
};

// Active hold ids as 64-bit hashes -> a number naming the SKU: 16 bytes a slot, no
// strings (at ten million active holds, strings cost gigabytes and seconds at start).
// Two ids with one hash (about n^2 / 2^65: 3 in a million at ten million active holds)
// make the second look owned by the first's SKU: its reserve answers hold_conflict once
// the directory has asked that SKU, and a confirm naming no SKU asks the wrong one;
// passing the SKU avoids that.
class hash_owner_table {
public:
  static uint64_t hash(const std::string& id) {
    uint64_t h = mix_hash(std::hash<std::string>{}(id));
    return h == 0 ? 1 : h;  // 0 marks an empty slot
  }
  size_t size() const { return size_; }
  const uint32_t* find(uint64_t h) const {
    if (size_ == 0) return nullptr;
    size_t mask = slots_.size() - 1;
    for (size_t i = h & mask; slots_[i].hash != 0; i = (i + 1) & mask)
      if (slots_[i].hash == h) return &slots_[i].owner;
    return nullptr;
  }
  // True when `h` was not there.
  bool put(uint64_t h, uint32_t owner) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(std::max<size_t>(16, slots_.size() * 2));
    size_t mask = slots_.size() - 1;
    size_t i = h & mask;
    for (; slots_[i].hash != 0; i = (i + 1) & mask)
      if (slots_[i].hash == h) {
        slots_[i].owner = owner;
        return false;
      }
    slots_[i] = {h, owner};
    ++size_;
    return true;
  }
  bool erase(uint64_t h) {
    if (size_ == 0) return false;
    size_t mask = slots_.size() - 1;
    size_t i = h & mask;
    while (slots_[i].hash != h) {
      if (slots_[i].hash == 0) return false;
      i = (i + 1) & mask;
    }
    slots_[i] = {};
    --size_;
    for (size_t j = (i + 1) & mask; slots_[j].hash != 0; j = (j + 1) & mask) {
      size_t home = slots_[j].hash & mask;
      bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (stays) continue;
      slots_[i] = slots_[j];
      slots_[j] = {};
      i = j;
    }
    return true;
  }
  void reserve(size_t n) {
    size_t want = 16;
    while (want < 2 * n) want *= 2;
    if (want > slots_.size()) rehash(want);
  }

private:
  struct slot {
    uint64_t hash = 0;
    uint32_t owner = 0;
  };
  void rehash(size_t count) {
    std::vector<slot> old(count);
    old.swap(slots_);
    size_t mask = slots_.size() - 1;
    for (auto& s : old) {
      if (s.hash == 0) continue;
      size_t i = s.hash & mask;
      while (slots_[i].hash != 0) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }
  std::vector<slot> slots_;
  size_t size_ = 0;
};

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
  void apply(const std::vector<mutation>& batch, bool index_active = true);

  // The node-wide claim on hold ids, made in the active-id index itself: one probe per
  // reserve, and the claim simply stays as the id's entry once its hold is durable.
  // `fresh`: the id was in neither the active-id index nor the index of holds that ended
  // since the last snapshot; it is now SKU `number`'s (`sku`'s). `ours`: it already
  // names `sku`. `theirs`: another SKU's, named in `owner`. LMDB's index (ids that ended
  // before the last snapshot) is the caller's to check after a fresh claim.
  enum class claim_outcome { fresh, ours, theirs };
  claim_outcome claim_hold(const std::string& hold_id, const std::string& sku, uint32_t number,
                           std::string& owner);
  // Undoes a fresh claim whose reserve was refused or whose batch failed: the entry goes
  // if it still names `number`.
  void unclaim_hold(const std::string& hold_id, uint32_t number);
  // The number that names `sku` in the active-id index (never reused).
  uint32_t sku_number(const std::string& sku);
  // At open, before the log is replayed: the active holds of one SKU of the snapshot.
  void index_active(const std::vector<hold_record>& holds, const std::string& sku);

  // Reads: true when the overlay knows the key.
  bool find_sku(const std::string& sku, sku_record& out) const;
  bool find_hold_sku(const std::string& hold_id, std::string& sku) const;
  bool find_hold(const std::string& sku, const std::string& hold_id, hold_record& out) const;
  // Every hold of `sku` the overlay knows, latest state, keyed by hold id.
  void holds_of(const std::string& sku, std::unordered_map<std::string, hold_record>& out) const;
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
  std::vector<std::string> names_;
  // The names of the SKUs each generation has records of, in order: one insert per SKU
  // per generation (its first change since the last snapshot), not per commit.
  mutable std::mutex ordered_mutex_;
  std::set<std::string> ordered_[2];
  std::unordered_map<std::string, uint32_t> numbers_;
  static constexpr size_t shard_count = 64;
  shard& shard_of(const std::string& key) const;

  std::unique_ptr<shard[]> shards_;
  std::atomic<int> active_index_{0};  // read under a shard mutex
  std::atomic<size_t> active_mutations_{0};
  std::atomic<size_t> frozen_mutations_{0};
  std::atomic<bool> has_frozen_{false};
  std::atomic<uint64_t> generation_{0};
};

}  // namespace holdfast
