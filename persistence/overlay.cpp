#include "persistence/overlay.hpp"

#include "persistence/least_n.hpp"

#include <algorithm>

namespace holdfast {

overlay::overlay() : shards_(new shard[shard_count]) {}
overlay::~overlay() = default;

overlay::shard& overlay::shard_of(const std::string& key) const {
  return shard_of_hash(std::hash<std::string>{}(key));
}

void overlay::apply(std::vector<mutation>& batch, bool index_active) {
  const sku_record* record = nullptr;
  for (const auto& m : batch) {
    if (m.kind == mutation::put_sku) record = &m.sku;
    if (m.kind != mutation::put_record) continue;
    auto key = record_key(m.record.space, m.record.key);
    auto& s = shard_of(key);
    std::lock_guard<std::mutex> guard(s.mutex);
    s.gens[active_index_.load(std::memory_order_relaxed)].records[key] = m.record;
  }
  if (!record) {
    active_mutations_.fetch_add(batch.size(), std::memory_order_relaxed);
    return;
  }
  const auto& name = record->sku.sku;
  {
    auto& s = shard_of(name);
    std::lock_guard<std::mutex> guard(s.mutex);
    int a = active_index_.load(std::memory_order_relaxed);
    auto& skus = s.gens[a].skus;
    auto before = skus.size();
    auto& e = skus[name];
    if (skus.size() != before) {
      std::lock_guard<std::mutex> names(ordered_mutex_);
      ordered_[a].insert(name);
    }
    e.has_record = true;
    e.record = *record;
    for (auto& m : batch) {
      if (m.kind != mutation::put_hold) continue;
      // An active hold's id is not read again below unless `index_active`: take it.
      bool active = m.hold.hold.state == hold_state::active;
      auto& h = active && !index_active ? e.changes().emplace_back(std::move(m.hold))
                : active                ? e.changes().emplace_back(m.hold)
                                        : (e.ended[m.hold.hold.hold_id] = m.hold);
      h.hold.sku = name;
    }
  }
  uint32_t number = 0;
  bool numbered = false;
  for (const auto& m : batch) {
    if (m.kind != mutation::put_hold) continue;
    if (!index_active && m.hold.hold.state == hold_state::active) continue;
    const auto& id = m.hold.hold.hold_id;
    if (!numbered) {
      number = sku_number(name);
      numbered = true;
    }
    auto h = hash_owner_table::hash(id);
    auto& s = shard_of(id);
    std::lock_guard<std::mutex> guard(s.mutex);
    if (m.hold.hold.state == hold_state::active) {
      s.active.put(h, number);
      continue;
    }
    // Ended: the id leaves the active index for this generation's, which the snapshot
    // writes to LMDB's.
    if (auto* owner = s.active.find(h); owner && *owner == number) s.active.erase(h);
    s.gens[active_index_.load(std::memory_order_relaxed)].index[id] = name;
  }
  active_mutations_.fetch_add(batch.size(), std::memory_order_relaxed);
}

bool overlay::find_sku(const std::string& sku, sku_record& out) const {
  auto& s = shard_of(sku);
  std::lock_guard<std::mutex> guard(s.mutex);
  int a = active_index_.load(std::memory_order_relaxed);
  for (int g : {a, 1 - a})
    if (auto* e = s.gens[g].skus.find(sku); e && e->has_record) {
      out = e->record;
      return true;
    }
  return false;
}

bool overlay::find_record(const std::string& key, entity_record& out) const {
  auto& s = shard_of(key);
  std::lock_guard<std::mutex> guard(s.mutex);
  int a = active_index_.load(std::memory_order_relaxed);
  for (int g : {a, 1 - a})
    if (auto* r = s.gens[g].records.find(key)) {
      out = *r;
      return true;
    }
  return false;
}

void overlay::records_of(record_space space, std::map<std::string, entity_record>& out) const {
  int a = active_index_.load(std::memory_order_relaxed);
  for (int g : {1 - a, a})  // the older generation first: the newer overrules it
    for (size_t i = 0; i < shard_count; ++i) {
      std::lock_guard<std::mutex> guard(shards_[i].mutex);
      shards_[i].gens[g].records.each([&](const std::string&, const entity_record& r) {
        if (r.space == space) out[r.key] = r;
      });
    }
}

uint32_t overlay::sku_number(const std::string& sku) {
  std::lock_guard<std::mutex> guard(names_mutex_);
  return names_.intern(sku);
}

std::string overlay::sku_name(uint32_t number) const {
  std::lock_guard<std::mutex> guard(names_mutex_);
  return std::string(names_.name(number));
}

void overlay::active_batch::add(std::string_view hold_id, uint32_t number) {
  // The shard as shard_of() picks it: by the id's std::hash (a view hashes as its string
  // does), which the table's hash remixes.
  auto h = std::hash<std::string_view>{}(hold_id);
  by_shard_[h % shard_count].emplace_back(hash_owner_table::of_std_hash(h), number);
}

void overlay::active_batch::clear() {
  for (auto& ids : by_shard_) ids.clear();
}

void overlay::index_active(active_batch& batch) {
  for (size_t i = 0; i < shard_count; ++i) {
    auto& ids = batch.by_shard_[i];
    if (ids.empty()) continue;
    auto& s = shards_[i];
    std::lock_guard<std::mutex> guard(s.mutex);
    s.active.reserve(s.active.size() + ids.size());
    for (auto [hash, number] : ids) s.active.put(hash, number);
  }
}

void overlay::clear_active_index() {
  for (size_t i = 0; i < shard_count; ++i) {
    std::lock_guard<std::mutex> guard(shards_[i].mutex);
    shards_[i].active = hash_owner_table{};
  }
}

overlay::claim_outcome overlay::claim_hold(const hashed_key& hold_id, const std::string& sku,
                                           uint32_t number, std::string& owner) {
  auto& s = shard_of_hash(hold_id.hash);
  auto h = hash_owner_table::of_std_hash(hold_id.hash);
  uint32_t holder = 0;
  {
    std::lock_guard<std::mutex> guard(s.mutex);
    if (auto* e = s.active.find(h)) {
      holder = *e;
    } else {
      int a = active_index_.load(std::memory_order_relaxed);
      for (int g : {a, 1 - a})
        if (auto* ended = s.gens[g].index.find(hold_id)) {
          if (*ended != sku) {
            owner = *ended;
            return claim_outcome::theirs;
          }
          s.active.put(h, number);
          return claim_outcome::ended_ours;
        }
      s.active.put(h, number);
      return claim_outcome::fresh;
    }
  }
  if (holder == number) return claim_outcome::ours;
  owner = sku_name(holder);
  return claim_outcome::theirs;
}

void overlay::unclaim_hold(size_t hold_id_hash, uint32_t number) {
  auto& s = shard_of_hash(hold_id_hash);
  auto h = hash_owner_table::of_std_hash(hold_id_hash);
  std::lock_guard<std::mutex> guard(s.mutex);
  if (auto* e = s.active.find(h); e && *e == number) s.active.erase(h);
}

bool overlay::find_hold_sku(const std::string& hold_id, std::string& sku) const {
  auto& s = shard_of(hold_id);
  uint32_t number = 0;
  {
    std::lock_guard<std::mutex> guard(s.mutex);
    if (auto* e = s.active.find(hash_owner_table::hash(hold_id))) {
      number = *e;
    } else {
      int a = active_index_.load(std::memory_order_relaxed);
      for (int g : {a, 1 - a})
        if (auto* found = s.gens[g].index.find(hold_id)) {
          sku = *found;
          return true;
        }
      return false;
    }
  }
  sku = sku_name(number);
  return true;
}

bool overlay::find_hold(const std::string& sku, const std::string& hold_id,
                        hold_record& out) const {
  auto& s = shard_of(sku);
  std::lock_guard<std::mutex> guard(s.mutex);
  int a = active_index_.load(std::memory_order_relaxed);
  for (int g : {a, 1 - a})
    if (auto* e = s.gens[g].skus.find(sku))
      if (auto* h = e->ended.find(hold_id)) {
        out = *h;
        return true;
      }
  return false;
}

void overlay::holds_of(const std::string& sku, std::vector<hold_record>& out) const {
  auto& s = shard_of(sku);
  std::lock_guard<std::mutex> guard(s.mutex);
  int a = active_index_.load(std::memory_order_relaxed);
  const sku_entry* gens[2] = {s.gens[1 - a].skus.find(sku), s.gens[a].skus.find(sku)};
  size_t n = 0;
  for (auto* e : gens)
    if (e) n += e->change_count() + e->ended.size();
  // Latest state by position, the ids read in place (a map keyed by copies of the ids made
  // reloading an SKU with millions of holds in the overlay take seconds more).
  size_t first = out.size();
  out.reserve(first + n);
  first_seen_index at(n);
  auto id_at = [&](size_t p) -> const std::string& { return out[first + p].hold.hold_id; };
  auto put = [&](const hold_record& h) {
    auto p = at.find_or_add(h.hold.hold_id, out.size() - first, id_at);
    if (p == first_seen_index::npos) out.push_back(h);
    else out[first + p] = h;
  };
  // Older generation first: the active one overrules it; in each, an ended state
  // overrules an active one.
  for (auto* e : gens)
    if (e) {
      e->each_change(put);
      e->ended.each([&](const std::string&, const hold_record& h) { put(h); });
    }
}

std::vector<hold_record> overlay::ended_holds(const std::string& sku, const std::string& after,
                                             const std::function<bool(const hold_record&)>& wanted,
                                             size_t max) const {
  auto& s = shard_of(sku);
  std::lock_guard<std::mutex> guard(s.mutex);
  int a = active_index_.load(std::memory_order_relaxed);
  auto* newer = s.gens[a].skus.find(sku);
  auto* older = s.gens[1 - a].skus.find(sku);
  auto by_id = [](const hold_record* x, const hold_record* y) { return x->hold.hold_id < y->hold.hold_id; };
  least_n<const hold_record*, decltype(by_id)> first(max, by_id);
  auto take = [&](const std::string& id, const hold_record& h) {
    if (id > after && wanted(h)) first.offer(&h);
  };
  if (newer) newer->ended.each(take);
  // The active generation's record of an id overrules the frozen one's.
  if (older)
    older->ended.each([&](const std::string& id, const hold_record& h) {
      if (!newer || !newer->ended.find(id)) take(id, h);
    });
  auto found = std::move(first).sorted();
  std::vector<hold_record> out;
  out.reserve(found.size());
  for (auto* h : found) out.push_back(*h);
  return out;
}

void overlay::each_sku(const std::function<void(const sku_record&)>& f) const {
  for (size_t i = 0; i < shard_count; ++i) {
    auto& s = shards_[i];
    std::vector<sku_record> found;
    {
      std::lock_guard<std::mutex> guard(s.mutex);
      int a = active_index_.load(std::memory_order_relaxed);
      flat_string_map<bool> seen;
      for (int g : {a, 1 - a})
        s.gens[g].skus.each([&](const std::string& name, const sku_entry& e) {
          if (!e.has_record || seen.find(name)) return;
          seen[name] = true;
          found.push_back(e.record);
        });
    }
    for (auto& r : found) f(r);
  }
}

std::vector<std::string> overlay::sku_names(const std::string& prefix, const std::string& after,
                                            size_t max) const {
  std::vector<std::string> out;
  const auto& from = std::max(prefix, after);
  std::lock_guard<std::mutex> guard(ordered_mutex_);
  for (auto& names : ordered_) {
    size_t taken = 0;
    for (auto it = names.lower_bound(from); it != names.end() && taken < max; ++it) {
      if (it->compare(0, prefix.size(), prefix) != 0) break;
      if (!after.empty() && *it <= after) continue;
      out.push_back(*it);
      ++taken;
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.size() > max) out.resize(max);
  return out;
}

void overlay::freeze() {
  // The frozen slot is empty (dropped); the active one becomes it.
  generation_.fetch_add(1, std::memory_order_acq_rel);
  active_index_.store(1 - active_index_.load(), std::memory_order_release);
  frozen_mutations_ = active_mutations_.exchange(0);
  has_frozen_ = true;
}

snapshot_contents overlay::frozen_contents() const {
  snapshot_contents c;
  int f = 1 - active_index_.load(std::memory_order_acquire);
  for (size_t i = 0; i < shard_count; ++i) {
    const auto& g = shards_[i].gens[f];
    g.skus.each([&](const std::string&, const sku_entry& e) {
      if (!e.has_record) return;
      snapshot_contents::sku_changes changes{&e.record, {}};
      // The latest active state of each hold, unless it ended in this generation.
      first_seen_index at(e.change_count());  // sized once, not grown by doubling from 16
      auto id_at = [&](size_t p) -> const std::string& { return changes.holds[p]->hold.hold_id; };
      e.each_change([&](const hold_record& h) {
        if (e.ended.find(h.hold.hold_id)) return;
        auto p = at.find_or_add(h.hold.hold_id, changes.holds.size(), id_at);
        if (p == first_seen_index::npos) changes.holds.push_back(&h);
        else changes.holds[p] = &h;
      });
      e.ended.each([&](const std::string&, const hold_record& h) {
        changes.holds.push_back(&h);
        c.ended.push_back(&h);
      });
      c.skus.push_back(std::move(changes));
    });
    g.index.each([&](const std::string& id, const std::string& sku) {
      c.index.emplace_back(&id, &sku);
    });
    g.records.each([&](const std::string& key, const entity_record& r) {
      c.records.emplace_back(&key, &r);
    });
  }
  std::sort(c.records.begin(), c.records.end(),
            [](auto& a, auto& b) { return *a.first < *b.first; });
  std::sort(c.skus.begin(), c.skus.end(), [](auto& a, auto& b) {
    return a.record->sku.sku < b.record->sku.sku;
  });
  std::sort(c.ended.begin(), c.ended.end(), [](auto* a, auto* b) {
    int by_sku = a->hold.sku.compare(b->hold.sku);
    return by_sku != 0 ? by_sku < 0 : a->hold.hold_id < b->hold.hold_id;
  });
  std::sort(c.index.begin(), c.index.end(),
            [](auto& a, auto& b) { return *a.first < *b.first; });
  c.mutations = frozen_mutations_;
  return c;
}

void overlay::drop_frozen() {
  // Readers that miss from now on renew their LMDB view first: it has these changes.
  generation_.fetch_add(1, std::memory_order_acq_rel);
  int f = 1 - active_index_.load(std::memory_order_acquire);
  for (size_t i = 0; i < shard_count; ++i) {
    generation_maps dropped;
    {
      std::lock_guard<std::mutex> guard(shards_[i].mutex);
      std::swap(dropped, shards_[i].gens[f]);
    }
  }
  std::set<std::string> dropped_names;
  {
    std::lock_guard<std::mutex> guard(ordered_mutex_);
    std::swap(dropped_names, ordered_[f]);
  }
  frozen_mutations_ = 0;
  has_frozen_ = false;
}

}  // namespace holdfast
