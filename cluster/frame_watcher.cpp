#include "cluster/frame_watcher.hpp"

#include <capnp/rpc.capnp.h>

#include <algorithm>
#include <cstring>

namespace holdfast {

void frame_watcher::take(const kj::byte* p, size_t n, int64_t now_ms) {
  if (n > 0) {
    last_read_ms_ = now_ms;
    ever_read_ = true;
  }
  while (n > 0 && refused_bytes_ == 0) {
    if (at_ == phase::body && pad_left_ > 0) {
      ++p;
      --n;
      if (--pad_left_ == 0 && body_left_ == 0) end_frame();
      continue;
    }
    if (at_ == phase::body) {
      auto step = static_cast<size_t>(std::min<uint64_t>(body_left_, n));
      auto keep = std::min(step, sizeof head_ - head_bytes_);
      memcpy(head_ + head_bytes_, p, keep);
      head_bytes_ += keep;
      body_left_ -= step;
      p += step;
      n -= step;
      if (body_left_ == 0) end_frame();
      continue;
    }
    if (at_ == phase::count && word_bytes_ == 0) frame_started_ms_ = now_ms;
    word_ |= uint32_t{*p++} << (8 * word_bytes_);
    --n;
    if (++word_bytes_ < 4) continue;
    auto value = word_;
    word_ = 0;
    word_bytes_ = 0;
    if (at_ == phase::count) {
      segments_ = value + 1;
      sizes_read_ = 0;
      body_left_ = 0;
      at_ = phase::sizes;
      continue;
    }
    body_left_ += uint64_t{value} * 8;
    if (++sizes_read_ < segments_) continue;
    // The segment table is padded to a whole word; the body starts after it.
    pad_left_ = segments_ % 2 == 0 ? 4 : 0;
    if (budget_) {
      if (!budget_->take(body_left_)) {
        refused_bytes_ = body_left_;
        return;
      }
      held_ = body_left_;
    }
    at_ = phase::body;
    if (body_left_ == 0 && pad_left_ == 0) end_frame();
  }
}

void frame_watcher::end_frame() {
  release();
  count_message();
  ++frames_;
  at_ = phase::count;
  frame_started_ms_ = 0;
  head_bytes_ = 0;
}

// Counts calls and bootstraps up and finishes down. A root that is not where Cap'n
// Proto's own writers put it (right after the root pointer) counts as a question.
void frame_watcher::count_message() {
  uint64_t root = 0;
  uint16_t kind = capnp::rpc::Message::CALL;
  if (head_bytes_ == sizeof head_) {
    memcpy(&root, head_, 8);
    if ((root & 3) == 0 && (root >> 2 & 0x3fffffff) == 0) memcpy(&kind, head_ + 8, 2);
  }
  if (kind == capnp::rpc::Message::CALL || kind == capnp::rpc::Message::BOOTSTRAP) ++unfinished_;
  else if (kind == capnp::rpc::Message::FINISH && unfinished_ > 0) --unfinished_;
}

}  // namespace holdfast
