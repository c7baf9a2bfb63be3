// Orders and checkout on the wire (protocol/inventory.capnp OrderOp, OrderResult,
// CheckoutResult): the codecs live here because the order types are the actors'.
#pragma once

#include <string>
#include <vector>

#include "protocol/orders.hpp"
#include "protocol/inventory.capnp.h"

namespace holdfast {

// A cart line checked at checkout, as it is now.
struct checkout_line {
  std::string sku;
  int64_t qty = 0;
  int64_t price_cents = 0;
  int64_t available = 0;
  std::string problem;  // "", "sold_out", "unknown_sku", "price_changed"
  int64_t cart_price_cents = 0;  // what the cart holds
};

struct checkout_result {
  code status = code::ok;           // ok: `order` placed, or `changed` / `empty_cart` below
  std::string message;
  bool empty_cart = false;
  std::vector<checkout_line> changed;  // nothing placed: these lines cannot be bought now
  order_record order;
};

namespace codec {
void write(wire::OrderOp::Builder out, const order_op& in);
order_op read(wire::OrderOp::Reader in);
void write(wire::OrderInfo::Builder out, const order_record& in);
order_record read(wire::OrderInfo::Reader in);
void write(wire::OrderResult::Builder out, const order_result& in);
order_result read(wire::OrderResult::Reader in);
void write(wire::CheckoutResult::Builder out, const checkout_result& in);
checkout_result read(wire::CheckoutResult::Reader in);
}  // namespace codec

// The order id of a user's checkout with `key`: the same user and key, the same order.
std::string checkout_order_id(const std::string& user, const std::string& key);

}  // namespace holdfast
