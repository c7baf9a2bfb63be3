#include "persistence/log.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "persistence/crc32c.hpp"
#include "protocol/regular_file.hpp"

namespace holdfast {
namespace {

constexpr uint32_t record_magic = 0x524c4648;  // "HFLR"
constexpr char segment_magic[8] = {'H', 'F', 'L', 'O', 'G', 'S', 'G', '1'};
constexpr uint32_t segment_version = 1;
constexpr size_t id_bytes_max = 96;
constexpr uint32_t payload_bytes_max = 1u << 30;

template <class T>
T load(const unsigned char* p) {
  T v;
  memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void store(unsigned char* p, T v) {
  memcpy(p, &v, sizeof v);
}

std::string errno_text(const std::string& what) { return what + ": " + strerror(errno); }

store_status from_errno(int e) {
  if (e == ENOSPC) return store_status::disk_full;
#ifdef EDQUOT
  if (e == EDQUOT) return store_status::disk_full;
#endif
  return store_status::io_error;
}

bool fsync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = fsync(fd) == 0;
  close(fd);
  return ok;
}

// "<20 digits>.log" -> first seq.
bool parse_segment_name(const std::string& name, uint64_t& first_seq) {
  if (name.size() != 24 || name.compare(20, 4, ".log") != 0) return false;
  first_seq = 0;
  for (size_t i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    first_seq = first_seq * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  return true;
}

// `bytes`: the segment's size as made (a multiple of 4096), recorded so that a segment
// cut short is noticed rather than taken for a torn tail.
std::string segment_header(uint64_t first_seq, const std::string& directory_id, uint64_t bytes) {
  std::string h(node_log::segment_header_bytes, '\0');
  auto* p = reinterpret_cast<unsigned char*>(h.data());
  memcpy(p, segment_magic, 8);
  store<uint32_t>(p + 8, segment_version);
  auto id = directory_id.substr(0, id_bytes_max);
  store<uint32_t>(p + 12, static_cast<uint32_t>(id.size()));
  store<uint64_t>(p + 16, first_seq);
  memcpy(p + 24, id.data(), id.size());
  store<uint32_t>(p + 120, static_cast<uint32_t>(bytes / 4096));
  store<uint32_t>(p + 124, crc32c(p, 124));
  return h;
}

// Empty when the header is sound and names `first_seq` and `directory_id`.
std::string check_segment_header(const unsigned char* p, size_t size, uint64_t first_seq,
                                 const std::string& directory_id) {
  if (size < node_log::segment_header_bytes) return "shorter than its header";
  if (memcmp(p, segment_magic, 8) != 0) return "not a Holdfast log segment";
  if (load<uint32_t>(p + 124) != crc32c(p, 124)) return "its header fails its checksum";
  if (load<uint32_t>(p + 8) != segment_version)
    return "log format " + std::to_string(load<uint32_t>(p + 8)) + " is not supported";
  if (load<uint64_t>(p + 16) != first_seq) return "its header names another first record";
  auto id_len = std::min<size_t>(load<uint32_t>(p + 12), id_bytes_max);
  std::string id(reinterpret_cast<const char*>(p + 24), id_len);
  if (!directory_id.empty() && id != directory_id.substr(0, id_bytes_max))
    return "it belongs to data directory " + id + ", not " + directory_id;
  if (auto pages = load<uint32_t>(p + 120); pages != 0 && size != uint64_t{pages} * 4096)
    return "it is " + std::to_string(size) + " bytes long but was made " +
           std::to_string(uint64_t{pages} * 4096) + " bytes long: it was cut or extended";
  return {};
}

constexpr const char* newest_name = "newest";

// Records `first_seq` in the `newest` file: written aside, synced, renamed.
bool write_newest(const std::string& dir, uint64_t first_seq) {
  auto path = dir + "/" + newest_name, tmp = path + ".tmp";
  unlink(tmp.c_str());  // a leftover, whatever it is: opening a FIFO there would block
  int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  auto text = std::to_string(first_seq) + "\n";
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    unlink(tmp.c_str());
    return false;
  }
  int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ok = d >= 0 && fsync(d) == 0;
  if (d >= 0) close(d);
  return ok;
}

// The newest segment that has held a record, as recorded in the log directory's
// `newest` file; 0 when there is none. False when the file cannot be read (not a regular
// file, say).
bool read_newest(const std::string& dir, uint64_t& first_seq, std::string& error) {
  std::string text;
  first_seq = 0;
  if (read_regular(dir + "/" + newest_name, 64, text, error) == read_status::refused) return false;
  first_seq = std::strtoull(text.c_str(), nullptr, 10);
  return true;
}

struct parsed {
  bool valid = false;
  uint64_t seq = 0;
  size_t bytes = 0;  // whole record with padding
  const unsigned char* payload = nullptr;
  uint32_t length = 0;
};

parsed parse_record(const unsigned char* base, size_t size, size_t offset) {
  parsed r;
  if (offset + node_log::record_header_bytes > size) return r;
  const unsigned char* p = base + offset;
  if (load<uint32_t>(p) != record_magic) return r;
  uint32_t length = load<uint32_t>(p + 4);
  if (length > payload_bytes_max) return r;
  size_t bytes = node_log::record_bytes(length);
  if (offset + bytes > size) return r;
  uint32_t crc = crc32c(p + 4, 12);
  crc = crc32c(p + node_log::record_header_bytes, length, crc);
  if (crc != load<uint32_t>(p + 16)) return r;
  r.valid = true;
  r.seq = load<uint64_t>(p + 8);
  r.bytes = bytes;
  r.payload = p + node_log::record_header_bytes;
  r.length = length;
  return r;
}

// One segment mapped for reading.
struct mapped {
  int fd = -1;
  const unsigned char* data = nullptr;
  size_t size = 0;
  ~mapped() {
    if (data) munmap(const_cast<unsigned char*>(data), size);
    if (fd >= 0) close(fd);
  }
  bool open(const std::string& path, std::string& error) {
    fd = open_regular(path, O_RDONLY, error);
    if (fd < 0) return false;
    struct stat st;
    if (fstat(fd, &st) != 0) {
      error = errno_text(path);
      return false;
    }
    size = static_cast<size_t>(st.st_size);
    if (size == 0) return true;
    void* m = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
      error = errno_text("mmap " + path);
      data = nullptr;
      return false;
    }
    data = static_cast<const unsigned char*>(m);
    return true;
  }
};

// The end of the non-zero bytes in [from, size).
size_t data_end(const unsigned char* p, size_t from, size_t size) {
  size_t end = size;
  while (end > from && end % 8 != 0 && p[end - 1] == 0) --end;
  while (end >= from + 8 && load<uint64_t>(p + end - 8) == 0) end -= 8;
  while (end > from && p[end - 1] == 0) --end;
  return end;
}

// A valid record with sequence number `seq` at an 8-aligned offset in [from, size)? Only
// the record right after a damaged one counts as evidence of damage: bytes inside a
// torn record's payload (a client's hold id, say) that look like some other record do
// not.
bool valid_record_after(const unsigned char* p, size_t from, size_t size, uint64_t seq) {
  for (size_t o = (from + 7) & ~size_t{7}; o + node_log::record_header_bytes <= size; o += 8) {
    if (load<uint32_t>(p + o) != record_magic) continue;
    auto r = parse_record(p, size, o);
    if (r.valid && r.seq == seq) return true;
  }
  return false;
}

bool write_all(int fd, const void* data, size_t n, uint64_t offset) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return true;
}

