#include "protocol/orders.hpp"

#include <algorithm>
#include <optional>

#include "protocol/limits.hpp"

namespace holdfast {

const char* to_string(order_state s) {
  switch (s) {
    case order_state::placed: return "placed";
    case order_state::reserved: return "reserved";
    case order_state::authorized: return "authorized";
    case order_state::confirmed: return "confirmed";
    case order_state::captured: return "captured";
    case order_state::shipped: return "shipped";
    case order_state::delivered: return "delivered";
    case order_state::cancelled: return "cancelled";
    case order_state::refunded: return "refunded";
  }
  return "?";
}

const char* to_string(saga_phase p) {
  switch (p) {
    case saga_phase::reserve: return "reserve";
    case saga_phase::authorize: return "authorize";
    case saga_phase::confirm: return "confirm";
    case saga_phase::capture: return "capture";
    case saga_phase::done: return "done";
    case saga_phase::release: return "release";
    case saga_phase::restock: return "restock";
    case saga_phase::void_auth: return "void";
    case saga_phase::refund: return "refund";
  }
  return "?";
}

order_page merge_order_pages(std::vector<order_page> pages, uint32_t limit) {
  if (limit == 0) limit = order_list_limit_default;
  order_page out;
  // Where the first member to stop stopped: past it, some member's orders are not here.
  std::optional<std::string> cut;
  for (auto& p : pages) {
    if (!p.error.empty()) out.error += (out.error.empty() ? "" : "; ") + p.error;
    if (!p.next.empty() && (!cut || p.next < *cut)) cut = p.next;
    for (auto& o : p.orders) out.orders.push_back(std::move(o));
  }
  std::sort(out.orders.begin(), out.orders.end(),
            [](const order_record& a, const order_record& b) { return a.order_id < b.order_id; });
  if (cut)
    out.orders.erase(std::upper_bound(out.orders.begin(), out.orders.end(), *cut,
                                      [](const std::string& id, const order_record& o) { return id < o.order_id; }),
                     out.orders.end());
  if (out.orders.size() > limit) {
    out.orders.resize(limit);
    out.next = out.orders.back().order_id;
  } else if (cut) {
    out.next = *cut;
  }
  return out;
}


std::string validate(const order_op& op, const request_limits& limits) {
  if (op.order_id.empty() || op.order_id.size() > order_id_bytes_max || !valid_utf8(op.order_id))
    return "an order id of 1.." + std::to_string(order_id_bytes_max) + " bytes of UTF-8 is required";
  if (op.kind > order_op_kind::payment_event) return "unknown order operation";
  if (op.detail.size() > order_detail_bytes_max || !valid_utf8(op.detail)) return "detail: at most " + std::to_string(order_detail_bytes_max) + " bytes of UTF-8";
  if (op.webhook_body.size() > webhook_body_bytes_max || op.webhook_signature.size() > webhook_signature_bytes_max)
    return "a payment event of at most " + std::to_string(webhook_body_bytes_max) + " bytes is required";
  if (op.kind == order_op_kind::payment_event && (op.webhook_body.empty() || op.webhook_signature.empty()))
    return "a payment event needs its body and its signature";
  if (op.kind != order_op_kind::place) return {};
  if (op.user.empty() || op.user.size() > user_bytes_max || !valid_utf8(op.user)) return "a user is required";
  if (op.card.empty() || op.card.size() > card_bytes_max || !valid_utf8(op.card))
    return "a card of 1.." + std::to_string(card_bytes_max) + " bytes is required";
  if (op.lines.empty() || op.lines.size() > cart_lines_max)
    return "an order has 1.." + std::to_string(cart_lines_max) + " lines";
  for (auto& l : op.lines)
    if (l.sku.empty() || l.sku.size() > sku_bytes_max || l.qty <= 0 || l.qty > limits.qty_max ||
        l.price_cents < 0 || l.price_cents > limits.price_cents_max)
      return "line of sku '" + l.sku + "': a name, a qty of 1.." + std::to_string(limits.qty_max) +
             " and a price of 0.." + std::to_string(limits.price_cents_max) + " are required";
  return {};
}

std::string validate(const order_list_query& q) {
  if (q.user.size() > user_bytes_max || !valid_utf8(q.user)) return "user: at most 256 bytes of UTF-8";
  if (q.after.size() > order_id_bytes_max || !valid_utf8(q.after)) return "after: an order id of at most 128 bytes";
  if (q.limit > order_list_limit_max) return "limit: 1.." + std::to_string(order_list_limit_max);
  if (q.state.empty() || q.state == "active") return {};
  for (auto s = order_state::placed; s <= order_state::refunded; s = static_cast<order_state>(static_cast<int>(s) + 1))
    if (q.state == to_string(s)) return {};
  return "state: active, or one of placed, reserved, authorized, confirmed, captured, shipped, delivered, "
         "cancelled, refunded";
}

}  // namespace holdfast
