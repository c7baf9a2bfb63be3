// The node's log on its own (torn tails, damage, rotation) and under the storage
// (segments deleted only once a synced snapshot covers them).
#include "test_support.hpp"

#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <fstream>

#include "persistence/log.hpp"

namespace holdfast::testing {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

class log_test : public ::testing::Test {
protected:
  log_options options() const {
    log_options o;
    o.directory = dir_.path() + "/log";
    o.directory_id = "test-directory";
    o.segment_bytes = 64 << 10;
    return o;
  }

  // Opens the log, collecting every replayed record; null with `error_` on refusal.
  std::unique_ptr<node_log> open(uint64_t after = 0) {
    replayed_.clear();
    error_.clear();
    auto replay = [&](uint64_t seq, std::string_view payload, std::string&) {
      replayed_.emplace_back(seq, std::string(payload));
      return true;
    };
    return node_log::open(options(), after, replay, recovery_, error_);
  }

  static std::string payload(int i) { return "record " + std::to_string(i) + std::string(57 + i, 'p'); }

  // Writes records 1..n and returns the segment file and where each record starts.
  std::string write_records(int n, std::vector<size_t>& starts) {
    auto log = open();
    EXPECT_TRUE(log) << error_;
    size_t at = node_log::segment_header_bytes;
    for (int i = 1; i <= n; ++i) {
      uint64_t seq = 0;
      std::string error;
      EXPECT_EQ(log->append(payload(i), seq, error), store_status::ok) << error;
      EXPECT_EQ(seq, static_cast<uint64_t>(i));
      starts.push_back(at);
      at += node_log::record_bytes(payload(i).size());
    }
    starts.push_back(at);  // the end of the last record
    return log->segment_files().back();
  }

