// Watches what a connection reads for Cap'n Proto's framing, without parsing messages:
// where the current frame is (so a frame begun and never finished is noticed, at the
// sweeper's deadline), when the last byte came, and how many questions (calls and
// bootstraps) the peer asked and has not finished. Cap'n Proto keeps each question's
// answer until the peer's Finish, so those are memory the peer holds on this node.
//
// It reads the bytes as they pass through the stream wrapper (cluster/rpc_server.cpp):
// any split of the stream into reads gives the same counts. Network thread only.
#pragma once

#include <kj/common.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "protocol/limits.hpp"

namespace holdfast {

// Node-wide: the bytes of the frames being read (begun, not yet whole) over every
// connection that shares it. Cap'n Proto allocates a frame's whole body as soon as it has
// read the segment table, so without a budget N connections could each make the node
// hold a frame of up to wire_words_max words (60 connections held 2 GB for the frame
// timeout). A large frame that would pass `max_bytes` is refused before Cap'n Proto
// reads its body: its connection is closed. A small frame (frame_small_bytes_max, what
// ordinary calls send) is never refused, only counted: so connections that hold the
// budget with large frames they never finish cannot lock ordinary clients out, and what
// small frames hold is bounded by the connections the node admits. Network thread only.
class frame_budget {
public:
  explicit frame_budget(uint64_t max_bytes) : max_(max_bytes) {}
  // Takes `n` bytes for a frame; false (counted) when a large one does not fit.
  bool take(uint64_t n) {
    // (Small frames may take `used_` past `max_`.)
    if (n > frame_small_bytes_max && (used_ > max_ || n > max_ - used_)) {
      ++refused_;
      return false;
    }
    used_ += n;
    return true;
  }
  void give(uint64_t n) { used_ -= n; }
  uint64_t used() const { return used_; }
  uint64_t max() const { return max_; }
  uint64_t refused() const { return refused_; }

private:
  uint64_t max_;
  uint64_t used_ = 0;
  uint64_t refused_ = 0;
};

class frame_watcher {
public:
  // `now_ms`: when the connection was accepted (its idle time counts from then).
  // `budget`: shared with the node's other connections; null: no budget.
  explicit frame_watcher(int64_t now_ms = 0, std::shared_ptr<frame_budget> budget = nullptr)
    : last_read_ms_(now_ms), budget_(std::move(budget)) {}
  ~frame_watcher() { release(); }
  frame_watcher(const frame_watcher&) = delete;
  frame_watcher& operator=(const frame_watcher&) = delete;

  // `n` bytes read at `now_ms`.
  void take(const kj::byte* p, size_t n, int64_t now_ms);
  // Reading was paused this long by the node (an answer the peer had not read yet): a
  // frame begun before the pause gets that time back.
  void paused_for(int64_t ms) {
    if (frame_started_ms_ != 0) frame_started_ms_ += ms;
  }

  int64_t frame_started_ms() const { return frame_started_ms_; }  // 0: between frames
  int64_t last_read_ms() const { return last_read_ms_; }
  bool ever_read() const { return ever_read_; }
  // Calls and bootstraps read, less the finishes read (never below 0).
  int64_t unfinished() const { return unfinished_; }
  uint64_t frames() const { return frames_; }
  // The body size of a frame the budget refused (0: none). Nothing after it is read: the
  // stream fails the read that brought its segment table, before Cap'n Proto allocates.
  uint64_t refused_frame_bytes() const { return refused_bytes_; }

private:
  void end_frame();
  void release() {
    if (budget_ && held_ > 0) budget_->give(held_);
    held_ = 0;
  }
  void count_message();

  enum class phase { count, sizes, body } at_ = phase::count;
  uint32_t word_ = 0;  // little-endian bytes of the header word being read
  int word_bytes_ = 0;
  uint32_t segments_ = 0, sizes_read_ = 0;
  uint64_t body_left_ = 0;
  int pad_left_ = 0;  // the segment table's padding to a whole word, before the body
  // The first 16 bytes of a frame's body: the root pointer and the first data word,
  // which holds an RPC message's kind.
  kj::byte head_[16];
  size_t head_bytes_ = 0;
  int64_t frame_started_ms_ = 0;
  int64_t last_read_ms_ = 0;
  bool ever_read_ = false;
  int64_t unfinished_ = 0;
  uint64_t frames_ = 0;
  std::shared_ptr<frame_budget> budget_;
  uint64_t held_ = 0;           // taken from the budget for the frame being read
  uint64_t refused_bytes_ = 0;
};

}  // namespace holdfast
