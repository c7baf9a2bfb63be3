// The client's auto-batching against an in-process Inventory whose answers the test
// controls: calls made while a quick batch is out go together in the next one, and one
// batch that never answers does not hold up later calls.
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <chrono>
#include <cstdint>

#include "client/client.hpp"
#include "protocol/codec.hpp"

namespace holdfast::testing {
namespace {

// Answers every reserve batch `ok` after `delay`, except batch number `stall` (0-based)
// and every one from `stall_from` on, which are never answered.
class scripted_inventory final : public wire::Inventory::Server {
public:
  scripted_inventory(kj::Timer& timer, kj::Duration delay, int stall, int stall_from = INT32_MAX)
    : timer_(timer), delay_(delay), stall_(stall), stall_from_(stall_from) {}
  std::vector<size_t> sizes;  // each batch's size, in arrival order

  kj::Promise<void> reserveBatch(ReserveBatchContext ctx) override {
    auto n = ctx.getParams().getRequests().size();
    sizes.push_back(n);
    auto number = static_cast<int>(sizes.size()) - 1;
    if (number == stall_ || number >= stall_from_) return kj::NEVER_DONE;
    return timer_.afterDelay(delay_).then([ctx, n]() mutable {
      auto out = ctx.getResults().initResults(n);
      for (size_t i = 0; i < n; ++i) codec::write(out[i], hold_result{});
    });
  }

private:
  kj::Timer& timer_;
  kj::Duration delay_;
  int stall_;
  int stall_from_;
};

hold_op reserve(int i) { return {hold_op_kind::reserve, "s", "h" + std::to_string(i), 1, 60'000, {}}; }

TEST(client_batching, calls_made_while_a_quick_batch_is_out_all_go_in_the_next) {
  auto io = kj::setupAsyncIo();
  auto& timer = io.provider->getTimer();
  auto server = kj::heap<scripted_inventory>(timer, 20 * kj::MILLISECONDS, -1);
  auto* inventory = server.get();
  client c(wire::Inventory::Client(kj::mv(server)), timer);
  // Learn the round trip (20 ms) with lone calls.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c.reserve(reserve(i)).wait(io.waitScope).status, code::ok);
  // 10 calls in one turn: one batch. While it is out (20 ms), 30 more in two bursts a few
  // ms apart: they wait for it (it is not slow) and leave together.
  auto first = kj::heapArrayBuilder<kj::Promise<hold_result>>(40);
  for (int i = 0; i < 10; ++i) first.add(c.reserve(reserve(100 + i)));
  for (int burst = 0; burst < 2; ++burst) {
    timer.afterDelay(2 * kj::MILLISECONDS).wait(io.waitScope);
    for (int i = 0; i < 15; ++i) first.add(c.reserve(reserve(200 + 15 * burst + i)));
  }
  for (auto& r : kj::joinPromises(first.finish()).wait(io.waitScope)) EXPECT_EQ(r.status, code::ok);
  ASSERT_EQ(inventory->sizes.size(), 5u) << "3 lone calls, then two batches";
  EXPECT_EQ(inventory->sizes[3], 10u);
  EXPECT_EQ(inventory->sizes[4], 30u);
}

TEST(client_batching, a_batch_that_never_answers_does_not_hold_later_calls) {
  auto io = kj::setupAsyncIo();
  auto& timer = io.provider->getTimer();
  auto server = kj::heap<scripted_inventory>(timer, kj::MILLISECONDS, 0);
  auto* inventory = server.get();
  client_options o;
  // Long enough that only the slow-batch rule can send the second call in time (it would
  // otherwise go when the stuck one times out), short enough that a break fails fast.
  o.call_timeout_ms = 3'000;
  client c(wire::Inventory::Client(kj::mv(server)), timer, o);
  auto stuck = c.reserve(reserve(0));
  timer.afterDelay(kj::MILLISECONDS).wait(io.waitScope);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(c.reserve(reserve(1)).wait(io.waitScope).status, code::ok);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_EQ(inventory->sizes.size(), 2u);
  EXPECT_FALSE(stuck.poll(io.waitScope));
}

// Batches stuck: the calls queued behind them go out a batch at a time as the stuck
// ones time out, and those still queued (never sent: nothing applied) hear `unavailable`
// by their own deadline, instead of waiting a deadline per batch ahead of them.
TEST(client_batching, calls_never_sent_are_answered_unavailable_by_their_own_deadline) {
  auto io = kj::setupAsyncIo();
  auto& timer = io.provider->getTimer();
  auto server = kj::heap<scripted_inventory>(timer, kj::MILLISECONDS, -1, 0);  // none answers
  auto* inventory = server.get();
  client_options o;
  o.call_timeout_ms = 300;
  o.batch_size_max = 4;
  client c(wire::Inventory::Client(kj::mv(server)), timer, o);
  auto first = c.reserve(reserve(0));
  timer.afterDelay(5 * kj::MILLISECONDS).wait(io.waitScope);
  auto second = c.reserve(reserve(1));  // the first is slow: a second batch goes
  timer.afterDelay(5 * kj::MILLISECONDS).wait(io.waitScope);
  auto start = std::chrono::steady_clock::now();
  auto queued = kj::heapArrayBuilder<kj::Promise<hold_result>>(10);
  for (int i = 0; i < 10; ++i) queued.add(c.reserve(reserve(10 + i)));
  auto rs = kj::joinPromises(queued.finish()).wait(io.waitScope);
  auto waited = std::chrono::steady_clock::now() - start;
  // When the first stuck batch timed out, 4 went in its place (and stuck in turn). The
  // second slot, freed 5 ms later, waits for that batch to be slow (50 ms at most, its
  // round trips having been slow): meanwhile the other 6 reach their own deadline unsent.
  EXPECT_EQ(inventory->sizes.size(), 3u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(rs[i].status, code::outcome_unknown) << i;
  for (int i = 4; i < 10; ++i) {
    EXPECT_EQ(rs[i].status, code::unavailable) << i;
    EXPECT_NE(rs[i].message.find("not sent"), std::string::npos) << rs[i].message;
  }
  EXPECT_LT(waited, std::chrono::milliseconds(1500)) << "two deadlines at most";
  EXPECT_EQ(first.wait(io.waitScope).status, code::outcome_unknown);
  EXPECT_EQ(second.wait(io.waitScope).status, code::outcome_unknown);
}

}  // namespace
}  // namespace holdfast::testing
