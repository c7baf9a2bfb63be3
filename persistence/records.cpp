#include "persistence/records.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/io.h>

#include <algorithm>

#include <cstring>

#include "persistence/crc32c.hpp"
#include "protocol/codec.hpp"
#include "protocol/storage.capnp.h"

namespace holdfast {
namespace {

using codec::str;

// Every value ends in 8 bytes: its CRC32C (little-endian) and a tag, so a flipped bit
// anywhere in a record is caught when it is read, not served.
constexpr size_t trailer_bytes = 8;
constexpr uint32_t trailer_tag = 0x31434648;  // "HFC1"

// The message's bytes and their trailer, written into `place(size)`'s memory.
bool write_bytes(capnp::MessageBuilder& message, const std::function<void*(size_t)>& place) {
  auto segments = message.getSegmentsForOutput();
  size_t size = capnp::computeSerializedSizeInWords(segments) * sizeof(capnp::word);
  auto* bytes = static_cast<kj::byte*>(place(size + trailer_bytes));
  if (!bytes) return false;
  kj::ArrayOutputStream stream(kj::arrayPtr(bytes, size));
  capnp::writeMessage(stream, segments);
  uint32_t trailer[2] = {crc32c(bytes, size), trailer_tag};
  std::memcpy(bytes + size, trailer, trailer_bytes);
  return true;
}

std::string to_bytes(capnp::MessageBuilder& message) {
  // Serialized straight into the string (a flat array first, then a copy of it, cost a
  // snapshot of a hot SKU's block two copies of every byte).
  std::string out;
  write_bytes(message, [&](size_t size) {
    out.resize(size);
    return out.data();
  });
  return out;
}

// LMDB values are 8-byte aligned only by luck; copy when they are not.
template <class F>
bool with_reader(const void* data, size_t stored_size, F&& f) {
  if (stored_size % sizeof(capnp::word) != 0 || stored_size < trailer_bytes + sizeof(capnp::word))
    return false;
  auto size = stored_size - trailer_bytes;
  uint32_t trailer[2];
  memcpy(trailer, static_cast<const char*>(data) + size, trailer_bytes);
  if (trailer[1] != trailer_tag || trailer[0] != crc32c(data, size)) return false;
  kj::Array<capnp::word> copy;
  kj::ArrayPtr<const capnp::word> words(static_cast<const capnp::word*>(data),
                                        size / sizeof(capnp::word));
  if (reinterpret_cast<uintptr_t>(data) % alignof(capnp::word) != 0) {
    copy = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
    memcpy(copy.begin(), data, size);
    words = copy;
  }
  try {
    // Our own records; a checkpoint block of a hot SKU may exceed capnp's default limit.
    capnp::ReaderOptions options;
    options.traversalLimitInWords = std::max<uint64_t>(options.traversalLimitInWords, words.size() * 2);
    capnp::FlatArrayMessageReader reader(words, options);
    f(reader);
    return true;
  } catch (const kj::Exception&) {
    return false;
  }
}

void write_sku(stored::SkuRecord::Builder b, const sku_record& r) {
  b.setSku(r.sku.sku);
  b.setOnHand(r.sku.on_hand);
  b.setReserved(r.sku.reserved);
  b.setPriceCents(r.sku.price_cents);
  b.setSold(r.sku.sold);
  b.setStocked(r.sku.stocked);
  b.setActiveHolds(r.sku.active_holds);
  b.setEarliestDeadlineMs(r.earliest_deadline_ms);
  b.setLogBlock(r.log_block);
  b.setCheckpointBlock(r.checkpoint_block);
  b.setWrittenOff(r.sku.written_off);
  b.setLogEntries(r.log_entries);
  b.setTitle(r.sku.title);
  b.setLimitPerUser(r.sku.limit_per_user);
}

void read_sku(stored::SkuRecord::Reader s, sku_record& out) {
  out.sku.sku = str(s.getSku());
    out.sku.on_hand = s.getOnHand();
    out.sku.reserved = s.getReserved();
    out.sku.price_cents = s.getPriceCents();
    out.sku.sold = s.getSold();
    out.sku.stocked = s.getStocked();
    out.sku.active_holds = s.getActiveHolds();
    out.earliest_deadline_ms = s.getEarliestDeadlineMs();
    out.log_block = s.getLogBlock();
    out.checkpoint_block = s.getCheckpointBlock();
  out.sku.written_off = s.getWrittenOff();
  out.log_entries = s.getLogEntries();
  out.sku.title = str(s.getTitle());
  out.sku.limit_per_user = s.getLimitPerUser();
}


void write_hold(stored::HoldRecord::Builder b, const hold_record& r, bool with_sku) {
  b.setHoldId(r.hold.hold_id);
  if (with_sku) b.setSku(r.hold.sku);
  b.setQty(r.hold.qty);
  b.setTtlMs(r.ttl_ms);
  b.setDeadlineMs(r.hold.deadline_ms);
  b.setState(static_cast<stored::HoldState>(r.hold.state));
  b.setFinishedMs(r.finished_ms);
  b.setLeaseMs(r.lease_ms);
  if (!r.user.empty()) b.setUser(r.user);
}

bool read_hold(stored::HoldRecord::Reader h, hold_record& out) {
  out.hold.hold_id = str(h.getHoldId());
  out.hold.qty = h.getQty();
  out.ttl_ms = h.getTtlMs();
  out.hold.deadline_ms = h.getDeadlineMs();
  auto state = static_cast<uint16_t>(h.getState());
  out.hold.state = static_cast<hold_state>(state);
  out.finished_ms = h.getFinishedMs();
  out.lease_ms = h.getLeaseMs();
  out.user = str(h.getUser());
  return state <= static_cast<uint16_t>(hold_state::returned);
}

}  // namespace

std::string encode(const sku_record& r) {
  capnp::MallocMessageBuilder message(16);
  write_sku(message.initRoot<stored::SkuRecord>(), r);
  return to_bytes(message);
}

bool decode(const void* data, size_t size, sku_record& out) {
  return with_reader(data, size, [&](capnp::MessageReader& reader) {
    read_sku(reader.getRoot<stored::SkuRecord>(), out);
  });
}


std::string encode(const hold_record& r) {
  capnp::MallocMessageBuilder message(16);
  write_hold(message.initRoot<stored::HoldRecord>(), r, true);
  return to_bytes(message);
}

bool decode(const void* data, size_t size, hold_record& out) {
  bool state_ok = true;
  bool ok = with_reader(data, size, [&](capnp::MessageReader& reader) {
    auto h = reader.getRoot<stored::HoldRecord>();
    state_ok = read_hold(h, out);
    out.hold.sku = str(h.getSku());
  });
  return ok && state_ok;
}

// Words a Text of `len` bytes takes in a message (its NUL included): for sizing segments.
static size_t text_words(size_t len) { return len == 0 ? 0 : (len + 1 + 7) / 8; }

bool encode_block_into(const hold_record* const* holds, size_t n,
                       const std::function<void*(size_t)>& place) {
  // One segment sized for the whole block: a hold's struct (~9 words) and its texts (a
  // UUID id is 5 words more): a segment too small grew by allocating and copying. The
  // segment is this thread's, reused (capnp zeroes what a message used when it is done
  // with it): a fresh one per block was zeroed and faulted in every time.
  size_t words = 16;
  for (size_t i = 0; i < n; ++i)
    words += 10 + text_words(holds[i]->hold.hold_id.size()) + text_words(holds[i]->user.size());
  words = std::min<size_t>(words, 1u << 28);
  thread_local std::vector<capnp::word> scratch;
  if (scratch.size() < words) scratch.assign(words, capnp::word{});
  capnp::MallocMessageBuilder message(kj::arrayPtr(scratch.data(), scratch.size()));
  auto list = message.initRoot<stored::HoldLogBlock>().initHolds(static_cast<unsigned>(n));
  for (size_t i = 0; i < n; ++i) write_hold(list[static_cast<unsigned>(i)], *holds[i], false);
  return write_bytes(message, place);
}

std::string encode_block(const std::vector<const hold_record*>& holds) {
  std::string out;
  encode_block_into(holds.data(), holds.size(), [&](size_t size) {
    out.resize(size);
    return out.data();
  });
  return out;
}

bool decode_block(const void* data, size_t size, const std::string& sku,
                  std::vector<hold_record>& out) {
  bool states_ok = true;
  bool ok = with_reader(data, size, [&](capnp::MessageReader& reader) {
    for (auto h : reader.getRoot<stored::HoldLogBlock>().getHolds()) {
      hold_record r;
      states_ok = read_hold(h, r) && states_ok;
      r.hold.sku = sku;
      out.push_back(std::move(r));
    }
  });
  return ok && states_ok;
}

bool decode_block_ids(const void* data, size_t size, std::string& arena, std::vector<block_id>& out) {
  bool states_ok = true;
  bool ok = with_reader(data, size, [&](capnp::MessageReader& reader) {
    for (auto h : reader.getRoot<stored::HoldLogBlock>().getHolds()) {
      auto id = h.getHoldId();
      // The other texts are not needed, but read (bounds-checked) all the same: the open
      // still refuses a block that a full decode would refuse.
      (void)h.getSku();
      (void)h.getUser();
      auto state = static_cast<uint16_t>(h.getState());
      states_ok = states_ok && state <= static_cast<uint16_t>(hold_state::returned);
      out.push_back({arena.size(), id.size(), static_cast<hold_state>(state)});
      arena.append(id.begin(), id.size());
    }
  });
  return ok && states_ok;
}

namespace {
void write_record(stored::EntityRecord::Builder b, const entity_record& r) {
  b.setSpace(static_cast<uint8_t>(r.space));
  b.setKey(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(r.key.data()), r.key.size()));
  b.setValue(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(r.value.data()), r.value.size()));
  b.setDeleted(r.deleted);
}
void read_record(stored::EntityRecord::Reader b, entity_record& out) {
  out.space = static_cast<record_space>(b.getSpace());
  auto k = b.getKey();
  out.key.assign(reinterpret_cast<const char*>(k.begin()), k.size());
  auto v = b.getValue();
  out.value.assign(reinterpret_cast<const char*>(v.begin()), v.size());
  out.deleted = b.getDeleted();
}
}  // namespace

