// Node-wide claims on hold ids. A hold id names one hold on one SKU: an sku actor claims
// the id here before it grants a reserve, so two SKUs reserving the same id at the
// same moment cannot both win. A claim covers the window in which the hold-id index
// does not yet have the id durably (from the claim until the reserve's batch is
// durable); after that the index answers. Thread-safe: sku actors run on every CAF
// worker. Sharded so that hot SKUs on different workers rarely share a lock.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>

namespace holdfast {

class hold_claims {
public:
  enum class outcome { fresh, ours, theirs };
  // Claims `hold_id` for `sku`. `theirs`: another SKU holds the claim, named in `owner`.
  outcome claim(const std::string& hold_id, const std::string& sku, std::string& owner);
  // Drops the claim if `sku` holds it.
  void release(const std::string& hold_id, const std::string& sku);
  // Counts releases: a reader whose index view is older than the last release must
  // refresh it before it trusts a miss.
  uint64_t releases() const { return releases_.load(std::memory_order_acquire); }
  size_t size() const;

private:
  static constexpr size_t shard_count = 64;
  struct shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::string> owner;  // hold id -> sku
  };
  shard& shard_of(const std::string& hold_id);
  shard shards_[shard_count];
  std::atomic<uint64_t> releases_{0};
};

}  // namespace holdfast
