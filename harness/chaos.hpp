// `holdfast chaos`: a local cluster of real node processes (its own, or one `holdfast
// cluster up` started), a seeded workload of reserve/confirm/release over many SKUs that
// logs every acknowledged operation (and, with --workload checkout or mixed, shoppers
// checking out through the gateway process: harness/chaos_checkout.hpp), and a
// seeded nemesis that kill -9s, SIGSTOPs and restarts nodes, cuts peer links (through
// the nodes' test-only fault hook) and, in a replicated cluster, destroys a node's data
// directory and replaces its replica through the group (harness/replace_member.hpp). At the end it heals everything, waits out every TTL,
// and checks the promises against what was acknowledged.
#pragma once

#include <cstdint>
#include <string>

namespace holdfast {

struct chaos_options {
  uint64_t seed = 0;           // 0: from the clock (printed either way)
  double seconds = 60;         // of workload and faults
  int nodes = 3;
  // > 1 (its own cluster, holds workload): the SKUs are a Raft group on every node
  // (replicas = nodes); after the usual checks the leader is killed and every hold is
  // checked again through the others: it must have survived the loss of that machine.
  int replicas = 1;
  int snapshot_entries = 0;    // > 0 with replicas: the cluster file's raft_snapshot_entries
  int skus = 24;
  int64_t stock = 30;          // units per SKU
  int workers = 6;             // client threads, spread over the nodes as entry points
  int64_t call_timeout_ms = 3'000;
  int64_t ttl_min_ms = 300, ttl_max_ms = 2'500;
  double fault_min_s = 1.0, fault_max_s = 3.0;  // between faults, and each fault's length
  std::string dir;             // keep the cluster (files, data, logs, ops log) here; default temp
  std::string attach;          // run against the nodes `holdfast cluster up --dir ATTACH` started
                               // (left running after); `nodes` is then the file's
  // holds: reserve/confirm/release; checkout: carts and orders paid through the gateway
  // process (its own faults too); mixed: half the workers each.
  std::string workload = "holds";
  std::string png = "chaos.png";   // timeline; empty: none
  bool json = false;
  std::string binary;          // the holdfast binary to run nodes with
};

// Returns the process exit status: 0 when every invariant held, 1 on a violation
// (the report says which, with the seed to replay), 2 when the run could not be made.
int run_chaos(const chaos_options& options);

}  // namespace holdfast
