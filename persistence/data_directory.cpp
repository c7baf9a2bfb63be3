#include "persistence/data_directory.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "protocol/regular_file.hpp"

namespace holdfast {
namespace {

constexpr const char* lock_name = "holdfast.lock";
constexpr const char* marker_name = "holdfast.format";

bool empty_directory(const std::string& path) {
  DIR* dir = opendir(path.c_str());
  if (!dir) return false;
  bool empty = true;
  while (auto* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") empty = false;
  }
  closedir(dir);
  return empty;
}

std::string errno_text() { return std::strerror(errno); }

// holdfast.format and holdfast.lock are a few dozen bytes.
constexpr size_t small_file_bytes_max = 4096;

// Every file in `log_dir` but temporaries (which a writer removes and a reader skips) is
// a file the log reads.
std::string log_files_regular(const std::string& log_dir) {
  DIR* dir = opendir(log_dir.c_str());
  if (!dir) return log_dir + ": " + errno_text();
  std::string problem;
  while (auto* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." ||
        (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0))
      continue;
    problem = regular_or_absent(log_dir + "/" + name);
    if (!problem.empty()) break;
  }
  closedir(dir);
  return problem;
}

bool fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = fsync(fd) == 0;
  close(fd);
  return ok;
}

}  // namespace

std::string data_directory::new_id() {
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> d;
  uint64_t a = (uint64_t{rd()} << 32) ^ rd(), b = (uint64_t{rd()} << 32) ^ rd();
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  return buf;
}

std::unique_ptr<data_directory> data_directory::open(const std::string& path, mode m,
                                                     std::string& error) {
  std::unique_ptr<data_directory> d(new data_directory);
  d->path_ = path;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT || m == mode::read_only) {
      error = path + ": " + errno_text() + " (not a Holdfast data directory)";
      return nullptr;
    }
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) {
      error = "cannot create " + path + ": " + ec.message();
      return nullptr;
    }
  } else if (!S_ISDIR(st.st_mode)) {
    error = path + " is not a directory";
    return nullptr;
  }
  if (m == mode::write) {
    // The lock is on the directory itself, which cannot be deleted while it holds the
    // data; holdfast.lock only says who holds it.
    d->lock_fd_ = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->lock_fd_ < 0) {
      error = "cannot open " + path + ": " + errno_text();
      return nullptr;
    }
    if (flock(d->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      std::string holder, unreadable;
      read_regular(d->file(lock_name), small_file_bytes_max, holder, unreadable);
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      error = path + " is in use by another Holdfast process" +
              (holder.empty() ? std::string() : " (pid " + holder + ")") +
              ": one node or writer per data directory";
      return nullptr;
    }
  }
  // A node and `holdfast check` refuse the same directories: both start here.
  if (auto problem = d->inspect(); !problem.empty()) {
    error = problem;
    return nullptr;
  }
  if (m == mode::write) {
    auto pid = std::to_string(getpid()) + "\n";
    std::string problem;
    int holder = open_regular(d->file(lock_name), O_WRONLY | O_CREAT | O_TRUNC, problem);
    bool written = holder >= 0 && write(holder, pid.data(), pid.size()) == static_cast<ssize_t>(pid.size());
    if (holder >= 0) close(holder);
    if (!written) {
      error = "cannot write " + d->file(lock_name) + ": " + (holder < 0 ? problem : errno_text());
      return nullptr;
    }
  }
  // Format 1 (LMDB alone, no log) is upgraded by a writer: it gets its log directory.
  auto version = d->marked_format_;
  if (version != 0 && version != format && !(version == 1 && m == mode::write)) {
    error = d->file(marker_name) + " names format " + std::to_string(version) +
            "; this Holdfast reads format " + std::to_string(format) +
            (version == 1 ? " (start a node on it once to upgrade it)" : "");
    return nullptr;
  }
  // check reads what a first start left too: it judges it as the node would.
  if (version == 0 && m == mode::read_only && !d->first_start_leftovers_) {
    error = path + " is not a Holdfast data directory (no " + marker_name + ")";
    return nullptr;
  }
  return d;
}

std::string data_directory::inspect() {
  for (const char* name : {lock_name, marker_name, "data.mdb", "lock.mdb"})
    if (auto problem = regular_or_absent(file(name)); !problem.empty()) return problem;
  const auto log_dir = file("log");
  struct stat st;
  if (stat(log_dir.c_str(), &st) == 0) {  // whether it must be there is storage's call
    if (!S_ISDIR(st.st_mode)) return log_dir + " is not a directory (" + file_kind(st.st_mode) + ")";
    if (auto problem = log_files_regular(log_dir); !problem.empty()) return problem;
  }
  if (auto problem = read_marker(); !problem.empty() || marked_format_ != 0) return problem;
  return unmarked_contents();
}

