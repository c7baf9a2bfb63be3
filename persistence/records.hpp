// What the store persists. Plain structs; persistence/records.cpp encodes them as
// protocol/storage.capnp records.
#pragma once

#include <string>
#include <vector>

#include "protocol/domain.hpp"

namespace holdfast {

// An SKU's latest snapshot.
struct sku_record {
  sku_info sku;
  int64_t earliest_deadline_ms = 0;  // 0: no active hold
};

struct hold_record {
  hold_info hold;
  int64_t ttl_ms = 0;
};

// One change in a write batch. A hold record's state decides where it lives: active
// holds in `active_holds`, finished ones in `finished_holds`.
struct mutation {
  enum kind_t : uint8_t { put_sku = 0, put_hold } kind = put_sku;
  sku_record sku;
  hold_record hold;
};

std::string encode(const sku_record& r);
bool decode(const void* data, size_t size, sku_record& out);
std::string encode(const hold_record& r);
bool decode(const void* data, size_t size, hold_record& out);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sku_record& x) {
  return f(x.sku, x.earliest_deadline_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hold_record& x) {
  return f(x.hold, x.ttl_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mutation& x) {
  return f(x.kind, x.sku, x.hold);
}

}  // namespace holdfast
