#include "protocol/histogram.hpp"

#include <algorithm>

namespace holdfast {

uint64_t histogram_counts::count() const {
  uint64_t n = 0;
  for (auto c : counts) n += c;
  return n;
}

histogram::histogram(std::vector<int64_t> bounds, double divisor)
  : bounds_(std::move(bounds)), divisor_(divisor), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void histogram::record(int64_t value) {
  auto bucket = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

histogram_counts histogram::read() const {
  histogram_counts out;
  for (auto b : bounds_) out.bounds.push_back(static_cast<double>(b) / divisor_);
  for (size_t i = 0; i <= bounds_.size(); ++i) out.counts.push_back(counts_[i].load(std::memory_order_relaxed));
  out.sum = static_cast<double>(sum_.load(std::memory_order_relaxed)) / divisor_;
  return out;
}

histogram latency_histogram() {
  return histogram({25, 50, 100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000, 250'000,
                    500'000, 1'000'000, 2'500'000, 10'000'000},
                   1e6);
}

histogram size_histogram() {
  std::vector<int64_t> bounds;
  for (int64_t b = 1; b <= 16'384; b *= 2) bounds.push_back(b);
  return histogram(std::move(bounds), 1);
}

}  // namespace holdfast