std::string encode_cart(const cart_info& c) {
  capnp::MallocMessageBuilder message(static_cast<unsigned>(8 + c.lines.size() * 6));
  auto b = message.initRoot<stored::StoredCart>();
  b.setVersion(c.version);
  b.setUpdatedMs(c.updated_ms);
  auto put = [](auto list, const std::vector<cart_line>& from) {
    for (unsigned i = 0; i < list.size(); ++i) {
      list[i].setSku(from[i].sku);
      list[i].setQty(from[i].qty);
      list[i].setPriceCents(from[i].price_cents);
    }
  };
  put(b.initLines(static_cast<unsigned>(c.lines.size())), c.lines);
  b.setTakenBy(c.taken_by);
  put(b.initTaken(static_cast<unsigned>(c.taken.size())), c.taken);
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

bool decode_cart(const std::string& value, cart_info& out) {
  if (value.empty() || value.size() % sizeof(capnp::word) != 0) return false;
  auto copy = kj::heapArray<capnp::word>(value.size() / sizeof(capnp::word));
  memcpy(copy.begin(), value.data(), value.size());
  try {
    capnp::FlatArrayMessageReader reader(copy);
    auto c = reader.getRoot<stored::StoredCart>();
    out.version = c.getVersion();
    out.updated_ms = c.getUpdatedMs();
    out.lines.clear();
    for (auto l : c.getLines()) out.lines.push_back({str(l.getSku()), l.getQty(), l.getPriceCents()});
    out.taken_by = str(c.getTakenBy());
    out.taken.clear();
    for (auto l : c.getTaken()) out.taken.push_back({str(l.getSku()), l.getQty(), l.getPriceCents()});
    return true;
  } catch (const kj::Exception&) {
    return false;
  }
}

std::string record_key(record_space space, const std::string& key) {
  std::string out(1, static_cast<char>(space));
  out += key;
  return out;
}

std::string encode(const entity_record& r) {
  capnp::MallocMessageBuilder message(static_cast<unsigned>(8 + (r.key.size() + r.value.size()) / 8));
  write_record(message.initRoot<stored::EntityRecord>(), r);
  return to_bytes(message);
}

bool decode(const void* data, size_t size, entity_record& out) {
  return with_reader(data, size, [&](capnp::MessageReader& reader) {
    read_record(reader.getRoot<stored::EntityRecord>(), out);
  });
}

std::string_view encode_commit(const std::vector<std::vector<mutation>*>& batches) {
  // The builder's one segment and the payload are this thread's, reused: a commit's
  // message was allocated fresh, flattened into a second array and copied into a string,
  // and every new page of the three was zeroed and faulted in (a batch create's commits
  // spent a fifth of the store thread there). Buffers that a rare large commit grew are
  // let go at the next commit rather than kept.
  constexpr size_t keep_words = size_t{1} << 20;  // 8 MiB
  size_t words = 16;
  for (auto* b : batches) {
    words += 8;
    for (const auto& m : *b) {
      if (m.kind == mutation::put_sku)
        words += 16 + text_words(m.sku.sku.sku.size()) + text_words(m.sku.sku.title.size());
      else if (m.kind == mutation::put_hold)
        words += 10 + text_words(m.hold.hold.hold_id.size()) + text_words(m.hold.user.size());
      else
        words += 8 + text_words(m.record.key.size()) + text_words(m.record.value.size());
    }
  }
  thread_local std::vector<capnp::word> scratch;
  thread_local std::string payload;
  if (scratch.size() > keep_words && words <= keep_words) std::vector<capnp::word>().swap(scratch);
  if (payload.capacity() > keep_words * sizeof(capnp::word)) std::string().swap(payload);
  words = std::min<size_t>(words, 1u << 28);
  if (scratch.size() < words) scratch.assign(words, capnp::word{});
  capnp::MallocMessageBuilder message(kj::arrayPtr(scratch.data(), scratch.size()));
  auto list = message.initRoot<stored::LogCommit>().initBatches(static_cast<unsigned>(batches.size()));
  for (size_t i = 0; i < batches.size(); ++i) {
    auto b = list[static_cast<unsigned>(i)];
    const auto& batch = *batches[i];
    unsigned n = 0, records = 0;
    for (const auto& m : batch) {
      if (m.kind == mutation::put_sku) write_sku(b.initSku(), m.sku);
      else if (m.kind == mutation::put_hold) ++n;
      else ++records;
    }
    auto hl = b.initHolds(n);
    n = 0;
    for (const auto& m : batch)
      if (m.kind == mutation::put_hold) write_hold(hl[n++], m.hold, false);
    if (records > 0) {
      auto rl = b.initRecords(records);
      records = 0;
      for (const auto& m : batch)
        if (m.kind == mutation::put_record) write_record(rl[records++], m.record);
    }
  }
  auto segments = message.getSegmentsForOutput();
  size_t size = capnp::computeSerializedSizeInWords(segments) * sizeof(capnp::word);
  payload.resize(size);
  kj::ArrayOutputStream stream(kj::arrayPtr(reinterpret_cast<kj::byte*>(payload.data()), size));
  capnp::writeMessage(stream, segments);
  return payload;
}

bool decode_commit(std::string_view payload, std::vector<std::vector<mutation>>& out) {
  if (payload.size() % sizeof(capnp::word) != 0 || payload.empty()) return false;
  auto copy = kj::heapArray<capnp::word>(payload.size() / sizeof(capnp::word));
  memcpy(copy.begin(), payload.data(), payload.size());
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = std::max<uint64_t>(options.traversalLimitInWords, copy.size() * 2);
    capnp::FlatArrayMessageReader reader(copy, options);
    for (auto b : reader.getRoot<stored::LogCommit>().getBatches()) {
      std::vector<mutation> batch;
      auto holds = b.getHolds();
      auto records = b.getRecords();
      batch.reserve(holds.size() + records.size() + 1);
      for (auto r : records) {
        mutation m;
        m.kind = mutation::put_record;
        read_record(r, m.record);
        batch.push_back(std::move(m));
      }
      if (b.hasSku()) {
        sku_record sku;
        read_sku(b.getSku(), sku);
        for (auto h : holds) {
          mutation m;
          m.kind = mutation::put_hold;
          if (!read_hold(h, m.hold)) return false;
          m.hold.hold.sku = sku.sku.sku;
          batch.push_back(std::move(m));
        }
        mutation s;
        s.kind = mutation::put_sku;
        s.sku = std::move(sku);
        batch.push_back(std::move(s));
      } else if (holds.size() > 0 || records.size() == 0) {
        return false;  // holds without their SKU, or nothing at all
      }
      out.push_back(std::move(batch));
    }
    return true;
  } catch (const kj::Exception&) {
    return false;
  }
}

std::string encode(const directory_meta& m) {
  capnp::MallocMessageBuilder message(16);
  auto b = message.initRoot<stored::DirectoryMeta>();
  b.setFormat(m.format);
  b.setDirectoryId(m.directory_id);
  b.setCreatedMs(m.created_ms);
  b.setClockHighWaterMs(m.clock_high_water_ms);
  b.setSnapshotPosition(m.snapshot_position);
  return to_bytes(message);
}

bool decode(const void* data, size_t size, directory_meta& out) {
  return with_reader(data, size, [&](capnp::MessageReader& reader) {
    auto m = reader.getRoot<stored::DirectoryMeta>();
    out.format = m.getFormat();
    out.directory_id = str(m.getDirectoryId());
    out.created_ms = m.getCreatedMs();
    out.clock_high_water_ms = m.getClockHighWaterMs();
    out.snapshot_position = m.getSnapshotPosition();
  });
}

}  // namespace holdfast
