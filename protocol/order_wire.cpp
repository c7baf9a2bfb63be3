#include "protocol/order_wire.hpp"

#include <openssl/sha.h>

#include "protocol/codec.hpp"

namespace holdfast {
namespace codec {

namespace {
void write_lines(capnp::List<wire::OrderLine>::Builder out, const std::vector<order_line>& in) {
  for (unsigned i = 0; i < out.size(); ++i) {
    out[i].setSku(in[i].sku);
    out[i].setQty(in[i].qty);
    out[i].setPriceCents(in[i].price_cents);
  }
}
std::vector<order_line> read_lines(capnp::List<wire::OrderLine>::Reader in) {
  std::vector<order_line> out;
  for (auto l : in) out.push_back({str(l.getSku()), l.getQty(), l.getPriceCents()});
  return out;
}
}  // namespace

void write(wire::OrderOp::Builder out, const order_op& in) {
  out.setKind(static_cast<wire::OrderOpKind>(in.kind));
  out.setOrderId(in.order_id);
  out.setDetail(in.detail);
  out.setUser(in.user);
  out.setCard(in.card);
  write_lines(out.initLines(static_cast<unsigned>(in.lines.size())), in.lines);
  out.setWebhookBody(in.webhook_body);
  out.setWebhookSignature(in.webhook_signature);
}

order_op read(wire::OrderOp::Reader in) {
  order_op op;
  auto kind = static_cast<uint16_t>(in.getKind());
  op.kind = kind <= static_cast<uint16_t>(order_op_kind::payment_event) ? static_cast<order_op_kind>(kind)
                                                                : static_cast<order_op_kind>(0xff);
  op.order_id = str(in.getOrderId());
  op.detail = str(in.getDetail());
  op.user = str(in.getUser());
  op.card = str(in.getCard());
  op.lines = read_lines(in.getLines());
  op.webhook_body = str(in.getWebhookBody());
  op.webhook_signature = str(in.getWebhookSignature());
  return op;
}

void write(wire::OrderInfo::Builder out, const order_record& in) {
  out.setOrderId(in.order_id);
  out.setUser(in.user);
  out.setState(to_string(in.state));
  out.setStep(to_string(in.phase));
  write_lines(out.initLines(static_cast<unsigned>(in.lines.size())), in.lines);
  out.setTotalCents(in.total_cents);
  out.setIntentId(in.intent_id);
  out.setReason(in.reason);
  out.setLastError(in.last_error);
  out.setCreatedMs(in.created_ms);
  out.setUpdatedMs(in.updated_ms);
  out.setVersion(in.version);
}

order_record read(wire::OrderInfo::Reader in) {
  order_record r;
  r.order_id = str(in.getOrderId());
  r.user = str(in.getUser());
  auto state = str(in.getState());
  for (int s = 0; s <= static_cast<int>(order_state::refunded); ++s)
    if (state == to_string(static_cast<order_state>(s))) r.state = static_cast<order_state>(s);
  auto step = str(in.getStep());
  for (int p = 0; p <= static_cast<int>(saga_phase::refund); ++p)
    if (step == to_string(static_cast<saga_phase>(p))) r.phase = static_cast<saga_phase>(p);
  r.lines = read_lines(in.getLines());
  r.total_cents = in.getTotalCents();
  r.intent_id = str(in.getIntentId());
  r.reason = str(in.getReason());
  r.last_error = str(in.getLastError());
  r.created_ms = in.getCreatedMs();
  r.updated_ms = in.getUpdatedMs();
  r.version = in.getVersion();
  return r;
}

void write(wire::OrderResult::Builder out, const order_result& in) {
  switch (in.status) {
    case code::ok: write(out.initOrder(), in.order); return;
    case code::wrong_state:
      write(out.initWrongState(), in.order);
      out.setDetail(in.message);
      return;
    case code::unavailable: out.setUnavailable(in.message); return;
    case code::storage_full: out.setStorageFull(in.message); return;
    case code::outcome_unknown: out.setOutcomeUnknown(in.message); return;
    case code::unknown_order: out.setUnknownOrder(in.message); return;
    case code::forbidden: out.setForbidden(in.message); return;
    default: break;
  }
  out.setInvalid(in.message.empty() ? std::string(to_string(in.status)) : in.message);
}

order_result read(wire::OrderResult::Reader in) {
  order_result r;
  switch (in.which()) {
    case wire::OrderResult::ORDER: r.order = read(in.getOrder()); break;
    case wire::OrderResult::WRONG_STATE:
      r.status = code::wrong_state;
      r.order = read(in.getWrongState());
      r.message = str(in.getDetail());
      break;
    case wire::OrderResult::INVALID: r.status = code::invalid; r.message = str(in.getInvalid()); break;
    case wire::OrderResult::UNAVAILABLE: r.status = code::unavailable; r.message = str(in.getUnavailable()); break;
    case wire::OrderResult::STORAGE_FULL: r.status = code::storage_full; r.message = str(in.getStorageFull()); break;
    case wire::OrderResult::OUTCOME_UNKNOWN: r.status = code::outcome_unknown; r.message = str(in.getOutcomeUnknown()); break;
    case wire::OrderResult::UNKNOWN_ORDER: r.status = code::unknown_order; r.message = str(in.getUnknownOrder()); break;
    case wire::OrderResult::FORBIDDEN: r.status = code::forbidden; r.message = str(in.getForbidden()); break;
    default:
      r.status = code::invalid;
      r.message = "result kind unknown to this client";
  }
  return r;
}

void write(wire::CheckoutResult::Builder out, const checkout_result& in) {
  if (in.status != code::ok) {
    if (in.status == code::unavailable) out.setUnavailable(in.message);
    else if (in.status == code::outcome_unknown) out.setOutcomeUnknown(in.message);
    else if (in.status == code::forbidden) out.setForbidden(in.message);
    else out.setInvalid(in.message.empty() ? std::string(to_string(in.status)) : in.message);
    return;
  }
  if (in.empty_cart) {
    out.setEmptyCart();
    return;
  }
  if (!in.changed.empty()) {
    auto list = out.initChanged(static_cast<unsigned>(in.changed.size()));
    for (unsigned i = 0; i < list.size(); ++i) {
      auto& l = in.changed[i];
      list[i].setSku(l.sku);
      list[i].setQty(l.qty);
      list[i].setPriceCents(l.price_cents);
      list[i].setAvailable(l.available);
      list[i].setProblem(l.problem);
      list[i].setCartPriceCents(l.cart_price_cents);
    }
    return;
  }
  write(out.initOrder(), in.order);
}

checkout_result read(wire::CheckoutResult::Reader in) {
  checkout_result r;
  switch (in.which()) {
    case wire::CheckoutResult::ORDER: r.order = read(in.getOrder()); break;
    case wire::CheckoutResult::CHANGED:
      for (auto l : in.getChanged())
        r.changed.push_back({str(l.getSku()), l.getQty(), l.getPriceCents(), l.getAvailable(),
                             str(l.getProblem()), l.getCartPriceCents()});
      break;
    case wire::CheckoutResult::EMPTY_CART: r.empty_cart = true; break;
    case wire::CheckoutResult::INVALID: r.status = code::invalid; r.message = str(in.getInvalid()); break;
    case wire::CheckoutResult::FORBIDDEN: r.status = code::forbidden; r.message = str(in.getForbidden()); break;
    case wire::CheckoutResult::UNAVAILABLE: r.status = code::unavailable; r.message = str(in.getUnavailable()); break;
    case wire::CheckoutResult::OUTCOME_UNKNOWN:
      r.status = code::outcome_unknown;
      r.message = str(in.getOutcomeUnknown());
      break;
    default:
      r.status = code::invalid;
      r.message = "result kind unknown to this client";
  }
  return r;
}

}  // namespace codec

std::string checkout_order_id(const std::string& user, const std::string& key) {
  std::string input = user + '\0' + key;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  static const char hex[] = "0123456789abcdef";
  std::string id = "o-";
  for (int i = 0; i < 12; ++i) {
    id += hex[digest[i] >> 4];
    id += hex[digest[i] & 15];
  }
  return id;
}

}  // namespace holdfast
