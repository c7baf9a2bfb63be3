// Compact tables for the node's largest indexes: no node per entry, few pointers. At a
// million holds or SKUs, node-based maps cost most of the CPU and memory of the paths
// that use them (see each table).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "persistence/table_memory.hpp"

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

// A string key and its std::hash, computed once for every table that indexes the key: a
// reserve's hold id is looked up in the book's holds, the claims' shard and slot and the
// indexes of holds that ended, and each hashed all 36 bytes of it again.
struct hashed_key {
  explicit hashed_key(const std::string& k) : key(k), hash(std::hash<std::string>{}(k)) {}
  const std::string& key;
  size_t hash;
};

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
  V* find(const hashed_key& k) {
    if (entries_.empty()) return nullptr;
    auto h = hash(k);
    auto i = probe(k.key, h);
    return slots_[i] ? &entries_[index_of(slots_[i])].value : nullptr;
  }
  const V* find(const hashed_key& k) const { return const_cast<flat_string_map*>(this)->find(k); }
  V* find(const std::string& key) { return find(hashed_key(key)); }
  const V* find(const std::string& key) const { return find(hashed_key(key)); }
  V& operator[](const hashed_key& k) {
    // At most half full: a lookup of an absent key (every new hold id) then probes about
    // 2.5 slots where three quarters full took 8.5.
    if ((entries_.size() + 1) * 2 > slots_.size()) rehash(std::max<size_t>(16, slots_.size() * 2));
    auto h = hash(k);
    auto i = probe(k.key, h);
    if (!slots_[i]) {
      entries_.push_back(entry{k.key, V{}, h});
      slots_[i] = slot_of(h, entries_.size() - 1);
    }
    return entries_[index_of(slots_[i])].value;
  }
  V& operator[](const std::string& key) { return (*this)[hashed_key(key)]; }
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
    size_t i = probe(key, hash(hashed_key(key)));
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
  // The 32 bits of `key`'s hash an entry keeps.
  static uint32_t hash(const hashed_key& k) { return static_cast<uint32_t>(mix_hash(k.hash)); }
  static uint32_t hash(const std::string& key) { return hash(hashed_key(key)); }
  // The key of an entry whose hash is `h` and whose value `pred` accepts, null if none:
  // for a caller that remembers an entry by hash and some of its value (a deadline)
  // rather than by a copy of its key. Several may qualify; this is one of them.
  template <class P>
  const std::string* find_key(uint32_t h, P&& pred) const {
    if (entries_.empty()) return nullptr;
    size_t mask = slots_.size() - 1;
    for (size_t i = h & mask; slots_[i]; i = (i + 1) & mask)
      if (hash_of(slots_[i]) == h && pred(entries_[index_of(slots_[i])].value))
        return &entries_[index_of(slots_[i])].key;
    return nullptr;
  }
  void clear() {
    decltype(entries_)().swap(entries_);
    decltype(slots_)().swap(slots_);
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
    decltype(slots_)(count).swap(slots_);
    size_t mask = count - 1;
    for (size_t k = 0; k < entries_.size(); ++k) {
      size_t i = entries_[k].hash & mask;
      while (slots_[i]) i = (i + 1) & mask;
      slots_[i] = slot_of(entries_[k].hash, k);
    }
  }
  // A vector (an empty deque costs ~600 bytes, and there are maps per SKU): its doublings
  // move entries, which costs a hot SKU's book a few percent while holds accumulate.
  // Both in table memory: a hot SKU's book grows to tens of megabytes during a sale.
  std::vector<entry, table_allocator<entry>> entries_;
  std::vector<uint64_t, table_allocator<uint64_t>> slots_;
};