  temp_dir dir_;
  std::vector<std::pair<uint64_t, std::string>> replayed_;
  log_recovery recovery_;
  std::string error_;
};

TEST_F(log_test, records_come_back_in_order_and_appends_continue_after_them) {
  std::vector<size_t> starts;
  write_records(5, starts);
  auto log = open(2);
  ASSERT_TRUE(log) << error_;
  ASSERT_EQ(replayed_.size(), 3u) << "records after the snapshot position only";
  EXPECT_EQ(replayed_[0], std::make_pair(uint64_t{3}, payload(3)));
  EXPECT_EQ(replayed_[2], std::make_pair(uint64_t{5}, payload(5)));
  uint64_t seq = 0;
  std::string error;
  ASSERT_EQ(log->append("six", seq, error), store_status::ok);
  EXPECT_EQ(seq, 6u);
  log.reset();
  ASSERT_TRUE(open(0)) << error_;
  ASSERT_EQ(replayed_.size(), 6u);
  EXPECT_EQ(replayed_[5].second, "six");
}

// A tail torn at any byte of the last record (the rest never written, or written with
// garbage) is cut and never replayed; the next append takes its place.
TEST_F(log_test, a_torn_tail_at_every_byte_of_the_last_record_is_cut_and_never_replayed) {
  std::vector<size_t> starts;
  auto segment = write_records(4, starts);
  const auto good = read_all(segment);
  // Every byte of its header and payload (the zero padding after it is not the record's).
  const size_t last = starts[3], end = last + node_log::record_header_bytes + payload(4).size();
  for (int garbage = 0; garbage < 2; ++garbage) {
    for (size_t cut = last; cut < end; ++cut) {
      auto torn = good;
      for (size_t i = cut; i < end; ++i) torn[i] = garbage ? static_cast<char>(0xA5 ^ i) : '\0';
      write_all(segment, torn);
      auto log = open();
      ASSERT_TRUE(log) << "cut at " << cut << ": " << error_;
      ASSERT_EQ(replayed_.size(), 3u) << "cut at " << cut;
      EXPECT_EQ(replayed_.back().second, payload(3));
      if (cut > last || garbage) {
        EXPECT_GT(recovery_.torn_bytes, 0u) << "cut at " << cut;
      }
      uint64_t seq = 0;
      std::string error;
      ASSERT_EQ(log->append("instead", seq, error), store_status::ok) << error;
      EXPECT_EQ(seq, 4u);
      log.reset();
      ASSERT_TRUE(open()) << error_;
      ASSERT_EQ(replayed_.size(), 4u) << "cut at " << cut;
      EXPECT_EQ(replayed_.back().second, "instead") << "cut at " << cut;
      EXPECT_EQ(recovery_.torn_bytes, 0u) << "the cut tail is gone for good";
    }
  }
}

// A flipped byte anywhere in a record that has valid records after it is damage, not
// a torn tail: the log refuses to open and says where.
TEST_F(log_test, a_flipped_byte_before_the_tail_refuses_to_open) {
  std::vector<size_t> starts;
  auto segment = write_records(4, starts);
  const auto good = read_all(segment);
  // Record 2, header and payload (the zero padding is not covered by the checksum).
  const size_t from = starts[1], to = starts[1] + node_log::record_header_bytes + payload(2).size();
  for (size_t at = from; at < to; ++at) {
    if (at >= from + 20 && at < from + 24) continue;  // the header's reserved word
    auto bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    write_all(segment, bad);
    EXPECT_FALSE(open()) << "byte " << at - from << " of record 2";
    EXPECT_NE(error_.find("damaged"), std::string::npos) << error_;
    EXPECT_NE(error_.find(segment), std::string::npos) << error_;
  }
  write_all(segment, good);
  EXPECT_TRUE(open()) << error_;
  EXPECT_EQ(replayed_.size(), 4u);
}

TEST_F(log_test, a_segment_of_another_directory_or_missing_records_refuse_to_open) {
  std::vector<size_t> starts;
  write_records(3, starts);
  auto o = options();
  o.directory_id = "someone-else";
  std::string error;
  log_recovery r;
  auto none = [](uint64_t, std::string_view, std::string&) { return true; };
  EXPECT_FALSE(node_log::open(o, 0, none, r, error));
  EXPECT_NE(error.find("belongs to data directory test-directory"), std::string::npos) << error;
  EXPECT_FALSE(open(7)) << "the snapshot claims records the log never had";
  EXPECT_NE(error_.find("lost records"), std::string::npos) << error_;
}

TEST_F(log_test, segments_rotate_and_only_covered_ones_are_dropped) {
  auto log = open();
  ASSERT_TRUE(log);
  std::string big(20'000, 'b'), error;
  uint64_t seq = 0;
  for (int i = 0; i < 10; ++i) ASSERT_EQ(log->append(big, seq, error), store_status::ok) << error;
  auto files = log->segment_files();
  ASSERT_GE(files.size(), 3u) << "64 KiB segments hold 3 records of 20 kB";
  EXPECT_EQ(log->drop_through(2), 0u) << "record 3 shares the first segment";
  EXPECT_EQ(log->drop_through(3), 1u);
  auto left = log->segment_files().size();
  EXPECT_EQ(log->drop_through(10), left - 1);
  EXPECT_EQ(log->segment_files().size(), 1u) << "the segment being written stays";
  log.reset();
  ASSERT_TRUE(open(10)) << error_;
  EXPECT_EQ(replayed_.size(), 0u);
  ASSERT_TRUE(open(9)) << error_;
  EXPECT_EQ(replayed_.size(), 1u);
}

// Found by the adversarial pass: the newest segment deleted, or any segment cut short
// (even at a record boundary), silently lost acknowledged records.
TEST_F(log_test, a_missing_newest_segment_or_a_cut_one_refuses_to_open) {
  {
    auto log = open();
    ASSERT_TRUE(log);
    std::string big(20'000, 'b'), error;
    uint64_t seq = 0;
    for (int i = 0; i < 7; ++i) ASSERT_EQ(log->append(big, seq, error), store_status::ok) << error;
  }
  auto files = [&] {
    std::vector<std::string> out;
    for (auto& e : std::filesystem::directory_iterator(options().directory))
      if (e.path().extension() == ".log") out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
  };
  auto segments = files();
  ASSERT_EQ(segments.size(), 3u);
  const auto backup = dir_.path() + "/log-copy";
  std::filesystem::copy(options().directory, backup);
  auto restore = [&] {
    std::filesystem::remove_all(options().directory);
    std::filesystem::copy(backup, options().directory);
  };
  std::filesystem::remove(segments.back());
  EXPECT_FALSE(open()) << "the newest segment is gone";
  EXPECT_NE(error_.find("newest segment"), std::string::npos) << error_;
  for (auto cut : {size_t{20'000}, node_log::segment_header_bytes + node_log::record_bytes(20'000)}) {
    restore();
    std::filesystem::resize_file(segments.back(), cut);
    EXPECT_FALSE(open()) << "cut to " << cut;
    EXPECT_NE(error_.find("cut or extended"), std::string::npos) << error_;
  }
  // A bad last record in a segment that has a newer one was acknowledged: damage.
  restore();
  {
    auto bytes = read_all(segments[1]);
    size_t last = node_log::segment_header_bytes + 2 * node_log::record_bytes(20'000);
    bytes[last + 30] ^= 0x01;
    write_all(segments[1], bytes);
  }
  EXPECT_FALSE(open());
  EXPECT_NE(error_.find("damaged"), std::string::npos) << error_;
  restore();
  ASSERT_TRUE(open()) << error_;
  EXPECT_EQ(replayed_.size(), 7u);
}

// Storage: segments go only once a synced snapshot covers them, never while a
// snapshot fails, never while a backup reads the log.
class log_storage_test : public node_fixture {};

TEST_F(log_storage_test, segments_are_deleted_only_after_a_snapshot_covers_them) {
  stop();
  config_.storage.log_segment_bytes = 16 << 10;
  config_.storage.snapshot_mutations = 1'000'000;  // snapshots only when asked
  config_.storage.overlay_mutations_max = 2'000'000;
  start();
  create("s", 1'000'000);
  auto log_dir = config_.storage.path + "/log";
  auto segments = [&] {
    size_t n = 0;
    for (auto& e : std::filesystem::directory_iterator(log_dir)) n += e.path().extension() == ".log";
    return n;
  };
  for (int i = 0; i < 400; ++i)
    ASSERT_EQ(op(reserve("s", "hold-" + std::to_string(i), 1, 600'000)).status, code::ok);
  auto before = segments();
  ASSERT_GE(before, 4u) << "the log rotated";
  EXPECT_EQ(stats().snapshots, 0u);
  // A backup reading the log holds it: nothing is deleted meanwhile.
  {
    int fd = ::open(log_dir.c_str(), O_RDONLY | O_DIRECTORY);
    ASSERT_EQ(flock(fd, LOCK_SH), 0);
    ASSERT_EQ(env_->snapshot_now(), store_status::ok);
    EXPECT_EQ(segments(), before);
    close(fd);
  }
  ASSERT_EQ(op(reserve("s", "one-more", 1, 600'000)).status, code::ok);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  EXPECT_EQ(segments(), 1u) << "every full segment was covered by the snapshot";
  restart();
  EXPECT_EQ(show("s").active_holds, 401);
  EXPECT_EQ(op(query("hold-7")).hold.state, hold_state::active);
}

TEST_F(log_storage_test, a_failing_snapshot_keeps_every_segment) {
  stop();
  config_.storage.map_size_bytes = size_t{1} << 20;
  config_.storage.log_segment_bytes = 16 << 10;
  start();
  create("f", 1'000'000);
  ASSERT_GE(fill_until_full("f", 600'000), 0);
  auto st = env_->stats();
  EXPECT_GT(env_->stats().snapshot_failures, 0u);
  EXPECT_LT(st.snapshot_position, st.log_position);
  // Every record after the snapshot is still in the log: a restart serves them all.
  auto reserved = show("f").reserved;
  restart();
  EXPECT_EQ(show("f").reserved, reserved);
}

}  // namespace
}  // namespace holdfast::testing