bool write_zeros(int fd, uint64_t from, uint64_t to) {
  static const std::vector<char> zeros(1 << 20, '\0');
  while (from < to) {
    auto n = std::min<uint64_t>(zeros.size(), to - from);
    if (!write_all(fd, zeros.data(), n, from)) return false;
    from += n;
  }
  return true;
}

struct listed {
  std::string name;
  uint64_t first_seq;
};

bool list_segments(const std::string& dir, bool remove_temporaries, std::vector<listed>& out,
                   std::string& error) {
  DIR* d = opendir(dir.c_str());
  if (!d) {
    error = errno_text(dir);
    return false;
  }
  while (auto* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    uint64_t first = 0;
    if (parse_segment_name(name, first)) {
      out.push_back({name, first});
    } else if (name == newest_name) {
      continue;
    } else if ((name.size() == 28 && name.compare(24, 4, ".tmp") == 0 &&
                parse_segment_name(name.substr(0, 24), first)) ||
               name == std::string(newest_name) + ".tmp") {
      // A segment or `newest` file whose creation never finished.
      if (remove_temporaries) unlink((dir + "/" + name).c_str());
    } else {
      closedir(d);
      error = dir + "/" + name + " is not a log segment: the log directory holds only segments";
      return false;
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end(),
            [](const listed& a, const listed& b) { return a.first_seq < b.first_seq; });
  return true;
}

}  // namespace

