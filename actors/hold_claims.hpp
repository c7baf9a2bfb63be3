// Node-wide claims on hold ids. A hold id names one hold on one SKU: an sku actor claims
// the id before it grants a reserve, so two SKUs reserving the same id at the same
// moment cannot both win. The claim is made in the storage's active-id index itself
// (overlay::claim_hold): one probe per reserve, and a granted reserve's claim stays as
// its id's entry once the batch is durable (the store does not index it again). A
// refused reserve, or a batch that failed, gives its claim back. Thread-safe: sku actors
// run on every CAF worker; the index is sharded, one lock per shard.
#pragma once

#include <memory>
#include <string>

#include "persistence/storage.hpp"

namespace holdfast {

class hold_claims {
public:
  explicit hold_claims(std::shared_ptr<storage> env) : env_(std::move(env)) {}
  using outcome = storage::claim_outcome;
  // The number naming `sku` in the index: asked once per SKU book, not per claim.
  uint32_t number(const std::string& sku) { return env_->sku_number(sku); }
  // Claims `hold_id` for `sku` (numbered `number`). `theirs`: another SKU's active hold,
  // or one that ended since the last snapshot, has it: named in `owner`.
  outcome claim(const hashed_key& hold_id, const std::string& sku, uint32_t number, std::string& owner) {
    return env_->claim_hold_id(hold_id, sku, number, owner);
  }
  // Drops a fresh claim whose reserve was refused or whose batch failed; `hold_id_hash`
  // is the id's std::hash (hashed_key::hash), all a claimer needs to keep.
  void release(size_t hold_id_hash, uint32_t number) { env_->unclaim_hold_id(hold_id_hash, number); }

private:
  std::shared_ptr<storage> env_;
};

}  // namespace holdfast