// Active hold ids as 64-bit hashes -> a number naming the SKU: 16 bytes a slot, no
// strings (at ten million active holds, strings cost gigabytes and seconds at start).
// Two ids with one hash (about n^2 / 2^65: 3 in a million at ten million active holds)
// make the second look owned by the first's SKU: its reserve answers hold_conflict once
// the directory has asked that SKU, and a confirm naming no SKU asks the wrong one;
// passing the SKU avoids that.
class hash_owner_table {
public:
  static uint64_t hash(const std::string& id) { return of_std_hash(std::hash<std::string>{}(id)); }
  // The same from the id's std::hash, for a caller that has it already.
  static uint64_t of_std_hash(size_t std_hash) {
    uint64_t h = mix_hash(std_hash);
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
    decltype(slots_) old(count);
    old.swap(slots_);
    size_t mask = slots_.size() - 1;
    for (auto& s : old) {
      if (s.hash == 0) continue;
      size_t i = s.hash & mask;
      while (slots_[i].hash != 0) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }
  std::vector<slot, table_allocator<slot>> slots_;
  size_t size_ = 0;
};

// Where in a sequence each string id was first seen, when the ids live in the items
// themselves: slots of (hash, position), no copy of any id. Deduplicates a snapshot's
// hold changes (one state per hold) and a replay of hold-log blocks (the latest state
// of each hold), where a map keyed by copies of the ids cost an allocation per hold.
class first_seen_index {
public:
  static constexpr size_t npos = size_t(-1);
  // Room for `expected` ids without growing; none allocated while it is 0.
  explicit first_seen_index(size_t expected = 0) {
    if (expected == 0) return;
    size_t want = 16;
    while (want < 2 * expected) want *= 2;
    slots_.assign(want, {0, 0});
  }
  // The position recorded for `id`, npos if none (`id_at(p)` is the id at position p).
  template <class IdAt>
  size_t find(std::string_view id, IdAt&& id_at) const {
    if (size_ == 0) return npos;
    uint64_t h = mix_hash(std::hash<std::string_view>{}(id));
    if (h == 0) h = 1;
    size_t mask = slots_.size() - 1;
    for (size_t i = h & mask; slots_[i].first != 0; i = (i + 1) & mask)
      if (slots_[i].first == h && id_at(slots_[i].second) == id) return slots_[i].second;
    return npos;
  }
  // The position recorded for `id` if there is one (`id_at(p)` is the id at position p);
  // else records `pos` for it and returns npos.
  template <class IdAt>
  size_t find_or_add(std::string_view id, size_t pos, IdAt&& id_at) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(std::max<size_t>(16, slots_.size() * 2));
    uint64_t h = mix_hash(std::hash<std::string_view>{}(id));
    if (h == 0) h = 1;  // 0 marks an empty slot
    size_t mask = slots_.size() - 1;
    size_t i = h & mask;
    for (; slots_[i].first != 0; i = (i + 1) & mask)
      if (slots_[i].first == h && id_at(slots_[i].second) == id) return slots_[i].second;
    slots_[i] = {h, pos};
    ++size_;
    return npos;
  }

private:
  void rehash(size_t count) {
    std::vector<std::pair<uint64_t, size_t>> old(count, {0, 0});
    old.swap(slots_);
    size_t mask = count - 1;
    for (auto& s : old) {
      if (s.first == 0) continue;
      size_t i = s.first & mask;
      while (slots_[i].first != 0) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }
  std::vector<std::pair<uint64_t, size_t>> slots_;
  size_t size_ = 0;
};

// Interned names, numbered from 0 in the order first seen: every name's bytes once, in
// one arena, and an open-addressing index of 4-byte numbers (at most half full). About 16
// bytes and the name's length per name, where a vector of strings beside a hash map from
// name to number cost ~170 bytes an SKU (two copies of the name, a node, a bucket).
class name_table {
public:
  size_t size() const { return spans_.size(); }
  // The number of `name`, given the next one if it is new.
  uint32_t intern(std::string_view name) {
    if ((spans_.size() + 1) * 2 > slots_.size()) rehash(std::max<size_t>(16, slots_.size() * 2));
    size_t i = probe(name);
    if (slots_[i] == 0) {
      spans_.push_back((uint64_t{arena_.size()} << 16) | name.size());
      arena_.append(name);
      slots_[i] = static_cast<uint32_t>(spans_.size());
    }
    return slots_[i] - 1;
  }
  std::string_view name(uint32_t number) const {
    if (number >= spans_.size()) return {};
    auto span = spans_[number];
    return std::string_view(arena_).substr(span >> 16, span & 0xffff);
  }

private:
  static size_t hash(std::string_view s) { return std::hash<std::string_view>{}(s) * 0x9e3779b97f4a7c15ULL >> 7; }
  size_t probe(std::string_view name) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = hash(name) & mask;; i = (i + 1) & mask)
      if (slots_[i] == 0 || this->name(slots_[i] - 1) == name) return i;
  }
  void rehash(size_t count) {
    std::vector<uint32_t>(count).swap(slots_);
    size_t mask = count - 1;
    for (uint32_t n = 0; n < spans_.size(); ++n) {
      size_t i = hash(name(n)) & mask;
      while (slots_[i] != 0) i = (i + 1) & mask;
      slots_[i] = n + 1;
    }
  }
  std::string arena_;             // every name's bytes, back to back
  std::vector<uint64_t> spans_;   // by number: offset << 16 | length (names < 64 KiB)
  std::vector<uint32_t> slots_;   // number + 1, 0 empty
};

}  // namespace holdfast
