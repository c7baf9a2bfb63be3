// A histogram with fixed bucket bounds: recorded on one thread, read on any (relaxed
// atomics, so a reading may be a few samples behind), exported by /metrics as a
// Prometheus histogram (cluster/metrics.hpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace holdfast {

// What a histogram held when it was read, in the exported unit.
struct histogram_counts {
  std::vector<double> bounds;    // upper bounds of the buckets, increasing
  std::vector<uint64_t> counts;  // per bucket, not cumulative; one more than bounds (+Inf)
  double sum = 0;
  uint64_t count() const;
};

class histogram {
public:
  // `bounds`: increasing upper bounds, in recorded units; a value is exported divided by
  // `divisor` (1e6: microseconds recorded, seconds exported).
  histogram(std::vector<int64_t> bounds, double divisor);
  histogram(const histogram&) = delete;
  histogram& operator=(const histogram&) = delete;

  void record(int64_t value);
  histogram_counts read() const;

private:
  std::vector<int64_t> bounds_;
  double divisor_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<int64_t> sum_{0};
};

// Latencies recorded in microseconds, exported in seconds: 25 µs to 10 s.
histogram latency_histogram();
// Sizes (batches per group commit, operations per call): 1 to 16384, powers of two.
histogram size_histogram();

}  // namespace holdfast
