// The client library's batch and single-call paths under AddressSanitizer, against a real
// `holdfast node` (built normally). The client library, the protocol codec and the
// process harness are compiled here with -fsanitize=address, and run with
// detect_stack_use_after_return, which is what catches a continuation that refers to a
// local of a function that has returned (KJ's then(f) on an lvalue keeps a reference).
#include <gtest/gtest.h>

#include <sanitizer/common_interface_defs.h>

#include <filesystem>

#include "client/client.hpp"
#include "harness/node_process.hpp"
#include "harness/processes.hpp"

// Read by the ASan runtime at start, however the binary is run.
extern "C" const char* __asan_default_options() {
  return "detect_stack_use_after_return=1:detect_leaks=0";
}

namespace holdfast {
namespace {

// A sanitizer report ends the process without destructors: the nodes it started go too.
const bool nodes_die_with_us = [] {
  __sanitizer_set_death_callback(+[] { kill_registered_now(); });
  return true;
}();

class client_asan_test : public ::testing::Test {
protected:
  client_asan_test() : dir_(make_temp_dir("holdfast-asan")) {
    node_ = std::make_unique<node_process>(HOLDFAST_BINARY, dir_ + "/data",
                                           std::vector<std::string>{"--batch-max", "100"});
  }
  ~client_asan_test() override {
    node_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
  std::unique_ptr<node_process> node_;
};

std::vector<hold_op> ops_of(hold_op_kind kind, size_t n, const std::string& prefix) {
  std::vector<hold_op> ops;
  for (size_t i = 0; i < n; ++i)
    ops.push_back({kind, kind == hold_op_kind::reserve ? "asan" : "", prefix + std::to_string(i), 1, 60'000, {}});
  return ops;
}

TEST_F(client_asan_test, a_batch_over_the_limit_answers_one_invalid_per_item_on_every_path) {
  blocking_client c(node_->address());
  ASSERT_EQ(c.create_sku("asan", 1000, 100).status, code::ok);
  auto& ws = c.io().waitScope;
  auto& a = c.async();
  using batch_call = kj::Promise<std::vector<hold_result>> (client::*)(const std::vector<hold_op>&);
  for (auto [kind, call] : {std::pair<hold_op_kind, batch_call>{hold_op_kind::reserve, &client::reserve_batch},
                            {hold_op_kind::confirm, &client::confirm_batch},
                            {hold_op_kind::release, &client::release_batch}}) {
    auto rs = (a.*call)(ops_of(kind, 101, "over-")).wait(ws);
    ASSERT_EQ(rs.size(), 101u);
    for (auto& r : rs) {
      EXPECT_EQ(r.status, code::invalid);
      EXPECT_NE(r.message.find("batch of 101 operations exceeds 100"), std::string::npos) << r.message;
    }
  }
  std::vector<sku_op> creates;
  for (int i = 0; i < 101; ++i) creates.push_back({sku_op_kind::create, "c" + std::to_string(i), 1, 1, {}});
  auto cs = c.create_skus(creates);
  ASSERT_EQ(cs.size(), 101u);
  for (auto& r : cs) EXPECT_EQ(r.status, code::invalid);
  EXPECT_EQ(c.query_sku("asan").sku.reserved, 0);  // nothing of the refused batches applied
}

// Cart and order batches carry whole carts and orders: the node takes at most
// min(--batch-max, entity_batch_max) in one call, and the client splits larger ones.
TEST_F(client_asan_test, cart_and_order_batches_are_split_by_the_client_and_capped_by_the_node) {
  client_options o;
  o.batch_size_max = 100;
  blocking_client c(node_->address(), o);
  ASSERT_EQ(c.create_sku("asan", 1000, 100).status, code::ok);
  auto& ws = c.io().waitScope;
  std::vector<cart_op> adds;
  for (int i = 0; i < 150; ++i) {
    cart_op op;
    op.kind = cart_op_kind::add;
    op.user = "u" + std::to_string(i);
    op.sku = "asan";
    op.qty = 1 + i % 3;
    adds.push_back(op);
  }
  auto added = c.async().cart_ops(adds).wait(ws);
  ASSERT_EQ(added.size(), 150u);
  for (int i = 0; i < 150; ++i) {
    ASSERT_EQ(added[i].status, code::ok) << added[i].message;
    EXPECT_EQ(added[i].cart.user, "u" + std::to_string(i));  // answers in order
  }
  // A client told a larger batch size sends 150 in one call: refused whole, nothing applied.
  client_options big;
  big.batch_size_max = 1024;
  auto b = client::connect(*c.io().provider, node_->address(), big).wait(ws);
  for (auto& op : adds) op.qty = 7;
  auto refused = b->cart_ops(adds).wait(ws);
  ASSERT_EQ(refused.size(), 150u);
  for (auto& r : refused) {
    EXPECT_EQ(r.status, code::invalid);
    EXPECT_NE(r.message.find("exceeds 100"), std::string::npos) << r.message;
  }
  cart_op show;
  show.kind = cart_op_kind::view;
  show.user = "u4";
  auto shown = c.async().cart_ops({show}).wait(ws);
  ASSERT_EQ(shown.size(), 1u);
  ASSERT_EQ(shown[0].cart.lines.size(), 1u);
  EXPECT_EQ(shown[0].cart.lines[0].qty, 2);
}

TEST_F(client_asan_test, batches_within_the_limit_and_single_calls_answer_in_order) {
  client_options o;
  o.batch_size_max = 100;
  blocking_client c(node_->address(), o);
  ASSERT_EQ(c.create_sku("asan", 1000, 100).status, code::ok);
  auto& ws = c.io().waitScope;
  auto held = c.async().reserve_batch(ops_of(hold_op_kind::reserve, 64, "in-")).wait(ws);
  ASSERT_EQ(held.size(), 64u);
  for (auto& r : held) EXPECT_EQ(r.status, code::ok);
  auto confirmed = c.async().confirm_batch(ops_of(hold_op_kind::confirm, 32, "in-")).wait(ws);
  for (auto& r : confirmed) EXPECT_EQ(r.status, code::ok);
  // Auto-batched: 300 calls in one turn leave as batches of at most 100.
  auto submitted = c.async().submit(ops_of(hold_op_kind::reserve, 300, "auto-")).wait(ws);
  ASSERT_EQ(submitted.size(), 300u);
  for (auto& r : submitted) EXPECT_EQ(r.status, code::ok);
  EXPECT_EQ(c.async().batched().ops, 300u);
  EXPECT_GE(c.async().batched().batches, 3u);
  // Single calls without auto-batching: the confirm, release and query paths.
  client_options single;
  single.auto_batch = false;
  auto s = client::connect(*c.io().provider, node_->address(), single).wait(ws);
  EXPECT_EQ(s->reserve({hold_op_kind::reserve, "asan", "one", 1, 60'000, {}}).wait(ws).status, code::ok);
  EXPECT_EQ(s->query_hold("one").wait(ws).hold.state, hold_state::active);
  EXPECT_EQ(s->release("one").wait(ws).hold.state, hold_state::released);
  EXPECT_EQ(s->confirm("in-40", "asan").wait(ws).hold.state, hold_state::confirmed);
  EXPECT_EQ(s->sku({sku_op_kind::restock, "asan", 5, 0, {}}).wait(ws).status, code::ok);
  EXPECT_EQ(s->sku({sku_op_kind::adjust, "asan", 900, 0, {}}).wait(ws).status, code::ok);
  auto sku = s->sku({sku_op_kind::query, "asan", 0, 0, {}}).wait(ws).sku;
  EXPECT_EQ(sku.sold, 33);
  EXPECT_EQ(sku.reserved, 64 - 33 + 300);
}

}  // namespace
}  // namespace holdfast
