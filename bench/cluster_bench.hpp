// `holdfast bench cluster`: reservations/s and latency for (a) one node, clients
// connected to it; (b) a 3-node cluster, clients connected to a node that owns none of
// the SKUs (every call is forwarded over a peer link); (c) the same cluster with the
// cluster-aware client (every call goes straight to its owner). Same SKUs, same callers,
// in one run; (b) and (c) as ratios of (a). With --replicas N: (a) against a replicated
// cluster's leader, at full and half load, and the failover time over repeated kill -9s.
#pragma once

#include <string>

namespace holdfast::bench {

struct cluster_bench_options {
  double seconds = 5;          // measured time per row
  double warmup_seconds = 0.5;
  int callers = 50;            // concurrent callers, one reservation in flight each
  int threads = 1;             // load generator threads (one leaves the cores to the nodes)
  int skus = 48;               // SKUs the reservations spread over (none owned by node 1)
  int nodes = 3;
  int worker_threads = 0;      // CAF workers per node, every row (0: the node's default)
  // > 1: instead of (b) and (c), a replicated cluster of `nodes` (replicas = nodes): (r) its
  // leader at the full load, (r/2) with half the callers, and failover over `trials` kill -9s
  // of the leader (each: the kill to the first reservation sent after it that succeeded).
  int replicas = 1;
  int trials = 20;
  int snapshot_entries = 0;  // > 0: the replicated cluster's raft_snapshot_entries
  bool json = false;
};

int run_cluster_bench(const cluster_bench_options& options);

}  // namespace holdfast::bench
