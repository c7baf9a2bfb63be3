// The node's write-ahead log: every group commit is one record, appended and made
// durable with one fdatasync before any writer in it hears "durable".
//
// The log is a directory of preallocated segment files named by the first sequence
// number they were created for (`00000000000000000042.log`). A segment starts with a
// header naming the data directory it belongs to; records follow, 8-byte aligned:
//
//   u32 magic | u32 payload length | u64 seq | u32 crc32c(length, seq, payload) | u32 0
//   payload, zero padding to 8 bytes
//
// Sequence numbers are consecutive across segments. The `newest` file names the newest
// segment that has held an acknowledged record: at open that segment must be there, and
// it is never deleted; each segment's header records its made size, so one cut short
// is damage, not a torn tail. At open the log is scanned: a record
// that fails its checksum (or was only partly written) with no valid record anywhere
// after it is a torn tail, written by an append that never returned: it is cut (zeroed
// and synced) and never replayed. A bad record followed by valid ones is damage before
// the tail: open refuses and says where. Segments whose records are all covered by a
// synced snapshot are deleted (`drop_through`); the segment being written is kept.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "persistence/lmdb_env.hpp"
#include "protocol/histogram.hpp"

namespace holdfast {

struct log_options {
  std::string directory;               // created if missing (write mode)
  std::string directory_id;            // written in and checked against segment headers
  uint64_t segment_bytes = 64u << 20;  // preallocated size of a segment
  bool sync = true;                    // false only for the power-loss test's negative run
  bool read_only = false;              // check and backup: nothing is cut or written
};

// What the scan at open found.
struct log_recovery {
  size_t segments = 0;
  uint64_t first_seq = 0;  // of the oldest record kept (0: none)
  uint64_t last_seq = 0;   // of the newest valid record (0: none)
  size_t replayed = 0;     // records handed to the replay function (seq > after_seq)
  uint64_t torn_bytes = 0; // bytes of a torn tail that were cut (read-only: would be)
  std::string torn_at;     // "segment offset" of the cut tail, empty when none
};

class node_log {
public:
  using replay_fn = std::function<bool(uint64_t seq, std::string_view payload, std::string& error)>;

  // Opens the log and hands every record with seq > `after_seq` to `replay` in order.
  // Returns null with `error` when the log is damaged before its tail, belongs to
  // another directory, lacks the records after `after_seq`, or replay fails.
  static std::unique_ptr<node_log> open(const log_options& options, uint64_t after_seq,
                                        const replay_fn& replay, log_recovery& report,
                                        std::string& error);
  ~node_log();
  node_log(const node_log&) = delete;
  node_log& operator=(const node_log&) = delete;

  // Appends one record with the next sequence number and syncs it. On failure nothing
  // of it remains (the space is zeroed again) and `seq` is not used up; if even that
  // fails the log refuses every later append with io_error.
  store_status append(std::string_view payload, uint64_t& seq, std::string& error);

  // Deletes the segments whose records all have seq <= `seq` (never the one being
  // written). Returns how many were deleted.
  size_t drop_through(uint64_t seq);

  uint64_t last_seq() const;
  size_t segment_count() const;
  // How long each append's fdatasync took (any thread).
  histogram_counts sync_latency() const { return sync_us_.read(); }
  // Segment file names, oldest first.
  std::vector<std::string> segment_files() const;
  const std::string& directory() const { return options_.directory; }

  // The record layout, for the tests that tear and corrupt it.
  static constexpr size_t segment_header_bytes = 128;
  static constexpr size_t record_header_bytes = 24;
  static constexpr size_t record_bytes(size_t payload) {
    return (record_header_bytes + payload + 7) & ~size_t{7};
  }
  static std::string segment_name(uint64_t first_seq);

  // Copies the log's records after `after_seq` (a consistent prefix: a record being
  // written while it is read ends the copy) into `target`, a new log directory.
  static bool copy(const std::string& source, const std::string& target,
                   const std::string& directory_id, uint64_t after_seq, uint64_t& last_copied,
                   std::string& error);

private:
  struct segment {
    std::string path;
    uint64_t first_seq = 0;  // from the name
    uint64_t last_seq = 0;   // of its last record, 0 when it has none
    uint64_t size = 0;
  };
  explicit node_log(log_options options) : options_(std::move(options)) {}
  bool start_segment(uint64_t first_seq, uint64_t min_bytes, std::string& error);

  log_options options_;
  mutable std::mutex mutex_;  // segments_ (drop_through runs on the snapshot thread)
  std::vector<segment> segments_;
  int fd_ = -1;              // the segment being written
  uint64_t offset_ = 0;      // where its next record goes
  std::atomic<uint64_t> last_seq_{0};
  histogram sync_us_ = latency_histogram();
  std::atomic<uint64_t> newest_{0};  // the segment `newest` names: never deleted
  bool broken_ = false;
};

}  // namespace holdfast
