// The checkout flash sale (`holdfast demo`): a local 3-node cluster and the payment
// gateway as its own process, thousands of users filling carts (a hot SKU with a
// per-user limit, plus a long tail on every node) and checking out, while the gateway
// declines some payments, loses some replies and sends webhooks late, twice and out of
// order, and some users cancel or check out twice. The report checks the promises from
// both sides: the gateway's ledger (at most one capture per order) and the SKUs' books
// (nothing oversold, no user past the limit, every paid unit sold and nothing else).
#pragma once

#include <cstdint>
#include <string>

namespace holdfast {

struct checkout_demo_options {
  int64_t users = 2'000;
  int64_t hot_stock = 300;
  int64_t limit_per_user = 2;      // of the hot SKU
  int tail_skus = 200;             // 20 units each; most users buy one or two
  int concurrency = 48;            // users shopping at once
  double over_limit_share = 0.08;  // put limit + 1 hot units in the cart (refused: limit_reached)
  double twice_share = 0.1;        // check out again with the same key (the same order)
  double cancel_share = 0.05;      // cancel soon after checking out
  double shipping_failure_share = 0.03;  // of paid orders: refunded and restocked
  // The gateway's faults.
  double decline_rate = 0.05, lost_reply_rate = 0.05, duplicate_webhook_rate = 0.25, reorder_webhook_rate = 0.2;
  int64_t webhook_delay_max_ms = 300, gateway_latency_ms = 5;
  uint64_t seed = 42;
  int nodes = 3;
  int64_t settle_timeout_ms = 180'000;  // every order terminal by then
  std::string data_dir;                 // empty: a temporary directory, removed afterwards
  bool json = false;
};

// Runs the sale, prints progress and the report; 0 when every promise held.
int run_checkout_demo(const checkout_demo_options& options);

}  // namespace holdfast
