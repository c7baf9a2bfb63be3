// Real `holdfast node` processes on 127.0.0.1 with temporary data directories, killed
// with SIGKILL and restarted. Waits are conditions with deadlines, never fixed sleeps.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <random>

#include "client/client.hpp"
#include "harness/node_process.hpp"
#include "raw_rpc.hpp"

namespace holdfast {
namespace {

using testing::connect_raw;

using namespace std::chrono_literals;

class node_test : public ::testing::Test {
protected:
  node_test() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "holdfast-node-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
  }
  ~node_test() override {
    node_.reset();
    std::filesystem::remove_all(dir_);
  }
  void start() { node_ = std::make_unique<node_process>(HOLDFAST_BINARY, dir_ + "/data"); }

  // Polls `done` until it holds or the deadline passes.
  static bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(20ms);  // polling interval, not a wait for an outcome
    }
    return true;
  }

  std::string dir_;
  std::unique_ptr<node_process> node_;
};

TEST_F(node_test, five_hundred_concurrent_buyers_get_exactly_one_hundred_units) {
  start();
  blocking_client c(node_->address());
  ASSERT_EQ(c.create_sku("hot", 100, 500).status, code::ok);
  auto& io = c.io();
  std::vector<kj::Own<client>> conns;
  for (int i = 0; i < 8; ++i)
    conns.push_back(client::connect(*io.provider, node_->address()).wait(io.waitScope));
  int granted = 0, refused = 0, other = 0;
  auto calls = kj::heapArrayBuilder<kj::Promise<void>>(500);
  for (int i = 0; i < 500; ++i)
    calls.add(conns[i % conns.size()]
                ->reserve({hold_op_kind::reserve, "hot", "buyer-" + std::to_string(i), 1, 60'000, {}})
                .then([&](hold_result r) {
                  if (r.status == code::ok) ++granted;
                  else if (r.status == code::out_of_stock) ++refused;
                  else ++other;
                }));
  kj::joinPromises(calls.finish()).wait(io.waitScope);
  EXPECT_EQ(granted, 100);
  EXPECT_EQ(refused, 400);
  EXPECT_EQ(other, 0);
  auto s = c.query_sku("hot").sku;
  EXPECT_EQ(s.reserved, 100);
  EXPECT_EQ(s.active_holds, 100);
}

TEST_F(node_test, kill_9_during_a_storm_loses_no_acknowledged_hold) {
  start();
  std::map<std::string, bool> acked;  // hold id -> acknowledged
  {
    blocking_client c(node_->address());
    ASSERT_EQ(c.create_sku("storm", 100'000, 1).status, code::ok);
    auto& io = c.io();
    std::vector<kj::Own<client>> conns;
    for (int i = 0; i < 4; ++i)
      conns.push_back(client::connect(*io.provider, node_->address()).wait(io.waitScope));
    // Keep 200 reservations in flight; kill the node once 300 are acknowledged.
    int next = 0, acked_count = 0;
    size_t in_flight = 0, in_flight_at_kill = 0;
    bool killed = false;
    std::function<kj::Promise<void>(size_t)> worker = [&](size_t w) -> kj::Promise<void> {
      if (killed) return kj::READY_NOW;
      auto id = "s-" + std::to_string(next++);
      acked[id] = false;
      ++in_flight;
      return conns[w % conns.size()]
        ->reserve({hold_op_kind::reserve, "storm", id, 1, 600'000, {}})
        .then(
          [&, id, w](hold_result r) -> kj::Promise<void> {
            --in_flight;
            if (r.status == code::ok) acked[id] = true, ++acked_count;
            if (acked_count >= 300 && !killed) {
              killed = true;
              in_flight_at_kill = in_flight;
              node_->kill9();
            }
            return worker(w);
          },
          [](kj::Exception&&) {});  // the connection died with the node
    };
    auto workers = kj::heapArrayBuilder<kj::Promise<void>>(200);
    for (size_t w = 0; w < 200; ++w) workers.add(worker(w));
    kj::joinPromises(workers.finish()).wait(io.waitScope);
    ASSERT_TRUE(killed);
    EXPECT_GT(in_flight_at_kill, 0u) << "the kill landed between writes: it proved nothing";
  }
  start();  // same data directory
  blocking_client c(node_->address());
  int64_t acked_count = 0, present = 0;
  for (auto& [id, was_acked] : acked) {
    auto r = c.query_hold(id, "storm");
    if (was_acked) {
      ++acked_count;
      EXPECT_EQ(r.status, code::ok) << id << " was acknowledged but is gone";
      EXPECT_EQ(r.hold.state, hold_state::active);
    }
    if (r.status == code::ok) ++present;
  }
  EXPECT_GE(acked_count, 300);
  // Unacknowledged holds may or may not have committed, but each counts exactly once.
  auto s = c.query_sku("storm").sku;
  EXPECT_EQ(s.reserved, present);
  EXPECT_EQ(s.active_holds, present);
  EXPECT_EQ(s.on_hand, 100'000);
}

TEST_F(node_test, holds_expire_after_restart_and_sales_stay_sold) {
  start();
  int64_t deadline_ms = 0;
  {
    blocking_client c(node_->address());
    ASSERT_EQ(c.create_sku("tee", 10, 1999).status, code::ok);
    ASSERT_EQ(c.reserve("tee", 3, "sold", 60'000).status, code::ok);
    ASSERT_EQ(c.confirm("sold").status, code::ok);
    auto shortlived = c.reserve("tee", 2, "short", 1'500);
    ASSERT_EQ(shortlived.status, code::ok);
    deadline_ms = shortlived.hold.deadline_ms;
    ASSERT_EQ(c.reserve("tee", 1, "overdue", 300).status, code::ok);
  }
  node_->kill9();
  // Down past one deadline: the overdue hold ends during recovery, before serving.
  ASSERT_TRUE(eventually([&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
             .count() > deadline_ms - 1'000;
  }));
  start();
  blocking_client c(node_->address());
  EXPECT_EQ(c.query_hold("overdue").hold.state, hold_state::expired);
  auto s = c.query_sku("tee").sku;
  EXPECT_EQ(s.on_hand, 7);
  EXPECT_EQ(s.sold, 3);
  // The other hold is still active and expires on time with the node up.
  EXPECT_TRUE(eventually([&] { return c.query_sku("tee").sku.reserved == 0; }));
  EXPECT_EQ(c.query_hold("short").hold.state, hold_state::expired);
  EXPECT_EQ(c.confirm("short").status, code::hold_expired);
  EXPECT_EQ(c.query_hold("sold").hold.state, hold_state::confirmed);
  EXPECT_EQ(c.query_sku("tee").sku.on_hand, 7);
}

TEST_F(node_test, garbage_and_oversized_frames_leave_the_node_serving) {
  start();
  blocking_client c(node_->address());
  ASSERT_EQ(c.create_sku("safe", 5, 100).status, code::ok);
  ASSERT_EQ(c.reserve("safe", 2, "keep", 60'000).status, code::ok);
  std::mt19937 rng(7);
  {  // random bytes
    int fd = connect_raw(node_->address());
    ASSERT_GE(fd, 0);
    std::vector<char> junk(64 * 1024);
    for (auto& b : junk) b = static_cast<char>(rng());
    (void)!write(fd, junk.data(), junk.size());
    close(fd);
  }
  {  // a frame header announcing a 1 GiB segment
    int fd = connect_raw(node_->address());
    ASSERT_GE(fd, 0);
    uint32_t header[2] = {0, (1u << 30) / 8};
    (void)!write(fd, header, sizeof header);
    close(fd);
  }
  // The open connection and new ones still work; nothing changed.
  auto other = client::connect(*c.io().provider, node_->address()).wait(c.io().waitScope);
  auto s = other->sku({sku_op_kind::query, "safe", 0, 0, {}}).wait(c.io().waitScope).sku;
  EXPECT_EQ(s.reserved, 2);
  EXPECT_EQ(s.on_hand, 5);
  EXPECT_EQ(c.reserve("safe", -1, "neg", 1000).status, code::invalid);
  EXPECT_EQ(c.reserve("safe", 1, "ttl", int64_t{1} << 50).status, code::invalid);
  EXPECT_EQ(c.reserve("nope", 1, "x", 1000).status, code::unknown_sku);
  std::vector<hold_op> huge(5000, hold_op{hold_op_kind::reserve, "safe", "b", 1, 1000, {}});
  auto rs = c.async().reserve_batch(huge).wait(c.io().waitScope);
  ASSERT_EQ(rs.size(), 5000u);
  EXPECT_EQ(rs[0].status, code::invalid);
  EXPECT_EQ(c.query_sku("safe").sku.reserved, 2);
}

TEST_F(node_test, batch_calls_answer_each_item) {
  start();
  blocking_client c(node_->address());
  ASSERT_EQ(c.create_sku("a", 2, 1).status, code::ok);
  ASSERT_EQ(c.create_sku("b", 1, 1).status, code::ok);
  std::vector<hold_op> ops{{hold_op_kind::reserve, "a", "1", 1, 60'000, {}},
                           {hold_op_kind::reserve, "b", "2", 1, 60'000, {}},
                           {hold_op_kind::reserve, "b", "3", 1, 60'000, {}},
                           {hold_op_kind::reserve, "a", "4", 1, 60'000, {}}};
  auto rs = c.async().reserve_batch(ops).wait(c.io().waitScope);
  ASSERT_EQ(rs.size(), 4u);
  EXPECT_EQ(rs[0].status, code::ok);
  EXPECT_EQ(rs[1].status, code::ok);
  EXPECT_EQ(rs[2].status, code::out_of_stock);
  EXPECT_EQ(rs[3].status, code::ok);
  std::vector<hold_op> refs{{hold_op_kind::confirm, "", "1", 0, 0, {}},
                            {hold_op_kind::confirm, "", "404", 0, 0, {}}};
  auto cs = c.async().confirm_batch(refs).wait(c.io().waitScope);
  EXPECT_EQ(cs[0].status, code::ok);
  EXPECT_EQ(cs[1].status, code::unknown_hold);
  auto released = c.async().release_batch({{hold_op_kind::release, "", "4", 0, 0, {}}})
                    .wait(c.io().waitScope);
  EXPECT_EQ(released[0].hold.state, hold_state::released);
  EXPECT_EQ(c.query_sku("a").sku.sold, 1);
}

}  // namespace
}  // namespace holdfast
