// At a storage's open: the snapshot's active hold ids into the overlay's index, read on a
// thread of its own while the opener scans the SKU records and passes each one to add().
// The names of SKUs with holds go over in key order and in chunks; the reader replays
// their hold logs through one LMDB cursor and indexes each chunk a shard lock at a time.
// A million holds over as many SKUs took 3-5 s one step after the other, most of it
// B-tree walks and page faults.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "persistence/lmdb_env.hpp"
#include "persistence/overlay.hpp"

namespace holdfast {

class active_hold_loader {
public:
  // A read-only open (`check`) goes on past what it cannot read; a writer stops there.
  active_hold_loader(const lmdb_env& env, overlay& ov, bool read_only);
  // Reached without finish() only when the scan threw: the reader is stopped and joined,
  // the chunks it has not read dropped (the open fails).
  ~active_hold_loader();
  active_hold_loader(const active_hold_loader&) = delete;
  active_hold_loader& operator=(const active_hold_loader&) = delete;

  // On the scanning thread, for every SKU record in key order.
  void add(const sku_record& r);
  // Waits for the reader. Empty, or why a writer cannot start: an SKU whose active holds
  // cannot be read, or whose hold log disagrees with its record (an id it missed could be
  // granted twice).
  std::string finish();

private:
  struct chunk {
    std::vector<std::string> names;  // in key order
    std::vector<int64_t> counts;     // the active holds each one's record says it has
  };
  static constexpr size_t chunk_size = 4096;

  void hand_over();
  // Nothing escapes the thread: an exception becomes the reason the open fails.
  void run();
  void read_chunks();
  // Reads one chunk into `batch`; false (with error_ set) when a writer must not start.
  bool read(const chunk& c, overlay::active_batch& batch);
  void drain();

  const lmdb_env& env_;
  overlay& overlay_;
  const bool read_only_;
  chunk filling_;  // the scanning thread's
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<chunk> chunks_;
  bool done_ = false;
  std::string error_;   // the reader's until joined
  std::thread thread_;  // last: starts once the rest is built
};

}  // namespace holdfast
