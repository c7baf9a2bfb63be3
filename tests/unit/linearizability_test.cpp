// The linearizability checker `holdfast chaos` runs on its linearizable SKU's history
// (harness/linearizability.hpp): histories that some order explains pass, and each kind of
// lie (a unit sold twice, a sold-out answer while units were free, an unanswered call that
// would have to both apply and not) is caught.
#include <gtest/gtest.h>

#include <limits>
#include <random>

#include "harness/linearizability.hpp"

namespace holdfast {
namespace {

constexpr double never = std::numeric_limits<double>::infinity();

lin_call reserve(const std::string& h, int64_t q, lin_call::answer_t a, double sent, double answered) {
  return {lin_call::reserve, a, h, q, sent, a == lin_call::unknown ? never : answered};
}
lin_call act(lin_call::kind_t k, const std::string& h, int64_t q, lin_call::answer_t a, double sent, double answered) {
  return {k, a, h, q, sent, a == lin_call::unknown ? never : answered};
}

TEST(linearizability, one_unit_sold_twice_in_turn_is_caught) {
  std::vector<lin_call> h{reserve("a", 1, lin_call::ok, 0, 1), reserve("b", 1, lin_call::ok, 2, 3),
                          reserve("c", 1, lin_call::ok, 4, 5)};
  EXPECT_FALSE(check_linearizable(2, h).linearizable);
  h[2].answer = lin_call::out_of_stock;
  auto v = check_linearizable(2, h);
  EXPECT_TRUE(v.linearizable) << v.detail;
  EXPECT_TRUE(v.decided);
}

TEST(linearizability, sold_out_while_a_release_had_freed_units_is_caught) {
  std::vector<lin_call> h{reserve("a", 1, lin_call::ok, 0, 1), act(lin_call::release, "a", 1, lin_call::ok, 2, 3),
                          reserve("b", 1, lin_call::out_of_stock, 4, 5)};
  EXPECT_FALSE(check_linearizable(1, h).linearizable);
  // Overlapping the release, the sold-out answer may come first.
  h[2].sent = 2.5;
  EXPECT_TRUE(check_linearizable(1, h).linearizable);
  // A confirm keeps the units sold.
  h[1].kind = lin_call::confirm;
  h[2].sent = 4;
  EXPECT_TRUE(check_linearizable(1, h).linearizable);
}

TEST(linearizability, concurrent_calls_may_take_any_order_but_not_more_units_than_there_are) {
  std::vector<lin_call> h{reserve("a", 2, lin_call::ok, 0, 10), reserve("b", 1, lin_call::out_of_stock, 1, 2)};
  EXPECT_TRUE(check_linearizable(2, h).linearizable);  // b after a
  h[1].answer = lin_call::ok;
  EXPECT_FALSE(check_linearizable(2, h).linearizable);  // 3 units of 2
  EXPECT_TRUE(check_linearizable(3, h).linearizable);
}

TEST(linearizability, an_unanswered_call_applies_once_or_never) {
  // It may have taken the unit (then the later sold-out answer is right)...
  std::vector<lin_call> h{reserve("u", 1, lin_call::unknown, 0, 0), reserve("x", 1, lin_call::out_of_stock, 5, 6)};
  EXPECT_TRUE(check_linearizable(1, h).linearizable);
  // ...or not (then a later ok is right), but not both.
  h.push_back(reserve("y", 1, lin_call::ok, 7, 8));
  EXPECT_FALSE(check_linearizable(1, h).linearizable);
  // A release of a hold whose reserve is unknown needs that reserve applied.
  std::vector<lin_call> r{reserve("u", 1, lin_call::unknown, 0, 0), act(lin_call::release, "u", 1, lin_call::ok, 1, 2),
                          reserve("y", 1, lin_call::ok, 3, 4)};
  EXPECT_TRUE(check_linearizable(1, r).linearizable);
  // A confirm of a hold nobody reserved is a lie.
  std::vector<lin_call> c{act(lin_call::confirm, "z", 1, lin_call::ok, 0, 1)};
  EXPECT_FALSE(check_linearizable(1, c).linearizable);
}

// Histories a correct SKU produces (a sequential model, each call stretched around its
// moment, six callers at once, a few answers lost) pass, and are decided quickly; the same
// with one answer flipped is caught.
TEST(linearizability, long_histories_of_a_correct_sku_pass_and_one_flipped_answer_is_caught) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    std::mt19937_64 rng(seed);
    const int64_t stock = 6;
    int64_t free = stock;
    std::vector<lin_call> h;
    std::vector<std::pair<std::string, int64_t>> active;
    double t = 0;
    for (int i = 0; i < 1500; ++i) {
      t += 0.01;
      double sent = t - 0.03 * static_cast<double>(rng() % 100) / 100, answered = t + 0.03 * static_cast<double>(rng() % 100) / 100;
      bool lost = rng() % 100 == 0;
      if (!active.empty() && rng() % 2) {
        auto k = rng() % active.size();
        auto [id, q] = active[k];
        active.erase(active.begin() + static_cast<long>(k));
        bool rel = rng() % 2;
        if (rel) free += q;
        h.push_back(act(rel ? lin_call::release : lin_call::confirm, id, q, lost ? lin_call::unknown : lin_call::ok, sent, answered));
      } else {
        int64_t q = 1 + static_cast<int64_t>(rng() % 2);
        auto id = "h" + std::to_string(i);
        bool ok = free >= q;
        if (ok) {
          free -= q;
          if (!lost) active.push_back({id, q});
        }
        h.push_back(reserve(id, q, lost ? lin_call::unknown : ok ? lin_call::ok : lin_call::out_of_stock, sent, answered));
      }
    }
    auto v = check_linearizable(stock, h);
    EXPECT_TRUE(v.linearizable) << "seed " << seed << ": " << v.detail;
    EXPECT_TRUE(v.decided) << v.detail;
    // One sold-out answer turned into an ok: a unit more than there was (unless a later
    // release made room; then the next such answer).
    bool caught = false;
    for (size_t i = 0; i < h.size() && !caught; ++i) {
      if (h[i].answer != lin_call::out_of_stock) continue;
      auto lie = h;
      lie[i].answer = lin_call::ok;
      lie[i].hold += "-lie";
      caught = !check_linearizable(stock, lie).linearizable;
    }
    EXPECT_TRUE(caught) << "seed " << seed;
  }
}

}  // namespace
}  // namespace holdfast