std::string node_log::segment_name(uint64_t first_seq) {
  char name[32];
  snprintf(name, sizeof name, "%020llu.log", static_cast<unsigned long long>(first_seq));
  return name;
}

std::unique_ptr<node_log> node_log::open(const log_options& options, uint64_t after_seq,
                                         const replay_fn& replay, log_recovery& report,
                                         std::string& error) {
  std::unique_ptr<node_log> log(new node_log(options));
  const auto& dir = options.directory;
  if (!options.read_only && mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    error = errno_text("create " + dir);
    return nullptr;
  }
  std::vector<listed> names;
  if (!list_segments(dir, !options.read_only, names, error)) return nullptr;
  report = log_recovery{};
  report.segments = names.size();
  uint64_t newest = 0;
  if (!read_newest(dir, newest, error)) return nullptr;
  if (newest != 0) {
    bool present = false;
    for (auto& n : names) present = present || n.first_seq == newest;
    if (!present) {
      error = "log " + dir + ": its newest segment (" + segment_name(newest) +
              ", which held acknowledged records) is missing; restore the directory from a backup";
      return nullptr;
    }
  }
  uint64_t expected = 0;  // the next record's seq, 0 until the first record
  bool ended = false;     // a torn tail was found: nothing valid may follow
  for (size_t i = 0; i < names.size(); ++i) {
    const auto path = dir + "/" + names[i].name;
    mapped m;
    if (!m.open(path, error)) return nullptr;
    if (auto why = check_segment_header(m.data, m.size, names[i].first_seq, options.directory_id);
        !why.empty()) {
      error = "log segment " + path + ": " + why;
      return nullptr;
    }
    segment seg{path, names[i].first_seq, 0, m.size};
    size_t o = segment_header_bytes;
    for (;;) {
      auto r = parse_record(m.data, m.size, o);
      if (r.valid && !ended && (expected == 0 || r.seq == expected)) {
        if (expected == 0 && r.seq > after_seq + 1) {
          error = "log " + dir + " starts at record " + std::to_string(r.seq) +
                  " but the snapshot covers only up to " + std::to_string(after_seq) +
                  ": records are missing; restore the directory from a backup";
          return nullptr;
        }
        if (seg.last_seq == 0 && r.seq != seg.first_seq) {
          error = "log segment " + path + " starts with record " + std::to_string(r.seq) +
                  ", not " + std::to_string(seg.first_seq) + ": the log is damaged";
          return nullptr;
        }
        if (r.seq > after_seq) {
          std::string why;
          std::string_view payload(reinterpret_cast<const char*>(r.payload), r.length);
          if (!replay(r.seq, payload, why)) {
            error = "log segment " + path + " record " + std::to_string(r.seq) + ": " + why;
            return nullptr;
          }
          report.replayed++;
        }
        if (report.first_seq == 0) report.first_seq = r.seq;
        report.last_seq = r.seq;
        seg.last_seq = r.seq;
        expected = r.seq + 1;
        o += r.bytes;
        continue;
      }
      if (r.valid) {
        error = "log segment " + path + " offset " + std::to_string(o) + ": record " +
                std::to_string(r.seq) + " where " + std::to_string(expected) +
                " belongs: the log is damaged; restore the directory from a backup";
        return nullptr;
      }
      auto end = m.data ? data_end(m.data, o, m.size) : o;
      if (end <= o) break;  // the rest of the segment was never written
      // Damaged, or the tail of an append that never finished. A torn tail is the last
      // thing written: any valid record after it means the damage is inside the log.
      // The damaged record is `expected` (or, before any record, the segment's first).
      uint64_t next = (expected != 0 ? expected : seg.first_seq) + 1;
      bool later = valid_record_after(m.data, o + 8, m.size, next);
      // A newer segment exists only because the append after this record had begun
      // (rotation happens then), and the first record of the newest segment was
      // acknowledged before `newest` named it: either way this record was complete.
      if (i + 1 < names.size() || (seg.last_seq == 0 && seg.first_seq <= newest)) later = true;
      for (size_t j = i + 1; !later && j < names.size(); ++j) {
        mapped n;
        std::string ignored;
        if (n.open(dir + "/" + names[j].name, ignored) && n.data)
          later = valid_record_after(n.data, segment_header_bytes, n.size, next);
      }
      if (later || ended) {
        error = "log segment " + path + " offset " + std::to_string(o) + ": record " +
                std::to_string(expected) +
                " fails its checksum and later records exist: the log is damaged before "
                "its tail; restore the directory from a backup";
        return nullptr;
      }
      report.torn_bytes = end - o;
      report.torn_at = path + " " + std::to_string(o);
      if (!options.read_only) {
        std::string problem;
        int fd = open_regular(path, O_RDWR, problem);
        bool cut = fd >= 0 && write_zeros(fd, o, end) && fdatasync(fd) == 0;
        if (fd >= 0) close(fd);
        if (!cut) {
          error = fd < 0 ? problem : errno_text("cut the torn tail of " + path);
          return nullptr;
        }
      }
      ended = true;
      break;
    }
    if (seg.last_seq != 0) log->offset_ = o;  // the writer continues after the last record
    log->segments_.push_back(seg);
  }
  // A log without records starts where its first segment says (a backup's copy of an
  // idle node's log is one empty segment named after the snapshot).
  if (report.last_seq == 0 && !log->segments_.empty()) {
    if (log->segments_.front().first_seq > after_seq + 1) {
      error = "log " + dir + " starts at record " + std::to_string(log->segments_.front().first_seq) +
              " but the snapshot covers only up to " + std::to_string(after_seq) +
              ": records are missing; restore the directory from a backup";
      return nullptr;
    }
    report.last_seq = log->segments_.front().first_seq - 1;
  }
  if (report.last_seq < after_seq) {
    error = "log " + dir + " ends at record " + std::to_string(report.last_seq) +
            " but the snapshot covers up to " + std::to_string(after_seq) +
            ": the log lost records it had synced; restore the directory from a backup";
    return nullptr;
  }
  log->last_seq_ = report.last_seq;
  if (options.read_only) return log;
  log->newest_ = newest;
  // Segments without records were created by a rotation whose record never landed:
  // they are removed and the writer continues where the records end.
  for (auto it = log->segments_.begin(); it != log->segments_.end();) {
    if (it->last_seq != 0) {
      ++it;
      continue;
    }
    if (unlink(it->path.c_str()) != 0) {
      error = errno_text("remove " + it->path);
      return nullptr;
    }
    it = log->segments_.erase(it);
  }
  if (log->segments_.empty()) {
    if (!log->start_segment(after_seq + 1, 0, error)) return nullptr;
    log->last_seq_ = after_seq;
  } else {
    auto& cur = log->segments_.back();
    log->fd_ = open_regular(cur.path, O_RDWR, error);
    if (log->fd_ < 0) return nullptr;
    // A log from before `newest` existed, or one whose last rotation did not record it.
    if (cur.first_seq > newest) {
      if (!write_newest(dir, cur.first_seq)) {
        error = errno_text("write " + dir + "/" + newest_name);
        return nullptr;
      }
      log->newest_ = cur.first_seq;
    }
  }
  fsync_directory(dir);
  return log;
}

