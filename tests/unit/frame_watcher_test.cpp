// The frame watcher fed bytes: real Cap'n Proto RPC frames, split every way a socket
// could split them, and frames that never finish.
#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <vector>

#include "cluster/frame_watcher.hpp"

namespace holdfast::testing {
namespace {

enum class kind { call, bootstrap, finish, release };

// One RPC message framed for the wire. `first_segment_words` small forces several
// segments (an even count has a padded segment table).
std::vector<kj::byte> frame(kind k, uint32_t first_segment_words = 1024, size_t payload = 0) {
  capnp::MallocMessageBuilder message(first_segment_words, capnp::AllocationStrategy::FIXED_SIZE);
  auto m = message.initRoot<capnp::rpc::Message>();
  switch (k) {
    case kind::call: {
      auto call = m.initCall();
      call.setQuestionId(7);
      // A payload big enough to spill into further segments.
      if (payload > 0) call.initParams().initContent().setAs<capnp::Text>(std::string(payload, 'x'));
      break;
    }
    case kind::bootstrap: m.initBootstrap().setQuestionId(1); break;
    case kind::finish: m.initFinish().setQuestionId(7); break;
    case kind::release: m.initRelease().setId(3); break;
  }
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return {bytes.begin(), bytes.end()};
}

std::vector<kj::byte> concat(const std::vector<std::vector<kj::byte>>& frames) {
  std::vector<kj::byte> out;
  for (auto& f : frames) out.insert(out.end(), f.begin(), f.end());
  return out;
}

TEST(frame_watcher, counts_questions_whatever_the_reads_and_segments) {
  auto multi = frame(kind::call, 4, 300);  // several segments
  ASSERT_GT(multi.size(), 300u);
  uint32_t segments = 0;
  memcpy(&segments, multi.data(), 4);
  ASSERT_GE(segments + 1, 2u) << "the big call spans several segments";
  auto stream = concat({frame(kind::bootstrap), frame(kind::call), multi, frame(kind::finish),
                        frame(kind::release), frame(kind::call, 2, 40)});
  // Every chunk size from one byte to the whole stream at once.
  for (size_t chunk : {size_t{1}, size_t{3}, size_t{5}, size_t{8}, size_t{13}, size_t{64}, stream.size()}) {
    frame_watcher w(100);
    for (size_t at = 0; at < stream.size(); at += chunk)
      w.take(stream.data() + at, std::min(chunk, stream.size() - at), 200);
    EXPECT_EQ(w.frames(), 6u) << "chunk " << chunk;
    EXPECT_EQ(w.unfinished(), 3) << "bootstrap + 3 calls - 1 finish; chunk " << chunk;
    EXPECT_EQ(w.frame_started_ms(), 0) << "between frames; chunk " << chunk;
    EXPECT_EQ(w.last_read_ms(), 200);
    EXPECT_TRUE(w.ever_read());
  }
}

TEST(frame_watcher, a_frame_begun_and_not_finished_is_seen_until_it_ends) {
  frame_watcher w(0);
  EXPECT_FALSE(w.ever_read());
  EXPECT_EQ(w.frame_started_ms(), 0);
  auto f = frame(kind::call);
  w.take(f.data(), 3, 10);  // part of the segment count
  EXPECT_EQ(w.frame_started_ms(), 10);
  w.take(f.data() + 3, f.size() - 4, 20);  // all but the last byte
  EXPECT_EQ(w.frame_started_ms(), 10) << "the frame's start, not the latest read";
  EXPECT_EQ(w.unfinished(), 0);
  // Reading paused by the node for 5 ms: the frame's clock gives the peer that time.
  w.paused_for(5);
  EXPECT_EQ(w.frame_started_ms(), 15);
  w.take(f.data() + f.size() - 1, 1, 30);
  EXPECT_EQ(w.frame_started_ms(), 0);
  EXPECT_EQ(w.unfinished(), 1);
  w.paused_for(5);
  EXPECT_EQ(w.frame_started_ms(), 0) << "no frame open: nothing to give back";
}

TEST(frame_watcher, finishes_never_drive_the_count_below_zero_and_garbage_stays_open) {
  frame_watcher w(0);
  auto fin = frame(kind::finish);
  for (int i = 0; i < 3; ++i) w.take(fin.data(), fin.size(), 1);
  EXPECT_EQ(w.unfinished(), 0);
  // A header announcing a huge body: the frame stays open (the sweeper's deadline closes
  // the connection), whatever arrives after it.
  std::vector<kj::byte> huge{0, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f};
  w.take(huge.data(), huge.size(), 50);
  std::vector<kj::byte> junk(4096, 0xab);
  w.take(junk.data(), junk.size(), 60);
  EXPECT_EQ(w.frame_started_ms(), 50);
  EXPECT_EQ(w.frames(), 3u);
  // A root pointer that is not where Cap'n Proto's writers put it counts as a question.
  frame_watcher odd(0);
  std::vector<kj::byte> moved{0, 0, 0, 0, 3, 0, 0, 0,            // one segment of 3 words
                              4, 0, 0, 0, 1, 0, 0, 0,            // root: struct at offset 1
                              0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0};  // "finish"
  odd.take(moved.data(), moved.size(), 1);
  EXPECT_EQ(odd.frames(), 1u);
  EXPECT_EQ(odd.unfinished(), 1);
}

}  // namespace
}  // namespace holdfast::testing
