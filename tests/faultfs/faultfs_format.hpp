// On-disk format shared by the shim (writer) and the harness (reader). Internal to tests/faultfs.
#pragma once

#include <cstdint>
#include <string>

namespace holdfast::faultfs::format {

// One journal record; `write` records are followed by `length` data bytes. A trailing record
// cut short (the process was killed inside the append) is ignored by readers.
struct record_header {
  uint32_t magic;
  uint16_t type;
  uint16_t flags;
  uint64_t offset;  // write: file offset of the first byte; size: the new file size
  uint64_t length;  // write: number of data bytes that follow; size: 0
};
static_assert(sizeof(record_header) == 24, "record_header is written and read as raw bytes");

constexpr uint32_t record_magic = 0x46464a31;  // "FFJ1"
constexpr uint16_t record_write = 1;
constexpr uint16_t record_size = 2;
constexpr uint16_t flag_durable = 1;  // already in the durable image when it was journaled

constexpr const char* durable_suffix = ".durable";
constexpr const char* pending_suffix = ".pending";
constexpr const char* default_exclude = "lock.mdb,.lock";

// Tracked paths holding '%' are refused by the shim, so this mapping is reversible.
inline std::string encode_name(std::string rel) {
  for (char& c : rel)
    if (c == '/') c = '%';
  return rel;
}

inline std::string decode_name(std::string name) {
  for (char& c : name)
    if (c == '%') c = '/';
  return name;
}

}  // namespace holdfast::faultfs::format