std::string data_directory::unmarked_contents() {
  if (fresh()) return {};
  // A first start makes the log directory (empty), then LMDB makes lock.mdb and data.mdb,
  // then the marker is written aside and renamed: a start that died before the rename left
  // some of these, and no record a node acknowledged (it serves only once marked).
  // Whether LMDB's files hold anything is lmdb_env's to say.
  const std::vector<std::string> first_start = {"data.mdb", "lock.mdb",
                                                std::string(marker_name) + ".tmp"};
  struct stat st;
  const bool has_log = stat(file("log").c_str(), &st) == 0;
  if (has_log && fresh(first_start)) {
    first_start_leftovers_ = true;
    return {};
  }
  auto with_log = first_start;
  with_log.push_back("log");
  if (!fresh(with_log)) return path_ + " is not empty and is not a Holdfast data directory";
  if (stat(file("data.mdb").c_str(), &st) == 0)
    return path_ + " has data (data.mdb" + (has_log ? " and a log" : "") +
           ") but no holdfast.format: it lost its directory record; restore it from a "
           "backup or remove the directory";
  return path_ + " has " + (has_log ? "a log" : "LMDB's lock.mdb") +
         " but no data.mdb nor holdfast.format: it lost its data; restore it from a backup or "
         "remove the directory";
}

std::string data_directory::read_marker() {
  std::string marker, problem;
  switch (read_regular(file(marker_name), small_file_bytes_max, marker, problem)) {
    case read_status::refused: return problem;
    case read_status::absent: return {};
    case read_status::ok: break;
  }
  // mark() writes the marker aside, syncs it and renames it into place: no crash leaves
  // it empty or partial. One that is was damaged, and so may be what it vouched for.
  const auto damaged = file(marker_name) + " is " +
                       (marker.find_first_not_of(" \t\r\n") == std::string::npos
                          ? "empty"
                          : "damaged (it names no format and id)") +
                       ", which no crash leaves (it is written aside, synced and renamed): the "
                       "directory was damaged; restore it from a backup";
  std::istringstream in(marker);
  std::string line, key, id;
  unsigned version = 0;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    l >> key;
    if (key == "format") l >> version;
    if (key == "id") l >> id;
  }
  if (version == 0 || id.empty()) return damaged;
  marked_format_ = version;
  marked_id_ = id;
  return {};
}

bool data_directory::in_use(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  close(fd);  // releases the shared lock if it was taken
  return held;
}

data_directory::~data_directory() {
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
}

bool data_directory::fresh(const std::vector<std::string>& also_ignored) const {
  DIR* dir = opendir(path_.c_str());
  if (!dir) return false;
  bool empty = true;
  // LMDB's files count, unless named: whether they are what a first start left is
  // unmarked_contents()'s to say.
  while (auto* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || name == lock_name) continue;
    // The identity (persistence/identity.hpp) is recorded before the data it describes.
    if (name == "identity" || name == "identity.tmp") continue;
    // So is the replica a replacement joins its group as (`holdfast cluster replace`).
    if (name == "group-replica" || name == "group-replica.tmp") continue;
    // The log directory is made first, empty, before anything is marked.
    if (name == "log" && empty_directory(path_ + "/log")) continue;
    if (std::find(also_ignored.begin(), also_ignored.end(), name) != also_ignored.end()) continue;
    empty = false;
  }
  closedir(dir);
  return empty;
}

bool data_directory::mark(const std::string& id, std::string& error) {
  auto tmp = file(std::string(marker_name) + ".tmp");
  unlink(tmp.c_str());  // a leftover, whatever it is: opening a FIFO there would block
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << "holdfast data directory\nformat " << format << "\nid " << id << "\n";
    if (!out.flush()) {
      error = "cannot write " + tmp;
      return false;
    }
  }
  if (!fsync_path(tmp, O_RDONLY) || rename(tmp.c_str(), file(marker_name).c_str()) != 0 ||
      !fsync_path(path_, O_RDONLY | O_DIRECTORY)) {
    error = "cannot write " + file(marker_name) + ": " + errno_text();
    return false;
  }
  marked_id_ = id;
  marked_format_ = format;
  return true;
}

}  // namespace holdfast
