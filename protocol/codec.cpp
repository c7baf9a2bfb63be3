#include "protocol/codec.hpp"

namespace holdfast::codec {

std::string str(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

namespace {

wire::HoldState to_wire(hold_state s) { return static_cast<wire::HoldState>(s); }

hold_state from_wire(wire::HoldState s) {
  auto v = static_cast<uint16_t>(s);
  // An unknown enumerant from a newer peer cannot be an active hold we know of.
  return v <= static_cast<uint16_t>(hold_state::returned) ? static_cast<hold_state>(v)
                                                          : hold_state::released;
}

}  // namespace

void write(wire::HoldInfo::Builder out, const hold_info& in) {
  out.setHoldId(in.hold_id);
  out.setSku(in.sku);
  out.setQty(in.qty);
  out.setState(to_wire(in.state));
  out.setDeadlineMs(in.deadline_ms);
}

hold_info read(wire::HoldInfo::Reader in) {
  return {str(in.getHoldId()), str(in.getSku()), in.getQty(), from_wire(in.getState()),
          in.getDeadlineMs()};
}

void write(wire::SkuInfo::Builder out, const sku_info& in) {
  out.setSku(in.sku);
  out.setOnHand(in.on_hand);
  out.setReserved(in.reserved);
  out.setPriceCents(in.price_cents);
  out.setSold(in.sold);
  out.setStocked(in.stocked);
  out.setActiveHolds(in.active_holds);
  out.setWrittenOff(in.written_off);
  out.setTitle(in.title);
  out.setLimitPerUser(in.limit_per_user);
}

sku_info read(wire::SkuInfo::Reader in) {
  sku_info s;
  s.sku = str(in.getSku());
  s.on_hand = in.getOnHand();
  s.reserved = in.getReserved();
  s.price_cents = in.getPriceCents();
  s.sold = in.getSold();
  s.stocked = in.getStocked();
  s.active_holds = in.getActiveHolds();
  s.written_off = in.getWrittenOff();
  s.title = str(in.getTitle());
  s.limit_per_user = in.getLimitPerUser();
  return s;
}

void write(wire::HoldResult::Builder out, const hold_result& in) {
  switch (in.status) {
    case code::ok: write(out.initHold(), in.hold); return;
    case code::out_of_stock: out.setOutOfStock(in.available); return;
    case code::unknown_sku: out.setUnknownSku(); return;
    case code::unknown_hold:
      out.setUnknownHold();
      if (!in.message.empty()) out.setDetail(in.message);
      return;
    case code::hold_expired: write(out.initHoldExpired(), in.hold); return;
    case code::hold_conflict: write(out.initHoldConflict(), in.hold); return;
    case code::wrong_state: write(out.initWrongState(), in.hold); return;
    case code::unavailable: out.setUnavailable(in.message); return;
    case code::storage_full: out.setStorageFull(in.message); return;
    case code::outcome_unknown: out.setOutcomeUnknown(in.message); return;
    case code::limit_reached:
      out.setLimitReached(in.available);
      if (!in.message.empty()) out.setDetail(in.message);
      return;
    case code::forbidden: out.setForbidden(in.message); return;
    case code::unknown_order:
    case code::invalid:
    case code::sku_exists:
    case code::insufficient:
      break;
  }
  out.setInvalid(in.message.empty() ? std::string(to_string(in.status)) : in.message);
}

hold_result read(wire::HoldResult::Reader in) {
  hold_result r;
  switch (in.which()) {
    case wire::HoldResult::HOLD: r.hold = read(in.getHold()); break;
    case wire::HoldResult::OUT_OF_STOCK:
      r.status = code::out_of_stock;
      r.available = in.getOutOfStock();
      break;
    case wire::HoldResult::UNKNOWN_SKU: r.status = code::unknown_sku; break;
    case wire::HoldResult::UNKNOWN_HOLD:
      r.status = code::unknown_hold;
      r.message = str(in.getDetail());
      break;
    case wire::HoldResult::HOLD_EXPIRED:
      r.status = code::hold_expired;
      r.hold = read(in.getHoldExpired());
      break;
    case wire::HoldResult::HOLD_CONFLICT:
      r.status = code::hold_conflict;
      r.hold = read(in.getHoldConflict());
      break;
    case wire::HoldResult::WRONG_STATE:
      r.status = code::wrong_state;
      r.hold = read(in.getWrongState());
      break;
    case wire::HoldResult::INVALID:
      r.status = code::invalid;
      r.message = str(in.getInvalid());
      break;
    case wire::HoldResult::UNAVAILABLE:
      r.status = code::unavailable;
      r.message = str(in.getUnavailable());
      break;
    case wire::HoldResult::STORAGE_FULL:
      r.status = code::storage_full;
      r.message = str(in.getStorageFull());
      break;
    case wire::HoldResult::OUTCOME_UNKNOWN:
      r.status = code::outcome_unknown;
      r.message = str(in.getOutcomeUnknown());
      break;
    case wire::HoldResult::LIMIT_REACHED:
      r.status = code::limit_reached;
      r.available = in.getLimitReached();
      r.message = str(in.getDetail());
      break;
    case wire::HoldResult::FORBIDDEN:
      r.status = code::forbidden;
      r.message = str(in.getForbidden());
      break;
    default:
      r.status = code::invalid;
      r.message = "result kind unknown to this client";
  }
  return r;
}

void write(wire::SkuResult::Builder out, const sku_result& in) {
  switch (in.status) {
    case code::ok: write(out.initSku(), in.sku); return;
    case code::unknown_sku: out.setUnknownSku(); return;
    case code::sku_exists: write(out.initSkuExists(), in.sku); return;
    case code::insufficient: write(out.initInsufficient(), in.sku); return;
    case code::unavailable: out.setUnavailable(in.message); return;
    case code::storage_full: out.setStorageFull(in.message); return;
    case code::outcome_unknown: out.setOutcomeUnknown(in.message); return;
    case code::forbidden: out.setForbidden(in.message); return;
    default: break;
  }
  out.setInvalid(in.message.empty() ? std::string(to_string(in.status)) : in.message);
}

sku_result read(wire::SkuResult::Reader in) {
  sku_result r;
  switch (in.which()) {
    case wire::SkuResult::SKU: r.sku = read(in.getSku()); break;
    case wire::SkuResult::UNKNOWN_SKU: r.status = code::unknown_sku; break;
    case wire::SkuResult::SKU_EXISTS:
      r.status = code::sku_exists;
      r.sku = read(in.getSkuExists());
      break;
    case wire::SkuResult::INSUFFICIENT:
      r.status = code::insufficient;
      r.sku = read(in.getInsufficient());
      break;
    case wire::SkuResult::INVALID:
      r.status = code::invalid;
      r.message = str(in.getInvalid());
      break;
    case wire::SkuResult::FORBIDDEN:
      r.status = code::forbidden;
      r.message = str(in.getForbidden());
      break;
    case wire::SkuResult::UNAVAILABLE:
      r.status = code::unavailable;
      r.message = str(in.getUnavailable());
      break;
    case wire::SkuResult::STORAGE_FULL:
      r.status = code::storage_full;
      r.message = str(in.getStorageFull());
      break;
    case wire::SkuResult::OUTCOME_UNKNOWN:
      r.status = code::outcome_unknown;
      r.message = str(in.getOutcomeUnknown());
      break;
    default:
      r.status = code::invalid;
      r.message = "result kind unknown to this client";
  }
  return r;
}

void write(wire::ReserveRequest::Builder out, const hold_op& in) {
  out.setSku(in.sku);
  out.setQty(in.qty);
  out.setHoldId(in.hold_id);
  out.setTtlMs(in.ttl_ms);
  out.setUser(in.user);
}

hold_op read_reserve(wire::ReserveRequest::Reader in) {
  hold_op op;
  op.kind = hold_op_kind::reserve;
  op.sku = str(in.getSku());
  op.qty = in.getQty();
  op.hold_id = str(in.getHoldId());
  op.ttl_ms = in.getTtlMs();
  op.user = str(in.getUser());
  return op;
}

void write(wire::HoldRef::Builder out, const hold_op& in) {
  out.setHoldId(in.hold_id);
  out.setSku(in.sku);
  if (in.kind == hold_op_kind::extend) out.setTtlMs(in.ttl_ms);
}

hold_op read_ref(wire::HoldRef::Reader in, hold_op_kind kind) {
  hold_op op;
  op.kind = kind;
  op.hold_id = str(in.getHoldId());
  op.sku = str(in.getSku());
  if (kind == hold_op_kind::extend) op.ttl_ms = in.getTtlMs();
  return op;
}

void write(wire::SkuQuery::Builder out, const sku_list_query& in, bool local_only) {
  out.setPrefix(in.prefix);
  out.setAfter(in.after);
  out.setLimit(in.limit);
  out.setLocalOnly(local_only);
}

sku_list_query read(wire::SkuQuery::Reader in) {
  return {str(in.getPrefix()), str(in.getAfter()), in.getLimit()};
}

void write(wire::SkuPage::Builder out, const sku_page& in) {
  auto list = out.initSkus(static_cast<unsigned>(in.skus.size()));
  for (unsigned i = 0; i < in.skus.size(); ++i) write(list[i], in.skus[i]);
  out.setNext(in.next);
  out.setPartial(in.partial);
  out.setInvalid(in.invalid);
}

sku_page read(wire::SkuPage::Reader in) {
  sku_page p;
  for (auto s : in.getSkus()) p.skus.push_back(read(s));
  p.next = str(in.getNext());
  p.partial = str(in.getPartial());
  p.invalid = str(in.getInvalid());
  return p;
}


void write(wire::CartOp::Builder out, const cart_op& in) {
  out.setKind(static_cast<wire::CartOpKind>(in.kind));
  out.setUser(in.user);
  out.setSku(in.sku);
  out.setQty(in.qty);
  out.setPriceCents(in.price_cents);
  out.setVersion(in.version);
  out.setOrderId(in.order_id);
}

cart_op read(wire::CartOp::Reader in) {
  cart_op op;
  auto kind = static_cast<uint16_t>(in.getKind());
  // A kind this node does not know is refused by validate(), not taken for a view.
  op.kind = kind <= static_cast<uint16_t>(cart_op_kind::take) ? static_cast<cart_op_kind>(kind)
                                                                : static_cast<cart_op_kind>(0xff);
  op.user = str(in.getUser());
  op.sku = str(in.getSku());
  op.qty = in.getQty();
  op.price_cents = in.getPriceCents();
  op.version = in.getVersion();
  op.order_id = str(in.getOrderId());
  return op;
}

void write(wire::CartResult::Builder out, const cart_result& in) {
  switch (in.status) {
    case code::ok: {
      auto c = out.initCart();
      c.setUser(in.cart.user);
      c.setVersion(in.cart.version);
      c.setUpdatedMs(in.cart.updated_ms);
      auto put = [](auto list, const std::vector<cart_line>& from) {
        for (unsigned i = 0; i < list.size(); ++i) {
          list[i].setSku(from[i].sku);
          list[i].setQty(from[i].qty);
          list[i].setPriceCents(from[i].price_cents);
        }
      };
      put(c.initLines(static_cast<unsigned>(in.cart.lines.size())), in.cart.lines);
      c.setTakenBy(in.cart.taken_by);
      put(c.initTaken(static_cast<unsigned>(in.cart.taken.size())), in.cart.taken);
      return;
    }
    case code::unavailable: out.setUnavailable(in.message); return;
    case code::storage_full: out.setStorageFull(in.message); return;
    case code::outcome_unknown: out.setOutcomeUnknown(in.message); return;
    case code::unknown_sku: out.setUnknownSku(in.message); return;
    case code::forbidden: out.setForbidden(in.message); return;
    default: break;
  }
  out.setInvalid(in.message.empty() ? std::string(to_string(in.status)) : in.message);
}

cart_result read(wire::CartResult::Reader in) {
  cart_result r;
  switch (in.which()) {
    case wire::CartResult::CART: {
      auto c = in.getCart();
      r.cart.user = str(c.getUser());
      r.cart.version = c.getVersion();
      r.cart.updated_ms = c.getUpdatedMs();
      for (auto l : c.getLines()) r.cart.lines.push_back({str(l.getSku()), l.getQty(), l.getPriceCents()});
      r.cart.taken_by = str(c.getTakenBy());
      for (auto l : c.getTaken()) r.cart.taken.push_back({str(l.getSku()), l.getQty(), l.getPriceCents()});
      break;
    }
    case wire::CartResult::INVALID: r.status = code::invalid; r.message = str(in.getInvalid()); break;
    case wire::CartResult::UNAVAILABLE: r.status = code::unavailable; r.message = str(in.getUnavailable()); break;
    case wire::CartResult::STORAGE_FULL: r.status = code::storage_full; r.message = str(in.getStorageFull()); break;
    case wire::CartResult::OUTCOME_UNKNOWN:
      r.status = code::outcome_unknown;
      r.message = str(in.getOutcomeUnknown());
      break;
    case wire::CartResult::UNKNOWN_SKU: r.status = code::unknown_sku; r.message = str(in.getUnknownSku()); break;
    case wire::CartResult::FORBIDDEN: r.status = code::forbidden; r.message = str(in.getForbidden()); break;
    default:
      r.status = code::invalid;
      r.message = "result kind unknown to this client";
  }
  return r;
}

}  // namespace holdfast::codec
