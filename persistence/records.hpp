// What the store persists. Plain structs; persistence/records.cpp encodes them as
// protocol/storage.capnp records, each followed by its CRC32C.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/domain.hpp"

namespace holdfast {

// An SKU's latest state. The snapshot writer keeps the hold-log fields (the SKU's
// active holds are hold-log blocks in the snapshot, persistence/lmdb_env.hpp).
struct sku_record {
  sku_info sku;
  int64_t earliest_deadline_ms = 0;  // 0: no active hold
  uint64_t log_block = 0;            // last hold-log block written for this SKU
  uint64_t checkpoint_block = 0;     // that block restates every active hold
  uint64_t log_entries = 0;          // entries in the blocks since the checkpoint
};

struct hold_record {
  hold_info hold;
  int64_t ttl_ms = 0;
  int64_t finished_ms = 0;  // when it ended; 0 while active
  int64_t lease_ms = 0;     // the longest ttl an extend gave it; 0: none beyond ttl_ms
  std::string user;         // who reserved it; empty: nobody named
  int64_t lease() const { return lease_ms > ttl_ms ? lease_ms : ttl_ms; }
};

// A keyed value of an entity other than an SKU, written in the same log records as SKU
// changes and snapshotted to the `records` database. `space` names the kind of entity.
// buyer: key sku '\0' user, value the units the user bought (decimal), for a per-user limit.
// cart: key the user id, value a StoredCart (encode_cart).
// order: key the order id, value a StoredOrder (encode_order).
// order_event: key order_event_key(seq), value a StoredOrder (the order events' outbox).
// user_order: key user_order_key(user, order id), value empty: a user's orders, written
// with the order's first record.
enum class record_space : uint8_t { buyer = 1, cart = 2, order = 3, order_event = 4, user_order = 5 };
constexpr record_space record_space_last = record_space::user_order;
constexpr size_t record_key_bytes_max = 1024;
constexpr size_t record_value_bytes_max = size_t{1} << 20;
struct entity_record {
  record_space space = record_space::buyer;
  std::string key;
  std::string value;
  bool deleted = false;
};
// The LMDB key: the space's byte, then the key.
std::string record_key(record_space space, const std::string& key);

// Which directory the data belongs to; kept in the `meta` database and, as a copy, in
// the directory's holdfast.format file, so lost or swapped data is noticed at start.
struct directory_meta {
  uint32_t format = 0;
  std::string directory_id;
  int64_t created_ms = 0;
  int64_t clock_high_water_ms = 0;
  uint64_t snapshot_position = 0;  // the last log record the LMDB snapshot contains
};

// One change in a write batch: an SKU's new record, a hold's new state, or an entity
// record. A batch is one writer's changes from one handled message: an SKU's end with
// its put_sku; a batch without one holds entity records only.
struct mutation {
  enum kind_t : uint8_t { put_sku = 0, put_hold, put_record } kind = put_sku;
  sku_record sku;
  hold_record hold;
  entity_record record;
};

std::string encode(const sku_record& r);
bool decode(const void* data, size_t size, sku_record& out);
std::string encode(const hold_record& r);
bool decode(const void* data, size_t size, hold_record& out);
std::string encode_cart(const cart_info& c);  // the user is the record's key
bool decode_cart(const std::string& value, cart_info& out);
std::string encode(const entity_record& r);
bool decode(const void* data, size_t size, entity_record& out);
std::string encode(const directory_meta& m);
bool decode(const void* data, size_t size, directory_meta& out);
// A group commit's batches as one log record's payload, and back. The payload is in a
// buffer of the calling thread, valid until its next encode_commit.
std::string_view encode_commit(const std::vector<std::vector<mutation>*>& batches);
bool decode_commit(std::string_view payload, std::vector<std::vector<mutation>>& out);
// One snapshot's changes to an SKU's holds (or a checkpoint of its active holds).
std::string encode_block(const std::vector<const hold_record*>& holds);
// The most holds a snapshot puts in one block: a hot SKU's changes become several
// blocks, each built in a buffer its thread reuses and written straight into the memory
// LMDB reserves for it (a single block of a hot SKU was tens of megabytes, allocated,
// zeroed and copied twice per snapshot, a fifth of the snapshot thread's time). Blocks
// are replayed in order and a snapshot names each hold once, so splitting one changes
// nothing a reader sees.
constexpr size_t hold_block_max = 2048;
// The `n` holds at `holds` as one block, written into the memory `place(size)` returns
// for exactly `size` bytes. False (nothing written) when `place` returns null.
bool encode_block_into(const hold_record* const* holds, size_t n,
                       const std::function<void*(size_t size)>& place);
// A block's hold ids and states only (what indexing the active ids at open needs): each
// id's bytes appended to `arena`, its place there and its state to `out`.
struct block_id {
  size_t offset;
  size_t size;
  hold_state state;
};
bool decode_block_ids(const void* data, size_t size, std::string& arena, std::vector<block_id>& out);
// Appends the block's holds (their sku set to `sku`) to `out`.
bool decode_block(const void* data, size_t size, const std::string& sku,
                  std::vector<hold_record>& out);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sku_record& x) {
  return f(x.sku, x.earliest_deadline_ms, x.log_block, x.checkpoint_block, x.log_entries);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hold_record& x) {
  return f(x.hold, x.ttl_ms, x.finished_ms, x.lease_ms, x.user);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, entity_record& x) {
  return f(x.space, x.key, x.value, x.deleted);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mutation& x) {
  return f(x.kind, x.sku, x.hold, x.record);
}

}  // namespace holdfast
