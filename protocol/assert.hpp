// Assertions that stop the actor, not the node, and named fault points for tests.
//
// HF_ASSERT(cond, "finish of inactive hold {}", hold_id) throws `assertion_failed` when
// `cond` is false. An actor that asserts catches it where a change would be written, writes
// nothing of that change and stops (its callers hear `unavailable`); the node keeps serving
// everything else. Assertions come in pairs: what a function receives and what it leaves,
// and the same property where it is written and where it is read (../shared/STYLE.md).
//
// A fault point is a test-only fault compiled into a component under a name
// (`fault_point::sku_book_miscount`); a test arms it, the component checks it where the
// fault would happen. Unarmed, a check is one relaxed atomic load.
#pragma once

#include <spdlog/fmt/fmt.h>

#include <atomic>
#include <stdexcept>
#include <string>

namespace holdfast {

struct assertion_failed : std::logic_error {
  using std::logic_error::logic_error;
};

[[noreturn]] void fail_assertion(const char* file, int line, const char* condition,
                                 const std::string& what);

#define HF_ASSERT(cond, ...)                                                        \
  do {                                                                              \
    if (!(cond)) [[unlikely]]                                                       \
      ::holdfast::fail_assertion(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)

enum class fault_point : unsigned {
  sku_book_miscount,  // a reserve counts one unit more than it holds (breaks reserved == Σ holds)
  count_
};

namespace detail {
extern std::atomic<unsigned> armed_faults;
}

inline bool fault_armed(fault_point p) {
  return (detail::armed_faults.load(std::memory_order_relaxed) >> static_cast<unsigned>(p)) & 1u;
}
void arm_fault(fault_point p, bool on = true);

}  // namespace holdfast
