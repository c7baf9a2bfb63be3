// `holdfast bench checkout`: end-to-end checkouts (a cart of 1-3 lines over a hot SKU and
// a long tail, then checkout: the order placed, durable, its saga run to the end) on
// (a) one node with the in-process gateway at zero latency, (b) the 3-node cluster with
// the in-process gateway on each node, (c) the same cluster paying through the gateway
// process over HTTP with signed webhooks. One run, ratios to (a), and CPU per checkout
// of every process from /proc.
#pragma once

#include <string>

namespace holdfast::bench {

struct checkout_bench_options {
  double seconds = 8;          // measured time per row
  double warmup_seconds = 1;
  int shoppers = 64;           // checkouts in flight
  int tail_skus = 1'000;
  int nodes = 3;
  bool gateway_process = true;  // row (c)
  bool json = false;
};

int run_checkout_bench(const checkout_bench_options& options);

}  // namespace holdfast::bench
