#include "cluster/raft_frames.hpp"

namespace holdfast {

namespace {
uint64_t le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}
uint32_t le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
std::optional<uint64_t> refuse(std::string& why, const char* what) {
  why = what;
  return std::nullopt;
}
}  // namespace

std::optional<uint64_t> raft_header_bytes(const uint8_t* preamble, std::string& why) {
  uint64_t n = le64(preamble + 8);
  if (n == 0 || n > raft_header_bytes_max) return refuse(why, "a header length out of range");
  return n;
}

std::optional<uint64_t> raft_payload_bytes(const uint8_t* preamble, const uint8_t* h, size_t n,
                                           const raft_frame_limits& limits, std::string& why) {
  const char* too_short = "a header shorter than its type's";
  switch (preamble[0]) {
    case 3:  // RequestVote
      return n < 32 ? refuse(why, too_short) : uint64_t{0};
    case 2:  // AppendEntries result
    case 4:  // RequestVote result
      return n < 16 ? refuse(why, too_short) : uint64_t{0};
    case 6:  // TimeoutNow
      return n < 24 ? refuse(why, too_short) : uint64_t{0};
    case 1: {  // AppendEntries: 4 words, then the batch header (count, 16 bytes per entry)
      if (n < 40) return refuse(why, too_short);
      uint64_t count = le64(h + 32);
      if (count > (n - 40) / 16) return refuse(why, "entries beyond its header");
      uint64_t payload = 0;
      for (uint64_t i = 0; i < count; ++i) {
        const uint8_t* e = h + 40 + 16 * i;  // term (8), kind (1), unused (3), length (4)
        uint32_t len = le32(e + 12);
        if (e[8] < 1 || e[8] > 3 || len % 8 != 0)
          return refuse(why, "an entry of an unknown kind or not a multiple of 8 bytes");
        payload += len;
      }
      if (payload > limits.entries_bytes_max) return refuse(why, "entries over max_entries_bytes");
      return payload;
    }
    case 5: {  // InstallSnapshot: 4 words, configuration length and bytes, data length
      if (n < 48) return refuse(why, too_short);
      uint64_t conf = le64(h + 32);
      if (conf > n - 48) return refuse(why, "a configuration beyond its header");
      uint64_t data = le64(h + 40 + conf);
      if (data > limits.snapshot_bytes_max) return refuse(why, "a snapshot over max_snapshot_bytes");
      return data;
    }
    default:
      return refuse(why, "an unknown message type");
  }
}

}  // namespace holdfast
