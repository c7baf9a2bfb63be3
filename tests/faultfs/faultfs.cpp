#include "faultfs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <stdexcept>

#include "faultfs_format.hpp"

namespace holdfast::faultfs {

namespace fs = std::filesystem;
namespace fmt = format;

namespace {

constexpr uint64_t page_size = 4096;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("faultfs: " + what + ": " + std::strerror(errno));
}

// RAII fd; the harness runs in the test process, not under the shim.
struct fd_guard {
  int fd;
  explicit fd_guard(int f) : fd(f) {}
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
};

int open_or_fail(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) fail("open " + path);
  return fd;
}

void pwrite_all(int fd, const char* data, size_t n, uint64_t offset, const std::string& what) {
  while (n > 0) {
    ssize_t r = ::pwrite(fd, data, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail("write " + what);
    data += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

bool pread_all(int fd, void* data, size_t n, uint64_t offset) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Portable [0, 1) draw: the same seed gives the same choices with any standard library.
double uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

void restore_file(const options& opts, const std::string& rel, std::mt19937_64& rng, double keep,
                  restore_report& report) {
  std::string state = opts.state_dir + "/" + fmt::encode_name(rel);
  fs::path target = fs::path(opts.data_dir) / rel;
  // Directory entries count as synced, so the file exists even if something removed it.
  fs::create_directories(target.parent_path());
  fd_guard out(open_or_fail(target.string(), O_WRONLY | O_CREAT));
  {
    fd_guard in(open_or_fail(state + fmt::durable_suffix, O_RDONLY));
    std::vector<char> buf(1 << 16);
    uint64_t offset = 0;
    for (;;) {
      ssize_t r = ::pread(in.fd, buf.data(), buf.size(), static_cast<off_t>(offset));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail("read " + state + fmt::durable_suffix);
      if (r == 0) break;
      pwrite_all(out.fd, buf.data(), static_cast<size_t>(r), offset, target.string());
      offset += static_cast<uint64_t>(r);
    }
    if (::ftruncate(out.fd, static_cast<off_t>(offset)) != 0) fail("truncate " + target.string());
  }
  ++report.files;

  std::string pending = state + fmt::pending_suffix;
  int jfd = ::open(pending.c_str(), O_RDONLY | O_CLOEXEC);
  if (jfd < 0 && errno == ENOENT) return;
  if (jfd < 0) fail("open " + pending);
  fd_guard journal(jfd);
  std::vector<char> data;
  for (uint64_t pos = 0;;) {
    fmt::record_header h;
    // A torn record at the end was an append cut short by SIGKILL: the write never returned.
    if (!pread_all(journal.fd, &h, sizeof h, pos) || h.magic != fmt::record_magic) break;
    data.resize(h.length);
    if (!pread_all(journal.fd, data.data(), data.size(), pos + sizeof h)) break;
    pos += sizeof h + h.length;
    ++report.records;
    bool durable = h.flags & fmt::flag_durable;
    if (h.type == fmt::record_size) {
      if (!durable) ++report.unsynced_pages;
      if (durable || uniform(rng) < keep) {
        if (!durable) ++report.kept_pages;
        if (::ftruncate(out.fd, static_cast<off_t>(h.offset)) != 0) fail("truncate " + rel);
      }
      continue;
    }
    if (h.type != fmt::record_write) continue;
    if (durable) {
      pwrite_all(out.fd, data.data(), data.size(), h.offset, target.string());
      continue;
    }
    for (uint64_t done = 0; done < h.length;) {
      uint64_t at = h.offset + done;
      uint64_t n = std::min(h.length - done, page_size - at % page_size);
      ++report.unsynced_pages;
      if (uniform(rng) < keep) {
        ++report.kept_pages;
        pwrite_all(out.fd, data.data() + done, n, at, target.string());
      }
      done += n;
    }
  }
}

}  // namespace

std::string restore_report::to_string() const {
  return std::to_string(files) + " files, " + std::to_string(records) + " journal records, " +
         std::to_string(kept_pages) + "/" + std::to_string(unsynced_pages) + " unsynced pages kept";
}

std::vector<std::string> child_environment(const options& opts) {
  fs::create_directories(opts.state_dir);
  std::vector<std::string> env{
      "LD_PRELOAD=" + opts.shim_path,
      "FAULTFS_DIR=" + opts.data_dir,
      "FAULTFS_STATE=" + opts.state_dir,
      "FAULTFS_EXCLUDE=" + opts.exclude,
  };
  if (!opts.control_path.empty()) env.push_back("FAULTFS_CONTROL=" + opts.control_path);
  return env;
}

void set_fault(const options& opts, const std::string& mode) {
  if (mode != "normal" && mode != "enospc" && mode != "short" && mode != "eio-sync" && mode != "stall-sync")
    throw std::invalid_argument("faultfs: unknown fault mode '" + mode + "'");
  if (opts.control_path.empty()) throw std::invalid_argument("faultfs: no control_path");
  // The shim caches the mode keyed by (inode, size, mtime). Inode numbers get reused and the
  // kernel's timestamps are coarse, so force every version's mtime past the previous one.
  timespec mtime{};
  clock_gettime(CLOCK_REALTIME, &mtime);
  struct stat old;
  if (::stat(opts.control_path.c_str(), &old) == 0 &&
      (old.st_mtim.tv_sec > mtime.tv_sec ||
       (old.st_mtim.tv_sec == mtime.tv_sec && old.st_mtim.tv_nsec >= mtime.tv_nsec))) {
    mtime = old.st_mtim;
    if (++mtime.tv_nsec == 1'000'000'000) {
      mtime.tv_nsec = 0;
      ++mtime.tv_sec;
    }
  }
  std::string tmp = opts.control_path + ".tmp";
  fd_guard fd(open_or_fail(tmp, O_WRONLY | O_CREAT | O_TRUNC));
  std::string line = mode + "\n";
  pwrite_all(fd.fd, line.data(), line.size(), 0, tmp);
  timespec times[2] = {mtime, mtime};
  if (::futimens(fd.fd, times) != 0) fail("futimens " + tmp);
  if (::rename(tmp.c_str(), opts.control_path.c_str()) != 0) fail("rename " + tmp);
}

restore_report power_loss(const options& opts, uint64_t seed, double keep_probability) {
  restore_report report;
  if (!fs::exists(opts.state_dir)) return report;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(opts.state_dir)) {
    std::string name = entry.path().filename().string();
    if (ends_with(name, fmt::durable_suffix))
      names.push_back(name.substr(0, name.size() - std::strlen(fmt::durable_suffix)));
  }
  std::sort(names.begin(), names.end());
  std::mt19937_64 rng(seed);
  for (const std::string& name : names)
    restore_file(opts, fmt::decode_name(name), rng, keep_probability, report);
  // Everything restored is now the on-disk truth: the next run snapshots it afresh.
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(opts.state_dir)) {
    std::string name = entry.path().filename().string();
    for (const char* suffix : {fmt::durable_suffix, fmt::pending_suffix, ".durable.tmp"})
      if (ends_with(name, suffix)) stale.push_back(entry.path());
  }
  for (const fs::path& path : stale) fs::remove(path);
  return report;
}

}  // namespace holdfast::faultfs
