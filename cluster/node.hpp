// Node assembly: opens the storage (log + LMDB snapshots), spawns the store (detached: its fsync
// must not block a CAF worker), the sku directory and the RPC bridge, recovers holds,
// then serves Cap'n Proto RPC until SIGINT or SIGTERM.
#pragma once

#include <string>

#include "cluster/rpc_server.hpp"

namespace holdfast {

struct node_options {
  std::string data_dir;
  size_t map_size_mb = 8192;         // LMDB map: the most the data file may grow to
  int64_t idle_ms = 30'000;          // passivate sku actors idle this long
  uint64_t payment_seed = 1;         // the in-process simulated gateway's faults
  double payment_decline_rate = 0;
  // The payment gateway process (http://host:port); empty: the simulated gateway
  // in-process. Its webhooks come to server.http_listen, signed with server.webhook_secret.
  std::string gateway_url;
  int64_t payment_timeout_ms = 5'000;  // a payment call not answered by then: unknown
  uint64_t order_events_retention = 1'000'000;  // order events kept; older ones are deleted
  std::string crash_at;  // test-only: die at this saga step (order_context::crash_at)
  // Finished holds answer repeated calls this long, then are deleted (idempotency window).
  int64_t finished_hold_retention_ms = 24LL * 3600 * 1000;
  std::string log_level = "info";    // spdlog level: trace, debug, info, warn, error, off
  std::string log_format = "text";   // text, or json: one JSON object per line (protocol/log.hpp)
  bool unsafe_no_sync = false;       // test-only: nothing is fsync'd (log nor LMDB)
  size_t log_segment_mb = 64;        // preallocated size of a log segment
  int64_t snapshot_interval_ms = 1'000;  // changes wait at most this long for a snapshot
  std::string scheduler = "sharing"; // CAF scheduler policy: sharing or stealing
  size_t worker_threads = 0;         // CAF worker threads; 0: effective_worker_threads
  server_options server;
  // A cluster member: the shared cluster file and this node's id in it.
  std::string cluster_file;
  uint32_t node_id = 0;
  bool fault_hooks = false;  // test-only: serve faultPartition (the chaos tool's hook)
};

// Runs a node in this process; returns the process exit status.
int run_node(const node_options& options);

// CAF workers for `requested` (0: the default): the cores less the two the network and
// store threads keep busy, at least one. CAF's own default (the cores, at least 4) puts
// more runnable threads than cores on a small machine, and every hand-off between them
// is then a context switch (bench cluster on 2 cores: 4 workers per node gave 0.43-0.53x
// of one node where 1 gave 0.67-0.68x; one node alone was no slower with 1).
size_t effective_worker_threads(size_t requested);

}  // namespace holdfast
