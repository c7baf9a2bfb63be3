// Placement: which node owns an entity. Rendezvous (highest-random-weight) hashing of the
// entity's key over the member ids: every node computes the same owner from the same
// member list, with no table to keep in sync; adding a node moves only the keys it now
// wins (about 1/N of them), removing one moves only its own.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace holdfast {

class placement {
public:
  placement() = default;
  explicit placement(std::vector<uint32_t> node_ids);
  // The owner of `key`; 0 when there are no nodes.
  uint32_t owner(std::string_view key) const;
  const std::vector<uint32_t>& nodes() const { return nodes_; }

private:
  std::vector<uint32_t> nodes_;
  std::vector<uint64_t> seeds_;  // one per node, mixed from its id
};

}  // namespace holdfast
