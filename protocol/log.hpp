// Logging: spdlog, one logger for the process (stderr), levels set by the node's
// --log-level. Errors that a client or the disk can trigger in a loop go through a
// rate_limit, so a storm of them costs a line a second, not a line each.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace holdfast {

// Lets through at most one message per interval; counts the ones it held back, so the
// next message can say how many there were. Thread-safe.
class rate_limit {
public:
  explicit rate_limit(std::chrono::milliseconds interval = std::chrono::seconds(1))
    : interval_ms_(interval.count()) {}
  // True when this message may be logged; `suppressed` gets the count held back since
  // the last one that was.
  bool allow(uint64_t& suppressed) {
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
                 .count();
    auto last = last_ms_.load(std::memory_order_relaxed);
    if (now - last < interval_ms_ || !last_ms_.compare_exchange_strong(last, now)) {
      held_back_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    suppressed = held_back_.exchange(0, std::memory_order_relaxed);
    return true;
  }

private:
  int64_t interval_ms_;
  std::atomic<int64_t> last_ms_{INT64_MIN / 2};
  std::atomic<uint64_t> held_back_{0};
};

// The node's log lines as JSON objects, one per line (--log-format json), for log shippers:
// {"time":"2026-12-06T21:16:29.078Z","level":"info","thread":1234,"msg":"..."} in UTC, the
// message escaped as a JSON string. `text` keeps spdlog's default pattern.
void set_log_format(const std::string& format);
// One info line as the log writes it in `format` (spdlog's timestamped pattern, or the JSON
// object), for a stream of its own: the node's stdout. No newline.
std::string log_line(const std::string& format, const std::string& message);

}  // namespace holdfast
