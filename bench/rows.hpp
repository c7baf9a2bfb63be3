// One row of the hot-SKU comparison and the code that produces each kind of row.
// Every row checks afterwards that the stock fell by exactly the number of successful
// reservations it counted.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace holdfast::bench {

struct row {
  std::string id;     // "1a", "2b", ...
  std::string system;
  std::string shape;  // the load, in the peer tool's terms
  bool ran = false;
  std::string skipped;  // why the row did not run
  double seconds = 0;
  int64_t reservations = 0;  // successful, in the measured window
  double per_second = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0;
  std::vector<std::pair<double, double>> cdf;  // (latency ms, fraction of calls at or below)
  int64_t stock_drop = 0;     // stock before minus stock after
  int64_t counted = 0;        // successful reservations the driver counted, all of them
  int64_t batches = 0, batched_ops = 0;  // the driver's auto-batched RPCs and their operations
  // CPU per reservation (µs) over the measured calls, from /proc: the server's (the node,
  // redis-server, PostgreSQL's postmaster and backends) and the load generator's (the
  // bench's own threads, redis-benchmark, pgbench). Negative: not measured.
  double server_cpu_us = -1, load_cpu_us = -1;
  bool stock_ok() const { return ran && stock_drop == counted; }
};

// Percentiles and a CDF from raw latencies (ms); sorts `latencies_ms`.
void summarize(std::vector<double>& latencies_ms, row& r);

// Measured fsync cost in `dir`: 4 KiB written then fdatasync'd, `samples` times.
struct fsync_cost {
  double p50_ms = 0, p99_ms = 0;
};
fsync_cost measure_fsync(const std::string& dir, int samples = 200);

// Redis + Lua, appendonly yes, appendfsync always, driven by redis-benchmark with 50
// clients; one row per pipeline depth. Skipped rows say how to install Redis. The server
// runs under `server_prefix` (e.g. taskset -c 1), as the node does.
std::vector<row> run_redis_rows(const std::vector<int>& pipelines, double seconds_each,
                                void (*progress)(const std::string&),
                                const std::vector<std::string>& server_prefix = {});

// PostgreSQL conditional decrement on one hot row, synchronous_commit=on, pgbench.
row run_postgres_row(int clients, double seconds, void (*progress)(const std::string&),
                     const std::vector<std::string>& server_prefix = {});

}  // namespace holdfast::bench
