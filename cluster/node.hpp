// Node assembly: opens the LMDB environment, spawns the store (detached: its fsync
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
  std::string scheduler = "sharing"; // CAF scheduler policy: sharing or stealing
  size_t worker_threads = 0;         // CAF worker threads; 0: CAF's default (cores, at least 4)
  server_options server;
};

// Runs a node in this process; returns the process exit status.
int run_node(const node_options& options);

}  // namespace holdfast
