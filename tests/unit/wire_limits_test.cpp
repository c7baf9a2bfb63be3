// The largest legitimate request and answer of each heavy call, built at the protocol's
// bounds (protocol/limits.hpp) with every name at its longest, must fit the one read limit
// every wire uses: else a reader would end a connection over a call it should serve.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include "protocol/order_wire.hpp"
#include "protocol/codec.hpp"

namespace holdfast {
namespace {

// Room for the RPC envelope around the params or results (Message, Call or Return,
// Payload, cap table): a few dozen words, well within this.
constexpr uint64_t envelope_words = 1'024;
// Server-made text (messages, reasons, errors) is not bounded by the protocol; a node's
// are short sentences. Measured with this much.
constexpr size_t message_bytes = 2'048;

std::string longest(size_t n) { return std::string(n, 'x'); }

uint64_t words(capnp::MessageBuilder& m) { return capnp::computeSerializedSizeInWords(m); }

// The size of a message whose root's list (made by `init`) holds `n` copies of `value`.
template <class Root, class Init, class T>
uint64_t list_words(Init init, size_t n, const T& value) {
  capnp::MallocMessageBuilder m;
  auto list = init(m.initRoot<Root>(), static_cast<unsigned>(n));
  for (unsigned i = 0; i < n; ++i) codec::write(list[i], value);
  return words(m);
}

void expect_fits(const char* what, uint64_t n) {
  SCOPED_TRACE(what);
  EXPECT_LE(n + envelope_words, wire_words_max) << what << ": " << n * 8 / 1024 << " KiB";
  std::cout << "  " << what << ": " << n * 8 / 1024 << " KiB of " << wire_words_max * 8 / 1024 << " KiB\n";
}

order_record longest_order() {
  order_record o;
  o.order_id = longest(order_id_bytes_max);
  o.user = longest(user_bytes_max);
  o.card = longest(card_bytes_max);
  for (size_t i = 0; i < cart_lines_max; ++i) o.lines.push_back({longest(sku_bytes_max), on_hand_max, 1});
  o.intent_id = longest(idempotency_key_bytes_max);
  o.reason = longest(message_bytes);
  o.last_error = longest(message_bytes);
  return o;
}

cart_info longest_cart() {
  cart_info c;
  c.user = longest(user_bytes_max);
  for (size_t i = 0; i < cart_lines_max; ++i) {
    c.lines.push_back({longest(sku_bytes_max), on_hand_max, 1});
    c.taken.push_back({longest(sku_bytes_max), on_hand_max, 1});
  }
  c.taken_by = longest(order_id_bytes_max);
  return c;
}

TEST(wire_limits, cart_batches_fit) {
  cart_result r;
  r.cart = longest_cart();
  expect_fits("cartOps answer", list_words<wire::Inventory::CartOpsResults>(
                                    [](auto b, unsigned n) { return b.initResults(n); }, entity_batch_max, r));
  cart_op op;
  op.user = longest(user_bytes_max);
  op.sku = longest(sku_bytes_max);
  op.order_id = longest(order_id_bytes_max);
  expect_fits("cartOps request", list_words<wire::Inventory::CartOpsParams>(
                                     [](auto b, unsigned n) { return b.initOps(n); }, entity_batch_max, op));
}

TEST(wire_limits, order_batches_fit) {
  order_op op;  // every field at once: more than any one kind carries
  op.kind = order_op_kind::place;
  op.order_id = longest(order_id_bytes_max);
  op.detail = longest(order_detail_bytes_max);
  op.user = longest(user_bytes_max);
  op.card = longest(card_bytes_max);
  op.lines = longest_order().lines;
  op.webhook_body = longest(webhook_body_bytes_max);
  op.webhook_signature = longest(webhook_signature_bytes_max);
  expect_fits("orderOps request", list_words<wire::Inventory::OrderOpsParams>(
                                      [](auto b, unsigned n) { return b.initOps(n); }, entity_batch_max, op));
  order_result r{code::wrong_state, longest(message_bytes), longest_order()};
  expect_fits("orderOps answer", list_words<wire::Inventory::OrderOpsResults>(
                                     [](auto b, unsigned n) { return b.initResults(n); }, entity_batch_max, r));
}

TEST(wire_limits, order_pages_fit) {
  auto order = longest_order();
  expect_fits("listOrders page", list_words<wire::Inventory::ListOrdersResults>(
                                     [](auto b, unsigned n) { return b.initOrders(n); }, order_list_limit_max, order));

  capnp::MallocMessageBuilder events;
  auto page = events.initRoot<wire::Inventory::OrderEventsResults>().initEvents(order_events_limit_max);
  for (unsigned i = 0; i < order_events_limit_max; ++i) codec::write(page[i].initOrder(), order);
  expect_fits("orderEvents page", words(events));

  capnp::MallocMessageBuilder checkout;
  checkout_result c;
  c.status = code::ok;
  for (size_t i = 0; i < cart_lines_max; ++i)
    c.changed.push_back({longest(sku_bytes_max), on_hand_max, 1, on_hand_max, "price_changed", 1});
  codec::write(checkout.initRoot<wire::CheckoutResult>(), c);
  expect_fits("checkout answer", words(checkout));
}

TEST(wire_limits, hold_batches_and_sku_pages_fit) {
  hold_op op;
  op.kind = hold_op_kind::reserve;
  op.hold_id = longest(hold_id_bytes_max);
  op.sku = longest(sku_bytes_max);
  op.user = longest(user_bytes_max);
  expect_fits("reserveBatch request", list_words<wire::Inventory::ReserveBatchParams>(
                                          [](auto b, unsigned n) { return b.initRequests(n); }, hold_batch_limit, op));

  hold_result r;
  r.status = code::hold_conflict;
  r.hold = {longest(hold_id_bytes_max), longest(sku_bytes_max), on_hand_max, hold_state::active, 1};
  r.message = longest(message_bytes);
  expect_fits("reserveBatch answer", list_words<wire::Inventory::ReserveBatchResults>(
                                         [](auto b, unsigned n) { return b.initResults(n); }, hold_batch_limit, r));

  sku_page p;
  sku_info info;
  info.sku = longest(sku_bytes_max);
  info.title = longest(title_bytes_max);
  p.skus.assign(sku_list_limit_max, info);
  p.next = longest(sku_bytes_max);
  p.partial = longest(message_bytes);
  capnp::MallocMessageBuilder skus;
  codec::write(skus.initRoot<wire::SkuPage>(), p);
  expect_fits("listSkus page", words(skus));
}

TEST(wire_limits, hold_pages_fit) {
  hold_info h{longest(hold_id_bytes_max), longest(sku_bytes_max), on_hand_max, hold_state::active, 1};
  sku_info info;
  info.sku = longest(sku_bytes_max);
  info.title = longest(title_bytes_max);
  capnp::MallocMessageBuilder m;
  auto page = m.initRoot<wire::Inventory::ListHoldsResults>();
  codec::write(page.initResult(), sku_result{code::ok, info, {}});
  auto holds = page.initHolds(hold_list_limit_max);
  for (unsigned i = 0; i < hold_list_limit_max; ++i) codec::write(holds[i], h);
  page.setNext(longest(hold_id_bytes_max));
  expect_fits("listHolds page", words(m));
}

}  // namespace
}  // namespace holdfast
