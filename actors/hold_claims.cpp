#include "actors/hold_claims.hpp"

#include <functional>

namespace holdfast {

hold_claims::shard& hold_claims::shard_of(const std::string& hold_id) {
  return shards_[std::hash<std::string>{}(hold_id) % shard_count];
}

hold_claims::outcome hold_claims::claim(const std::string& hold_id, const std::string& sku,
                                        std::string& owner) {
  auto& s = shard_of(hold_id);
  std::lock_guard<std::mutex> guard(s.mutex);
  auto [it, fresh] = s.owner.try_emplace(hold_id, sku);
  if (fresh) return outcome::fresh;
  if (it->second == sku) return outcome::ours;
  owner = it->second;
  return outcome::theirs;
}

void hold_claims::release(const std::string& hold_id, const std::string& sku) {
  auto& s = shard_of(hold_id);
  std::lock_guard<std::mutex> guard(s.mutex);
  auto it = s.owner.find(hold_id);
  if (it == s.owner.end() || it->second != sku) return;
  // Counted before the claim goes, under the lock: whoever claims the id next sees the
  // new count and refreshes its view of the index.
  releases_.fetch_add(1, std::memory_order_release);
  s.owner.erase(it);
}

size_t hold_claims::size() const {
  size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> guard(s.mutex);
    n += s.owner.size();
  }
  return n;
}

}  // namespace holdfast
