#include "client/placement.hpp"

namespace holdfast {
namespace {

// splitmix64's finaliser: a bijection that spreads every input bit over the output.
// The same function as the overlay's mix_hash, kept apart on purpose: placement is a
// contract between every node and every data directory (changing it moves entities to
// other owners), while the overlay's hash may change whenever that suits the overlay.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace

placement::placement(std::vector<uint32_t> node_ids) : nodes_(std::move(node_ids)) {
  for (auto id : nodes_) seeds_.push_back(mix(0x9e3779b97f4a7c15ULL * (uint64_t{id} + 1)));
}

uint32_t placement::owner(std::string_view key) const {
  uint64_t k = mix(fnv1a(key));
  uint32_t best = 0;
  uint64_t best_weight = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    uint64_t w = mix(k ^ seeds_[i]);
    // Ties (2^-64) go to the lower id, so every node agrees.
    if (best == 0 || w > best_weight || (w == best_weight && nodes_[i] < best)) {
      best = nodes_[i];
      best_weight = w;
    }
  }
  return best;
}

}  // namespace holdfast
