// Wire <-> domain conversion for protocol/inventory.capnp. The only code outside
// generated files that names wire types; round-trip tests in tests/unit/codec_test.cpp
// are the contract.
#pragma once

#include <capnp/message.h>

#include "protocol/domain.hpp"
#include "protocol/inventory.capnp.h"

namespace holdfast::codec {

// How every Holdfast wire reads Cap'n Proto frames (protocol/limits.hpp).
inline capnp::ReaderOptions reader_options() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = wire_words_max;
  o.nestingLimit = 16;
  return o;
}

// A Text field's bytes as they came; validation (UTF-8, limits) is the caller's.
std::string str(capnp::Text::Reader t);

void write(wire::HoldInfo::Builder out, const hold_info& in);
hold_info read(wire::HoldInfo::Reader in);

void write(wire::SkuInfo::Builder out, const sku_info& in);
sku_info read(wire::SkuInfo::Reader in);

void write(wire::HoldResult::Builder out, const hold_result& in);
hold_result read(wire::HoldResult::Reader in);

void write(wire::SkuResult::Builder out, const sku_result& in);
sku_result read(wire::SkuResult::Reader in);

void write(wire::ReserveRequest::Builder out, const hold_op& in);
hold_op read_reserve(wire::ReserveRequest::Reader in);

void write(wire::HoldRef::Builder out, const hold_op& in);
hold_op read_ref(wire::HoldRef::Reader in, hold_op_kind kind);

void write(wire::SkuQuery::Builder out, const sku_list_query& in, bool local_only);
sku_list_query read(wire::SkuQuery::Reader in);
void write(wire::SkuPage::Builder out, const sku_page& in);
sku_page read(wire::SkuPage::Reader in);
void write(wire::CartOp::Builder out, const cart_op& in);
cart_op read(wire::CartOp::Reader in);
void write(wire::CartResult::Builder out, const cart_result& in);
cart_result read(wire::CartResult::Reader in);

}  // namespace holdfast::codec
