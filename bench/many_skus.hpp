// `holdfast bench many-skus`: a catalog of many SKUs on one node. Creates them,
// reserves uniformly at random across them, measures what an idle (passivated) SKU
// costs in memory, and how long a restart takes with every hold still outstanding.
#pragma once

#include <cstdint>
#include <string>

namespace holdfast::bench {

struct many_skus_options {
  int64_t skus = 1'000'000;
  int64_t holds = 1'000'000;     // reservations to make (and leave outstanding)
  int outstanding = 2'000;       // calls in flight from the load generator
  int connections = 4;
  int64_t idle_ms = 2'000;       // the node passivates SKU actors idle this long
  int create_batch = 1'000;      // SKUs per createSkuBatch call; 0: one createSku per SKU
  double compare_seconds = 3;    // row 1a of bench hot-sku on the same node, for the ratio
  bool json = false;
};

int run_many_skus(const many_skus_options& options);

}  // namespace holdfast::bench
