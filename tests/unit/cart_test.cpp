// Carts: the rules (cart_book) and the actors (one per user, durable, stopped when idle),
// on the deterministic scheduler over a real LMDB environment.
#include "test_support.hpp"

namespace holdfast::testing {
namespace {

cart_op add(const std::string& user, const std::string& sku, int64_t qty) {
  return {cart_op_kind::add, user, sku, qty, 0, 0, {}};
}
cart_op set(const std::string& user, const std::string& sku, int64_t qty) {
  return {cart_op_kind::set, user, sku, qty, 0, 0, {}};
}
cart_op view(const std::string& user) { return {cart_op_kind::view, user, {}, 0, 0, 0, {}}; }

std::string lines(const cart_info& c) {
  std::string out;
  for (auto& l : c.lines) out += (out.empty() ? "" : " ") + l.sku + "x" + std::to_string(l.qty);
  return out;
}

TEST(cart_book, lines_keep_their_order_and_every_change_counts) {
  cart_book book("ann");
  bool changed = false;
  EXPECT_EQ(lines(book.apply(add("ann", "tee", 2), 10, changed).cart), "teex2");
  EXPECT_TRUE(changed);
  book.apply(add("ann", "mug", 1), 11, changed);
  book.apply(add("ann", "tee", 1), 12, changed);
  auto r = book.apply(view("ann"), 13, changed);
  EXPECT_FALSE(changed);
  EXPECT_EQ(lines(r.cart), "teex3 mugx1");
  EXPECT_EQ(r.cart.version, 3u);
  EXPECT_EQ(r.cart.updated_ms, 12);
  book.apply(set("ann", "tee", 3), 14, changed);
  EXPECT_FALSE(changed) << "setting the same qty changes nothing";
  book.apply(set("ann", "tee", 0), 15, changed);
  EXPECT_TRUE(changed);
  EXPECT_EQ(lines(book.cart()), "mugx1");
  book.apply({cart_op_kind::remove, "ann", "nothing", 0, 0, 0, {}}, 16, changed);
  EXPECT_FALSE(changed);
  book.apply({cart_op_kind::clear, "ann", {}, 0, 0, 0, {}}, 17, changed);
  EXPECT_TRUE(changed);
  EXPECT_TRUE(book.cart().lines.empty());
  // Bounded: the line past the maximum is refused, and changes nothing.
  for (size_t i = 0; i < cart_lines_max; ++i) book.apply(add("ann", "s" + std::to_string(i), 1), 18, changed);
  auto full = book.apply(add("ann", "one-more", 1), 19, changed);
  EXPECT_EQ(full.status, code::invalid);
  EXPECT_FALSE(changed);
  EXPECT_NE(full.message.find("the most a cart holds"), std::string::npos) << full.message;
  EXPECT_EQ(book.apply(add("ann", "s0", 1), 20, changed).status, code::ok) << "an existing line grows";
  auto over = book.apply(add("ann", "s0", on_hand_max), 21, changed);
  EXPECT_EQ(over.status, code::invalid);
  EXPECT_FALSE(changed);
}

// Found by the adversarial pass: concurrent checkouts with different keys each placed
// an order from one cart. A checkout takes the lines it read, once.
TEST(cart_book, a_checkout_takes_the_lines_it_read_once_and_the_same_order_again) {
  cart_book book("ann");
  bool changed = false;
  book.apply(add("ann", "tee", 2), 10, changed);
  auto read = book.apply(view("ann"), 11, changed).cart;
  auto take = [&](const std::string& order, uint64_t version) {
    return book.apply({cart_op_kind::take, "ann", {}, 0, 0, version, order}, 12, changed);
  };
  auto first = take("o-1", read.version);
  ASSERT_EQ(first.status, code::ok) << first.message;
  EXPECT_TRUE(changed);
  EXPECT_TRUE(first.cart.lines.empty());
  EXPECT_EQ(lines(cart_info{"ann", first.cart.taken, 0, 0, {}, {}}), "teex2");
  EXPECT_EQ(take("o-2", read.version).status, code::wrong_state) << "another checkout of the same cart";
  auto again = take("o-1", read.version);
  EXPECT_EQ(again.status, code::ok) << "the same checkout again: the same lines";
  EXPECT_EQ(again.cart.taken_by, "o-1");
  // A line added after the read: the cart is not taken as it was read.
  cart_book other("bob");
  other.apply(add("bob", "tee", 1), 10, changed);
  auto seen = other.apply(view("bob"), 11, changed).cart.version;
  other.apply(add("bob", "mug", 1), 12, changed);
  EXPECT_EQ(other.apply({cart_op_kind::take, "bob", {}, 0, 0, seen, "o-3"}, 13, changed).status, code::wrong_state);
  EXPECT_EQ(lines(other.cart()), "teex1 mugx1") << "nothing lost";
}

TEST(cart_op, bad_operations_are_refused_with_a_reason) {
  request_limits limits;
  EXPECT_EQ(validate(add("ann", "tee", 1), limits), "");
  EXPECT_NE(validate(add("", "tee", 1), limits), "");
  EXPECT_NE(validate(add(std::string(user_bytes_max + 1, 'u'), "tee", 1), limits), "");
  EXPECT_NE(validate(add("ann", "", 1), limits), "");
  EXPECT_NE(validate(add("ann", "tee", 0), limits), "");
  EXPECT_NE(validate(add("ann", "tee", -1), limits), "");
  EXPECT_EQ(validate(set("ann", "tee", 0), limits), "");
  EXPECT_NE(validate(set("ann", "tee", -1), limits), "");
  EXPECT_NE(validate(add("a\xff", "tee", 1), limits), "");
  cart_op unknown{static_cast<cart_op_kind>(0xff), "ann", "tee", 1, 0, 0, {}};
  EXPECT_NE(validate(unknown, limits), "");
}

class cart_test : public node_fixture {
protected:
  void SetUp() override {
    config_.cart_idle_ms = 1'000;
    config_.storage.map_size_bytes = size_t{1} << 20;  // small enough to fill
    start();
  }
};

// Each change is answered once it is in the log; the cart comes back after a crash,
// from the log and from a snapshot, and after its actor was stopped for being idle.
TEST_F(cart_test, a_cart_survives_crashes_snapshots_and_idle_stops) {
  auto rs = carts({add("ann", "tee", 2), add("bob", "mug", 1), add("ann", "mug", 1), view("ann")});
  ASSERT_EQ(rs.size(), 4u);
  for (auto& r : rs) ASSERT_EQ(r.status, code::ok) << r.message;
  EXPECT_EQ(lines(rs[3].cart), "teex2 mugx1");
  EXPECT_EQ(stats().batches, 3u) << "three changes, three batches; the view writes nothing";
  EXPECT_EQ(cart_actors(), 2);
  restart();
  EXPECT_EQ(lines(carts({view("ann")}).at(0).cart), "teex2 mugx1");
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  ASSERT_EQ(carts({set("ann", "tee", 5)}).at(0).status, code::ok);
  restart();
  auto ann = carts({view("ann")}).at(0);
  EXPECT_EQ(lines(ann.cart), "teex5 mugx1");
  EXPECT_EQ(ann.cart.version, 3u);
  EXPECT_EQ(lines(carts({view("bob")}).at(0).cart), "mugx1");
  // Idle carts stop; their state is on disk.
  EXPECT_EQ(cart_actors(), 2);
  advance_ms(2'000);
  EXPECT_EQ(cart_actors(), 0);
  EXPECT_EQ(lines(carts({view("ann")}).at(0).cart), "teex5 mugx1");
  ASSERT_EQ(carts({{cart_op_kind::clear, "ann", {}, 0, 0, 0, {}}}).at(0).status, code::ok);
  restart();
  EXPECT_TRUE(carts({view("ann")}).at(0).cart.lines.empty());
  EXPECT_TRUE(carts({view("nobody")}).at(0).cart.lines.empty()) << "a new user has an empty cart";
  EXPECT_EQ(env_->check().problems.size(), 0u);
}

// A write the store refuses is not acknowledged, and the cart goes back to what is
// durable.
TEST_F(cart_test, a_refused_write_is_not_acknowledged_and_memory_goes_back) {
  ASSERT_EQ(carts({add("ann", "tee", 1)}).at(0).status, code::ok);
  // Fill the map with holds until the store refuses writes.
  create("filler", 1'000'000);
  ASSERT_GE(fill_until_full("filler", 600'000), 0);
  auto refused = carts({add("ann", "mug", 1), view("ann")});
  EXPECT_EQ(refused.at(0).status, code::storage_full) << refused.at(0).message;
  EXPECT_EQ(lines(refused.at(1).cart), "teex1") << "the view after it shows what is durable";
  EXPECT_EQ(lines(carts({view("ann")}).at(0).cart), "teex1");
}

}  // namespace
}  // namespace holdfast::testing
