// Recovery equivalence: random operations, snapshots, clock advances and crashes (some
// of them tearing the last log record, as a power loss during its append would), each
// recovery checked against an in-memory model of exactly what was acknowledged.
#include "test_support.hpp"

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "persistence/log.hpp"

namespace holdfast::testing {
namespace {

struct model_hold {
  std::string sku;
  int64_t qty = 0;
  hold_state state = hold_state::active;
  int64_t deadline_ms = 0;
};

struct model {
  std::map<std::string, int64_t> stocked;
  std::map<std::string, model_hold> holds;
};

class recovery_test : public node_fixture {
protected:
  uint64_t env_snapshot_position_ = 0;

  // Zeroes the last log record from a random byte of its header or payload on: its
  // append never finished. Returns false when the log ends in no record, or when the
  // bytes zeroed were zero already (the record is whole after all).
  bool tear_last_record(std::mt19937_64& rng) {
    std::vector<std::string> segments;
    for (auto& e : std::filesystem::directory_iterator(config_.storage.path + "/log"))
      segments.push_back(e.path().string());
    std::sort(segments.begin(), segments.end());
    for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
      std::fstream f(*it, std::ios::in | std::ios::out | std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(f)), {});
      size_t at = node_log::segment_header_bytes, last = 0, last_len = 0;
      while (at + node_log::record_header_bytes <= bytes.size()) {
        uint32_t magic, len;
        memcpy(&magic, bytes.data() + at, 4);
        memcpy(&len, bytes.data() + at + 4, 4);
        if (magic != 0x524c4648) break;
        last = at, last_len = len;
        at += node_log::record_bytes(len);
      }
      if (last == 0) continue;
      size_t extent = node_log::record_header_bytes + last_len;
      size_t from = last + rng() % extent;
      // Bytes that were zero already would land the same: the record is whole.
      if (bytes.find_first_not_of('\0', from) >= last + extent) return false;
      std::string zeros(last + extent - from, '\0');
      f.seekp(static_cast<std::streamoff>(from));
      f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
      return true;
    }
    return false;
  }

  // The node's state, read through its API, against the model.
  void expect_matches(const model& m, const std::string& when) {
    auto now = clock_->now_ms();
    std::map<std::string, std::array<int64_t, 3>> expect;  // sku -> reserved, sold, holds
    for (auto& [sku, stocked] : m.stocked) expect[sku] = {0, 0, 0};
    for (int i = 0; i < 40; ++i) {
      auto id = "h" + std::to_string(i);
      auto r = op(query(id));
      auto it = m.holds.find(id);
      if (it == m.holds.end()) {
        EXPECT_EQ(r.status, code::unknown_hold) << when << ": " << id << " was never acknowledged";
        continue;
      }
      auto want = it->second.state;
      if (want == hold_state::active && it->second.deadline_ms <= now) want = hold_state::expired;
      EXPECT_EQ(r.status, code::ok) << when << ": " << id;
      EXPECT_EQ(r.hold.state, want) << when << ": " << id;
      EXPECT_EQ(r.hold.sku, it->second.sku) << when << ": " << id;
      auto& e = expect[it->second.sku];
      if (want == hold_state::active) e[0] += it->second.qty, e[2] += 1;
      if (want == hold_state::confirmed) e[1] += it->second.qty;
    }
    for (auto& [sku, stocked] : m.stocked) {
      auto s = show(sku);
      EXPECT_EQ(s.stocked, stocked) << when << ": " << sku;
      EXPECT_EQ(s.reserved, expect[sku][0]) << when << ": " << sku;
      EXPECT_EQ(s.sold, expect[sku][1]) << when << ": " << sku;
      EXPECT_EQ(s.active_holds, expect[sku][2]) << when << ": " << sku;
      EXPECT_EQ(s.on_hand, stocked - expect[sku][1]) << when << ": " << sku;
    }
  }
};

TEST_F(recovery_test, random_operations_and_crashes_recover_exactly_the_acknowledged_state) {
  const std::vector<std::string> skus{"a", "b", "c"};
  int crashes = 0, tears = 0, snapshots = 0;
  for (uint64_t seed = 1; seed <= 24; ++seed) {
    stop();
    config_.storage.path = dir_.path() + "/data-" + std::to_string(seed);
    start();
    std::mt19937_64 rng(seed);
    model m;
    for (auto& s : skus) {
      create(s, 20);
      m.stocked[s] = 20;
    }
    // The model before the latest operation, and the log record that operation wrote
    // (0: it wrote none, or more than one, or something was written after it).
    model before_last;
    uint64_t last_record = 0;
    for (int step = 0; step < 120 && !HasFailure(); ++step) {
      auto when = "seed " + std::to_string(seed) + " step " + std::to_string(step);
      auto dice = rng() % 100;
      auto id = "h" + std::to_string(rng() % 40);
      auto position = stats().log_position;
      auto snapshot_copy = m;
      bool was_op = true;
      if (dice < 40) {
        auto sku = skus[rng() % skus.size()];
        auto r = op(reserve(sku, id, 1 + static_cast<int64_t>(rng() % 3),
                            500 + static_cast<int64_t>(rng() % 20'000)));
        if (r.status == code::ok)
          m.holds[id] = model_hold{sku, r.hold.qty, hold_state::active, r.hold.deadline_ms};
      } else if (dice < 70) {
        auto r = op(dice < 55 ? confirm(id) : release(id));
        if (r.status == code::ok) m.holds[id].state = r.hold.state;
        if (r.status == code::hold_expired) m.holds[id].state = hold_state::expired;
      } else if (dice < 73) {
        auto name = skus[rng() % skus.size()];
        auto rs = sku(sku_op_kind::restock, name, 5);
        if (rs.status == code::ok) m.stocked[name] += 5;
      } else if (dice < 85) {
        was_op = false;
        advance_ms(static_cast<int64_t>(rng() % 3'000));
      } else if (dice < 90) {
        was_op = false;
        ASSERT_EQ(env_->snapshot_now(), store_status::ok) << when;
        ++snapshots;
      } else {
        // A crash. If the latest write was one operation's one record and no snapshot
        // holds it, it may be torn: that operation was never acknowledged.
        stop();
        ++crashes;
        bool tearable = last_record != 0 && env_snapshot_position_ < last_record;
        if (tearable && rng() % 2 == 0 && tear_last_record(rng)) {
          m = before_last;
          ++tears;
        }
        start();
        ASSERT_GE(call<int64_t>(recover_atom_v), 0) << when;
        expect_matches(m, when + " after recovery");
        env_snapshot_position_ = stats().snapshot_position;
        last_record = 0;
        continue;
      }
      auto st = stats();
      auto after = st.log_position;
      env_snapshot_position_ = st.snapshot_position;
      if (was_op && after == position + 1) {
        before_last = std::move(snapshot_copy);
        last_record = after;
      } else if (after != position) {
        last_record = 0;
      }
    }
    expect_matches(m, "seed " + std::to_string(seed) + " at the end");
    ASSERT_FALSE(HasFailure()) << "seed " << seed;
  }
  std::printf("%d crashes (%d tearing the last record), %d snapshots taken on purpose\n", crashes,
              tears, snapshots);
  EXPECT_GT(tears, 5);
}

}  // namespace
}  // namespace holdfast::testing