node_log::~node_log() {
  if (fd_ >= 0) close(fd_);
}

bool node_log::start_segment(uint64_t first_seq, uint64_t min_bytes, std::string& error) {
  const auto& dir = options_.directory;
  auto name = segment_name(first_seq);
  auto path = dir + "/" + name, tmp = path + ".tmp";
  uint64_t bytes = std::max<uint64_t>(options_.segment_bytes, segment_header_bytes + min_bytes);
  bytes = (bytes + 4095) & ~uint64_t{4095};
  unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = errno_text(tmp);
    return false;
  }
  auto header = segment_header(first_seq, options_.directory_id, bytes);
  // Written zeros rather than fallocate: an fdatasync into unwritten extents also
  // commits the extent conversion, about 1.6x the cost per append measured here.
  bool ok = write_all(fd, header.data(), header.size(), 0) &&
            write_zeros(fd, header.size(), bytes) && fsync(fd) == 0;
  if (!ok) {
    int e = errno;
    error = errno_text(tmp);
    close(fd);
    unlink(tmp.c_str());
    errno = e;
    return false;
  }
  bool renamed = rename(tmp.c_str(), path.c_str()) == 0;
  if (!renamed || !fsync_directory(dir)) {
    int e = errno;
    error = errno_text(path);
    close(fd);
    // A segment that was renamed into place but is not used must not stay: a later
    // rotation would leave it empty between segments with records.
    unlink(renamed ? path.c_str() : tmp.c_str());
    errno = e;
    return false;
  }
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
  offset_ = segment_header_bytes;
  std::lock_guard<std::mutex> guard(mutex_);
  segments_.push_back({path, first_seq, 0, bytes});
  return true;
}

