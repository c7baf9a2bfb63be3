// The checks a Raft message passes before libraft's decoder sees it, fed bytes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cluster/raft_frames.hpp"

namespace holdfast {
namespace {

void le(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

std::vector<uint8_t> preamble(uint8_t type, uint64_t header_bytes) {
  std::vector<uint8_t> p;
  le(p, type | (1u << 16), 8);
  le(p, header_bytes, 8);
  return p;
}

struct entry {
  uint8_t kind;
  uint32_t len;
};

std::vector<uint8_t> append_entries(const std::vector<entry>& entries, uint64_t count) {
  std::vector<uint8_t> h;
  for (int i = 0; i < 4; ++i) le(h, 1, 8);
  le(h, count, 8);
  for (auto& e : entries) {
    le(h, 1, 8);
    h.push_back(e.kind);
    h.insert(h.end(), 3, 0);
    le(h, e.len, 4);
  }
  le(h, 0, 8);
  return h;
}

const raft_frame_limits limits{1024, 4096};

std::optional<uint64_t> payload(uint8_t type, const std::vector<uint8_t>& header, std::string& why) {
  auto p = preamble(type, header.size());
  return raft_payload_bytes(p.data(), header.data(), header.size(), limits, why);
}

TEST(raft_frames, a_header_length_must_be_one_byte_to_four_mib) {
  std::string why;
  EXPECT_FALSE(raft_header_bytes(preamble(1, 0).data(), why));
  EXPECT_FALSE(raft_header_bytes(preamble(1, raft_header_bytes_max + 1).data(), why));
  EXPECT_EQ(why, "a header length out of range");
  EXPECT_EQ(raft_header_bytes(preamble(1, 56).data(), why), 56u);
  EXPECT_EQ(raft_header_bytes(preamble(1, raft_header_bytes_max).data(), why), raft_header_bytes_max);
}

TEST(raft_frames, append_entries_declares_the_sum_of_its_entries) {
  std::string why;
  EXPECT_EQ(payload(1, append_entries({{1, 16}, {2, 8}, {3, 0}}, 3), why), 24u);
  EXPECT_EQ(payload(1, append_entries({}, 0), why), 0u);  // a heartbeat
}

TEST(raft_frames, append_entries_refuses_what_libraft_would_trust) {
  std::string why;
  EXPECT_FALSE(payload(1, append_entries({{1, 5}}, 1), why)) << "not a multiple of 8";
  EXPECT_EQ(why, "an entry of an unknown kind or not a multiple of 8 bytes");
  EXPECT_FALSE(payload(1, append_entries({{4, 8}}, 1), why)) << "unknown kind";
  EXPECT_FALSE(payload(1, append_entries({{0, 8}}, 1), why)) << "unknown kind";
  EXPECT_FALSE(payload(1, append_entries({{1, 8}}, 1000), why)) << "count beyond the header";
  EXPECT_EQ(why, "entries beyond its header");
  EXPECT_FALSE(payload(1, append_entries({{1, 8}}, UINT64_MAX), why)) << "a count that would overflow";
  EXPECT_FALSE(payload(1, append_entries({{1, 1024}, {1, 8}}, 2), why)) << "over the limit";
  EXPECT_EQ(why, "entries over max_entries_bytes");
  EXPECT_FALSE(payload(1, std::vector<uint8_t>(39, 0), why)) << "shorter than 4 words and a count";
  EXPECT_EQ(why, "a header shorter than its type's");
}

TEST(raft_frames, fixed_messages_need_their_fixed_fields) {
  std::string why;
  EXPECT_EQ(payload(3, std::vector<uint8_t>(32, 0), why), 0u);  // RequestVote
  EXPECT_FALSE(payload(3, std::vector<uint8_t>(31, 0), why));
  EXPECT_EQ(payload(2, std::vector<uint8_t>(16, 0), why), 0u);  // AppendEntries result
  EXPECT_FALSE(payload(4, std::vector<uint8_t>(15, 0), why));   // RequestVote result
  EXPECT_EQ(payload(6, std::vector<uint8_t>(24, 0), why), 0u);  // TimeoutNow
  EXPECT_FALSE(payload(6, std::vector<uint8_t>(23, 0), why));
  EXPECT_FALSE(payload(0, std::vector<uint8_t>(64, 0), why));
  EXPECT_FALSE(payload(7, std::vector<uint8_t>(64, 0), why));
  EXPECT_EQ(why, "an unknown message type");
}

TEST(raft_frames, install_snapshot_declares_its_data_within_the_limit) {
  auto snapshot = [](uint64_t conf_declared, size_t conf_bytes, uint64_t data) {
    std::vector<uint8_t> h;
    for (int i = 0; i < 4; ++i) le(h, 1, 8);
    le(h, conf_declared, 8);
    h.insert(h.end(), conf_bytes, 0);
    le(h, data, 8);
    le(h, 0, 8);
    return h;
  };
  std::string why;
  EXPECT_EQ(payload(5, snapshot(24, 24, 4096), why), 4096u);
  EXPECT_FALSE(payload(5, snapshot(24, 24, 4097), why));
  EXPECT_EQ(why, "a snapshot over max_snapshot_bytes");
  EXPECT_FALSE(payload(5, snapshot(1000, 24, 8), why)) << "configuration beyond the header";
  EXPECT_EQ(why, "a configuration beyond its header");
  EXPECT_FALSE(payload(5, snapshot(UINT64_MAX, 0, 8), why));
  EXPECT_FALSE(payload(5, std::vector<uint8_t>(47, 0), why));
}

}  // namespace
}  // namespace holdfast
