// The flash-sale demo (`holdfast demo`): a local 3-node cluster, one hot SKU and a long
// tail of SKUs spread over every node, thousands of buyers entering at every node.
#pragma once

#include <cstdint>
#include <string>

namespace holdfast {

struct demo_options {
  int64_t stock = 100;
  int64_t buyers = 10'000;
  int64_t hold_ttl_ms = 1'500;
  int attempts_max = 12;          // per buyer, with backoff between attempts
  int connections = 16;
  double confirm_share = 0.8;     // of buyers who get a hold; the rest release or abandon
  double release_share = 0.1;
  uint64_t seed = 42;
  int nodes = 3;                  // a local cluster of this many nodes (1: a single node)
  int tail_skus = 300;            // long-tail SKUs, 5 units each; half the buyers also buy one
  std::string data_dir;           // empty: a temporary directory, removed afterwards
  std::string node_address;       // empty: start the nodes; else use this running node
  bool json = false;
};

// Runs the demo and prints progress and a report; returns 0 when nothing was oversold.
int run_demo(const demo_options& options);

}  // namespace holdfast