store_status node_log::append(std::string_view payload, uint64_t& seq, std::string& error) {
  if (broken_) {
    error = "the log failed to undo a failed append; restart the node";
    return store_status::io_error;
  }
  if (payload.size() > payload_bytes_max) {
    error = "log record too large";
    return store_status::rejected;
  }
  auto bytes = record_bytes(payload.size());
  uint64_t next = last_seq_ + 1;
  uint64_t capacity;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    capacity = segments_.back().size;
  }
  if (offset_ + bytes > capacity) {
    errno = 0;
    if (!start_segment(next, bytes, error)) return from_errno(errno);
  }
  unsigned char header[record_header_bytes] = {};
  store<uint32_t>(header, record_magic);
  store<uint32_t>(header + 4, static_cast<uint32_t>(payload.size()));
  store<uint64_t>(header + 8, next);
  uint32_t crc = crc32c(header + 4, 12);
  store<uint32_t>(header + 16, crc32c(payload.data(), payload.size(), crc));
  static const char padding[8] = {};
  iovec iov[3] = {{header, sizeof header},
                  {const_cast<char*>(payload.data()), payload.size()},
                  {const_cast<char*>(padding), bytes - record_header_bytes - payload.size()}};
  ssize_t w;
  do {
    w = pwritev(fd_, iov, 3, static_cast<off_t>(offset_));
  } while (w < 0 && errno == EINTR);
  bool ok = w == static_cast<ssize_t>(bytes);
  if (!ok && w >= 0) errno = ENOSPC;  // a short write: the space ran out
  if (ok && options_.sync) {
    auto started = std::chrono::steady_clock::now();
    ok = fdatasync(fd_) == 0;
    sync_us_.record(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count());
  }
  if (!ok) {
    int e = errno == 0 ? EIO : errno;
    error = std::string("log append: ") + strerror(e);
    // Nothing of a failed append may be replayed: the space is zeroed again. If even that
    // fails the record may still be on disk and replayed at the next start: its callers
    // hear outcome_unknown, and the log takes no more appends.
    if (!write_zeros(fd_, offset_, offset_ + bytes) || fdatasync(fd_) != 0) {
      broken_ = true;
      return store_status::outcome_unknown;
    }
    return from_errno(e);
  }
  offset_ += bytes;
  last_seq_ = next;
  seq = next;
  uint64_t first_here = 0;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (segments_.back().last_seq == 0) first_here = segments_.back().first_seq;
    segments_.back().last_seq = next;
  }
  // The first record of a new segment: from now on that segment must exist at start
  // (a deleted newest segment is damage, not an empty log). If this fails the check is
  // only weaker; the record is durable either way.
  if (first_here != 0 && write_newest(options_.directory, first_here))
    newest_.store(first_here);
  return store_status::ok;
}

size_t node_log::drop_through(uint64_t seq) {
  // A backup reading the log holds a shared lock on its directory: nothing is deleted
  // until it is done (the next snapshot tries again).
  int dir_fd = ::open(options_.directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return 0;
  if (flock(dir_fd, LOCK_EX | LOCK_NB) != 0) {
    close(dir_fd);
    return 0;
  }
  // Oldest first, never the segment being written, only segments whose own last record
  // the snapshot covers; a segment that cannot be deleted stops it (no gap is left).
  size_t deleted = 0;
  for (;;) {
    std::string path;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      if (segments_.size() < 2) break;
      auto& oldest = segments_.front();
      auto newest = newest_.load();
      if (oldest.last_seq == 0 || oldest.last_seq > seq || (newest != 0 && oldest.first_seq >= newest))
        break;
      path = oldest.path;
    }
    if (unlink(path.c_str()) != 0) break;
    std::lock_guard<std::mutex> guard(mutex_);
    segments_.erase(segments_.begin());
    ++deleted;
  }
  if (deleted > 0) fsync(dir_fd);
  close(dir_fd);
  return deleted;
}

