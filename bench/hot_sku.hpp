// `holdfast bench hot-sku`: durable reservations on one hot SKU, Holdfast beside
// Redis + Lua and PostgreSQL, on loopback, in one run. Prints progress, a table with
// ratios and the environment; optionally JSON; writes a PNG when gnuplot is installed.
#pragma once

#include <cstdint>
#include <string>

namespace holdfast::bench {

struct hot_sku_options {
  double seconds = 4;           // measured time per row
  double warmup_seconds = 0.5;  // Holdfast rows: calls before this are not measured
  int callers = 50;             // concurrent callers (redis-benchmark -c)
  int depth_pipelined = 16;     // row 1b: calls outstanding per caller (-P)
  int connections = 2;          // load generator connections to the node, per thread
  int threads = 1;              // load generator threads
  int postgres_clients = 16;    // pgbench -c
  int repeat = 3;               // runs of each Holdfast/peer pair, alternating
  bool peers = true;            // run the Redis and PostgreSQL rows
  bool json = false;
  std::string png = "hot-sku.png";  // empty: no picture
  std::string node_address;     // empty: start a node on a temporary directory
  // Hold ids: "uuid" (random UUIDv4, as real clients send), "sequential" (a prefix and a
  // counter: every new index key lands at the end of the B-tree), or "both" (rows 1a/1b
  // with UUIDs, 1a-seq/1b-seq with sequential ids).
  std::string ids = "both";
  // taskset CPU lists (empty: unpinned): the servers (node, redis-server, postgres) and
  // the load (this process and the tools it runs).
  std::string node_cpus, load_cpus;
};

int run_hot_sku(const hot_sku_options& options);

// Row 1a alone (50 callers x 1, UUID ids) against a running node: reservations/s.
// `bench many-skus` runs it beside its uniform traffic, in the same run.
double measure_hot_sku_1a(const std::string& address, double seconds);

}  // namespace holdfast::bench
