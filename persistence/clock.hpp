// Wall-clock time for hold deadlines. Deadlines are absolute Unix milliseconds so a
// restarted node releases what expired while it was down. Timers still run on CAF's
// actor clock; tests replace both together (tests/unit/test_support.hpp).
#pragma once

#include <chrono>
#include <cstdint>

namespace holdfast {

class wall_clock {
public:
  virtual ~wall_clock() = default;
  virtual int64_t now_ms() const = 0;
};

class system_wall_clock final : public wall_clock {
public:
  int64_t now_ms() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
};

}  // namespace holdfast