uint64_t node_log::last_seq() const { return last_seq_.load(); }

size_t node_log::segment_count() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return segments_.size();
}

std::vector<std::string> node_log::segment_files() const {
  std::lock_guard<std::mutex> guard(mutex_);
  std::vector<std::string> out;
  for (auto& s : segments_) out.push_back(s.path);
  return out;
}

bool node_log::copy(const std::string& source, const std::string& target,
                    const std::string& directory_id, uint64_t after_seq, uint64_t& last_copied,
                    std::string& error) {
  std::vector<listed> names;
  if (!list_segments(source, false, names, error)) return false;
  if (mkdir(target.c_str(), 0755) != 0) {
    error = errno_text("create " + target);
    return false;
  }
  // Opened before anything is read: a segment the node deletes meanwhile stays readable.
  std::vector<std::unique_ptr<mapped>> maps;
  for (auto& n : names) {
    auto m = std::make_unique<mapped>();
    if (!m->open(source + "/" + n.name, error)) return false;
    maps.push_back(std::move(m));
  }
  last_copied = after_seq;
  int out = -1;
  uint64_t out_offset = 0, last_offset = 0, out_seq = 0;
  std::pair<const mapped*, size_t> last_source{nullptr, 0};  // where the last record was read
  auto finish = [&](bool ok) {
    if (out >= 0) {
      ok = ok && fsync(out) == 0;
      close(out);
    }
    return ok && fsync_directory(target);
  };
  for (size_t i = 0; i < names.size(); ++i) {
    auto& m = *maps[i];
    if (!check_segment_header(m.data, m.size, names[i].first_seq, directory_id).empty()) break;
    bool stop = false;
    for (size_t o = segment_header_bytes;;) {
      auto r = parse_record(m.data, m.size, o);
      if (!r.valid || r.seq != last_copied + 1) {
        // Older than the copy needs: skip; anything else ends the consistent prefix.
        if (r.valid && r.seq <= last_copied) {
          o += r.bytes;
          continue;
        }
        stop = !r.valid ? data_end(m.data, o, m.size) > o : true;
        break;
      }
      if (out < 0) {
        auto path = target + "/" + segment_name(r.seq);
        out = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
        auto header = segment_header(r.seq, directory_id, 0);
        if (out < 0 || !write_all(out, header.data(), header.size(), 0)) {
          error = errno_text(path);
          finish(false);
          return false;
        }
        out_seq = r.seq;
        out_offset = segment_header_bytes;
      }
      if (!write_all(out, m.data + o, r.bytes, out_offset)) {
        error = errno_text("write " + target);
        finish(false);
        return false;
      }
      last_offset = out_offset;
      last_source = {&m, o};
      out_offset += r.bytes;
      last_copied = r.seq;
      o += r.bytes;
    }
    if (stop) break;
  }
  // Only the last record can be one whose fdatasync had not returned: if it failed,
  // the node zeroes the record at once. Look again after a moment; a record that is
  // gone was never acknowledged and leaves the copy.
  if (out >= 0 && last_source.first && last_copied > after_seq) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto again = parse_record(last_source.first->data, last_source.first->size, last_source.second);
    if (!again.valid || again.seq != last_copied) {
      if (ftruncate(out, static_cast<off_t>(last_offset)) != 0) {
        error = errno_text("truncate " + target);
        finish(false);
        return false;
      }
      out_offset = last_offset;
      --last_copied;
    }
  }
  if (out < 0) {
    // No record to copy: an empty segment where the next record goes.
    auto path = target + "/" + segment_name(last_copied + 1);
    out = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    out_seq = last_copied + 1;
    out_offset = segment_header_bytes;
    if (out < 0) {
      error = errno_text(path);
      finish(false);
      return false;
    }
  }
  // The copy's segment, like any, is a whole number of pages and says how many.
  uint64_t size = (out_offset + 4095) & ~uint64_t{4095};
  auto header = segment_header(out_seq, directory_id, size);
  if (ftruncate(out, static_cast<off_t>(size)) != 0 ||
      !write_all(out, header.data(), header.size(), 0)) {
    error = errno_text("write " + target);
    finish(false);
    return false;
  }
  if (!finish(true) || (last_copied >= out_seq && !write_newest(target, out_seq))) {
    error = errno_text("sync " + target);
    return false;
  }
  return true;
}

}  // namespace holdfast
