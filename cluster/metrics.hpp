// GET /metrics on the node's HTTP endpoint: what the node counts, in the Prometheus text
// exposition format (0.0.4). Names start `holdfast_`; units are suffixes (`_seconds`),
// counters end `_total`. What each family means is its HELP line (cluster/metrics.cpp).
#pragma once

#include <optional>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "actors/sku_directory.hpp"
#include "cluster/http_endpoint.hpp"
#include "client/status.hpp"
#include "persistence/storage.hpp"
#include "protocol/histogram.hpp"

namespace holdfast {

constexpr size_t code_count = static_cast<size_t>(code::forbidden) + 1;

// Counted on the network thread as the Inventory service answers hold operations.
struct hold_call_metrics {
  std::array<std::array<uint64_t, code_count>, hold_op_kinds> answered{};  // by kind, outcome
  histogram reserve_latency = latency_histogram();  // a reserve call, received to answered
  histogram call_operations = size_histogram();     // operations in one hold call

  void answered_call(hold_op_kind kind, const std::vector<hold_result>& results);
};

// RPC calls of the Inventory interface by method: answered (the method returned, whatever
// its domain outcome) and failed (an RPC exception: OVERLOADED, a lost connection, a bug).
struct rpc_call_counts {
  std::string method;
  uint64_t answered = 0;
  uint64_t failed = 0;
};

// Everything one scrape shows, read on the network thread.
struct metrics_view {
  uint32_t node_id = 0;  // 0: a single node
  int64_t started_ms = 0;
  uint64_t calls_total = 0;
  uint64_t operations_in_flight = 0;
  uint64_t inflight_max = 0;
  uint64_t forwarded_total = 0;
  uint64_t forbidden_total = 0;  // calls refused for the connection's role (--tokens)
  uint64_t logins_refused = 0;   // logins with an unknown token
  std::string not_serving;  // "" while it serves
  const hold_call_metrics* holds = nullptr;
  const std::vector<rpc_call_counts>* rpc_calls = nullptr;
  connection_counters connections;
  storage_stats storage;
  std::optional<storage_stats> sku_group;  // replicated SKUs: the group's storage on this node
  directory_stats directory;
  std::vector<link_status> links;
  webhook_counters webhooks;
};

std::string render_metrics(const metrics_view& v);

}  // namespace holdfast
