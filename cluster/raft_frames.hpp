// What a Raft message from a peer must be before libraft's decoder sees it: raft_uv's wire
// format (src/uv_encoding.c of libraft 0.22.1), checked where that decoder trusts its
// input. It reads a header's fixed fields without checking the header's length, allocates
// whatever payload the header declares, and a follower whose disk append is refused (raft_uv
// takes only entries of a multiple of 8 bytes) breaks.
//
// A message: a preamble of two little-endian words (byte 0 the type, then the header's
// length), the header, then the payload the header declares. raft_tls relays a message to
// libraft only once these checks pass (cluster/raft_tls.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace holdfast {

constexpr size_t raft_preamble_bytes = 16;
constexpr uint64_t raft_header_bytes_max = uint64_t{4} << 20;  // 262k entries' headers

struct raft_frame_limits {
  uint64_t entries_bytes_max;   // one AppendEntries' entries
  uint64_t snapshot_bytes_max;  // one InstallSnapshot's data
};

// The header length a preamble declares, or nullopt with why (0, or over
// raft_header_bytes_max).
std::optional<uint64_t> raft_header_bytes(const uint8_t* preamble, std::string& why);

// The payload length the preamble's type and its header declare, or nullopt with why.
std::optional<uint64_t> raft_payload_bytes(const uint8_t* preamble, const uint8_t* header, size_t header_bytes,
                                           const raft_frame_limits& limits, std::string& why);

}  // namespace holdfast
