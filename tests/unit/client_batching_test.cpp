// The client's auto-batching against an in-process Inventory whose answers the test
// controls: calls made while a quick batch is out go together in the next one, and one
// batch that never answers does not hold up later calls.
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <chrono>

#include "cluster/client.hpp"
#include "protocol/codec.hpp"

namespace holdfast::testing {
namespace {

// Answers every reserve batch `ok` after `delay`, except batch number `stall` (0-based),
// which is never answered.
class scripted_inventory final : public wire::Inventory::Server {
public:
  scripted_inventory(kj::Timer& timer, kj::Duration delay, int stall) : timer_(timer), delay_(delay), stall_(stall) {}
  std::vector<size_t> sizes;  // each batch's size, in arrival order

  kj::Promise<void> reserveBatch(ReserveBatchContext ctx) override {
    auto n = ctx.getParams().getRequests().size();
    sizes.push_back(n);
    if (static_cast<int>(sizes.size()) - 1 == stall_) return kj::NEVER_DONE;
    return timer_.afterDelay(delay_).then([ctx, n]() mutable {
      auto out = ctx.getResults().initResults(n);
      for (size_t i = 0; i < n; ++i) codec::write(out[i], hold_result{});
    });
  }

private:
  kj::Timer& timer_;
  kj::Duration delay_;
  int stall_;
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
  o.call_timeout_ms = 0;  // the stuck call waits for ever: nothing times it out
  client c(wire::Inventory::Client(kj::mv(server)), timer, o);
  auto stuck = c.reserve(reserve(0));
  timer.afterDelay(kj::MILLISECONDS).wait(io.waitScope);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(c.reserve(reserve(1)).wait(io.waitScope).status, code::ok);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_EQ(inventory->sizes.size(), 2u);
  EXPECT_FALSE(stuck.poll(io.waitScope));
}

}  // namespace
}  // namespace holdfast::testing
