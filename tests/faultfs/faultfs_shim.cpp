// LD_PRELOAD shim that remembers which bytes of the files under FAULTFS_DIR were made durable,
// so that a test can simulate a power loss after SIGKILL (see faultfs.hpp for the semantics
// and the environment variables). Writes go straight through to the real files; on the side
// the shim keeps, per tracked file, STATE/<name>.durable (what survives a power loss) and
// STATE/<name>.pending (a journal of the writes since the last sync).
//
// Internally the shim only ever calls the real libc functions (the `real` table): calling an
// interposed function while holding the mutex would deadlock.
//
// Linux, 64-bit only (off_t == off64_t, so the *64 entry points share the implementation).

// Our definitions must keep their own names: no redirection to *64 symbols, no fortify inlines.
#undef _FILE_OFFSET_BITS
#undef _TIME_BITS
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/aio_abi.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "faultfs_format.hpp"

#define FAULTFS_EXPORT extern "C" __attribute__((visibility("default")))

static_assert(sizeof(off_t) == 8 && sizeof(off64_t) == 8, "the shim supports 64-bit Linux only");

namespace {

namespace fmt = holdfast::faultfs::format;

using open_fn = int (*)(const char*, int, ...);
using openat_fn = int (*)(int, const char*, int, ...);
using open2_fn = int (*)(const char*, int);
using openat2_fn = int (*)(int, const char*, int);
using creat_fn = int (*)(const char*, mode_t);
using write_fn = ssize_t (*)(int, const void*, size_t);
using pwrite_fn = ssize_t (*)(int, const void*, size_t, off_t);
using writev_fn = ssize_t (*)(int, const struct iovec*, int);
using pwritev_fn = ssize_t (*)(int, const struct iovec*, int, off_t);
using pwritev2_fn = ssize_t (*)(int, const struct iovec*, int, off_t, int);
using ftruncate_fn = int (*)(int, off_t);
using truncate_fn = int (*)(const char*, off_t);
using fallocate_fn = int (*)(int, int, off_t, off_t);
using posix_fallocate_fn = int (*)(int, off_t, off_t);
using fd_fn = int (*)(int);
using dup2_fn = int (*)(int, int);
using dup3_fn = int (*)(int, int, int);
using fcntl_fn = int (*)(int, int, ...);
using sync_fn = void (*)();
using unlink_fn = int (*)(const char*);
using unlinkat_fn = int (*)(int, const char*, int);
using rename_fn = int (*)(const char*, const char*);
using renameat_fn = int (*)(int, const char*, int, const char*);
using renameat2_fn = int (*)(int, const char*, int, const char*, unsigned);
using fopen_fn = FILE* (*)(const char*, const char*);
using fdopen_fn = FILE* (*)(int, const char*);
using fclose_fn = int (*)(FILE*);

struct real_functions {
  open_fn open, open64;
  openat_fn openat, openat64;
  open2_fn open_2, open64_2;
  openat2_fn openat_2, openat64_2;
  creat_fn creat, creat64;
  write_fn write;
  pwrite_fn pwrite, pwrite64;
  writev_fn writev;
  pwritev_fn pwritev, pwritev64;
  pwritev2_fn pwritev2, pwritev64v2;
  ftruncate_fn ftruncate, ftruncate64;
  truncate_fn truncate, truncate64;
  fallocate_fn fallocate, fallocate64;
  posix_fallocate_fn posix_fallocate, posix_fallocate64;
  fd_fn fsync, fdatasync, syncfs, close, dup;
  dup2_fn dup2;
  dup3_fn dup3;
  fcntl_fn fcntl, fcntl64;
  sync_fn sync;
  unlink_fn unlink, remove;
  unlinkat_fn unlinkat;
  rename_fn rename;
  renameat_fn renameat;
  renameat2_fn renameat2;
  fopen_fn fopen, fopen64;
  fdopen_fn fdopen;
  fclose_fn fclose;
};
real_functions real;

// One table per tracked file name, shared by all its open descriptions in this process.
struct tracked_file {
  std::string rel;      // path relative to FAULTFS_DIR
  int journal_fd = -1;  // STATE/<name>.pending, O_APPEND
  int users = 0;        // open descriptions plus in-flight path operations
  bool dead = false;    // unlinked or replaced: later writes through old fds are not tracked
};

// Shared by fds created with dup/dup2/fcntl(F_DUPFD), like the kernel's open file description.
struct open_desc {
  tracked_file* file = nullptr;
  int status_flags = 0;  // O_APPEND and O_DSYNC (O_SYNC includes O_DSYNC)
  dev_t dev = 0;         // identity check: fds closed behind our back (fclose, close_range)
  ino_t ino = 0;         //   get reused by other files, which must not be mistaken for ours
  int fds = 0;
};

enum class fault_mode { normal, enospc, short_writes, eio_sync, stall_sync };

struct shim_state {
  bool enabled = false;
  std::string data_dir;   // as configured
  std::mutex root_mu;     // opens run concurrently, outside `mu`
  std::string data_root;  // canonical; empty until the directory exists
  std::string state_dir, state_root;
  std::string control_path;
  std::vector<std::string> exclude;

  std::mutex mu;
  std::unordered_map<std::string, tracked_file*> files;
  // Written through stdio, whose writes use glibc's internal write and so are never journaled:
  // syncing such a file copies all of it.
  std::set<std::string> unjournaled;

  bool control_seen = false;
  struct stat control_stat {};
  fault_mode mode = fault_mode::normal;
  bool disk_full = false;  // set by a short write, cleared when the control file changes
};
shim_state* g = nullptr;  // never freed: writes may still arrive from atexit handlers

// Indexed by fd. RLIMIT_NOFILE cannot exceed fs.nr_open, which defaults to 2^20; higher fds are
// simply never tracked. Zero-initialised BSS: untouched pages cost nothing.
constexpr int max_fds = 1 << 20;
std::atomic<open_desc*> fd_table[max_fds];

std::atomic<bool> ready{false};
pthread_once_t init_once = PTHREAD_ONCE_INIT;

[[noreturn]] void fatal(const char* what) {
  std::string msg = std::string("faultfs_shim: ") + what + ": " + strerror(errno) + "\n";
  if (real.write) real.write(2, msg.data(), msg.size());
  abort();
}

template <class F>
F resolve(const char* name, bool required = true) {
  void* p = dlsym(RTLD_NEXT, name);
  if (!p && required) {
    errno = ENOSYS;
    fatal(name);
  }
  return reinterpret_cast<F>(p);
}

std::string canonical(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) ? std::string(buf) : std::string();
}

void lock_for_fork() {
  if (g) g->mu.lock();
}
void unlock_after_fork() {
  if (g) g->mu.unlock();
}

void init() {
  real.write = resolve<write_fn>("write");
  real.open = resolve<open_fn>("open");
  real.open64 = resolve<open_fn>("open64");
  real.openat = resolve<openat_fn>("openat");
  real.openat64 = resolve<openat_fn>("openat64");
  real.open_2 = resolve<open2_fn>("__open_2");
  real.open64_2 = resolve<open2_fn>("__open64_2");
  real.openat_2 = resolve<openat2_fn>("__openat_2");
  real.openat64_2 = resolve<openat2_fn>("__openat64_2");
  real.creat = resolve<creat_fn>("creat");
  real.creat64 = resolve<creat_fn>("creat64");
  real.pwrite = resolve<pwrite_fn>("pwrite");
  real.pwrite64 = resolve<pwrite_fn>("pwrite64");
  real.writev = resolve<writev_fn>("writev");
  real.pwritev = resolve<pwritev_fn>("pwritev");
  real.pwritev64 = resolve<pwritev_fn>("pwritev64");
  real.pwritev2 = resolve<pwritev2_fn>("pwritev2", false);
  real.pwritev64v2 = resolve<pwritev2_fn>("pwritev64v2", false);
  real.ftruncate = resolve<ftruncate_fn>("ftruncate");
  real.ftruncate64 = resolve<ftruncate_fn>("ftruncate64");
  real.truncate = resolve<truncate_fn>("truncate");
  real.truncate64 = resolve<truncate_fn>("truncate64");
  real.fallocate = resolve<fallocate_fn>("fallocate");
  real.fallocate64 = resolve<fallocate_fn>("fallocate64");
  real.posix_fallocate = resolve<posix_fallocate_fn>("posix_fallocate");
  real.posix_fallocate64 = resolve<posix_fallocate_fn>("posix_fallocate64");
  real.fsync = resolve<fd_fn>("fsync");
  real.fdatasync = resolve<fd_fn>("fdatasync");
  real.syncfs = resolve<fd_fn>("syncfs");
  real.close = resolve<fd_fn>("close");
  real.dup = resolve<fd_fn>("dup");
  real.dup2 = resolve<dup2_fn>("dup2");
  real.dup3 = resolve<dup3_fn>("dup3");
  real.fcntl = resolve<fcntl_fn>("fcntl");
  real.fcntl64 = resolve<fcntl_fn>("fcntl64", false);
  real.sync = resolve<sync_fn>("sync");
  real.unlink = resolve<unlink_fn>("unlink");
  real.remove = resolve<unlink_fn>("remove");
  real.unlinkat = resolve<unlinkat_fn>("unlinkat");
  real.rename = resolve<rename_fn>("rename");
  real.renameat = resolve<renameat_fn>("renameat");
  real.renameat2 = resolve<renameat2_fn>("renameat2", false);
  real.fopen = resolve<fopen_fn>("fopen");
  real.fopen64 = resolve<fopen_fn>("fopen64");
  real.fdopen = resolve<fdopen_fn>("fdopen");
  real.fclose = resolve<fclose_fn>("fclose");

  g = new shim_state;
  const char* dir = getenv("FAULTFS_DIR");
  const char* state = getenv("FAULTFS_STATE");
  if (!dir || !*dir) return;  // not configured: a pure pass-through
  // A half-configured shim would silently track nothing and let crash tests pass vacuously.
  errno = EINVAL;
  if (dir[0] != '/') fatal("FAULTFS_DIR must be absolute");
  if (!state || state[0] != '/') fatal("FAULTFS_STATE must be set and absolute");
  g->data_dir = dir;
  g->state_dir = state;
  if (const char* control = getenv("FAULTFS_CONTROL")) g->control_path = control;
  const char* exclude = getenv("FAULTFS_EXCLUDE");
  std::string list = exclude ? exclude : fmt::default_exclude;
  for (size_t start = 0; start <= list.size();) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) g->exclude.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  mkdir(g->state_dir.c_str(), 0755);
  g->state_root = canonical(g->state_dir);
  if (g->state_root.empty()) fatal("FAULTFS_STATE is not a usable directory");
  g->enabled = true;
  pthread_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
}

// The data directory may be created after start-up, so it is resolved on first use.
std::string data_root() {
  std::lock_guard<std::mutex> lock(g->root_mu);
  if (g->data_root.empty()) g->data_root = canonical(g->data_dir);
  return g->data_root;
}

inline void ensure_init() {
  if (!ready.load(std::memory_order_acquire)) {
    pthread_once(&init_once, init);
    ready.store(true, std::memory_order_release);
  }
}

inline open_desc* lookup(int fd) {
  if (fd < 0 || fd >= max_fds) return nullptr;
  return fd_table[fd].load(std::memory_order_acquire);
}

// Restores errno on scope exit: the bookkeeping after a real call must not clobber its errno.
struct errno_keeper {
  int saved = errno;
  ~errno_keeper() { errno = saved; }
};

std::string durable_path(const std::string& rel) {
  return g->state_root + "/" + fmt::encode_name(rel) + fmt::durable_suffix;
}
std::string pending_path(const std::string& rel) {
  return g->state_root + "/" + fmt::encode_name(rel) + fmt::pending_suffix;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool under(const std::string& path, const std::string& root) {
  return !root.empty() && path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
         path[root.size()] == '/';
}

// Decides whether `path` (relative to dirfd) names a file we track; fills its path relative to
// FAULTFS_DIR and its absolute path with a canonical parent.
bool classify(int dirfd, const char* path, std::string& rel, std::string& abs) {
  if (!g->enabled || !path || !*path) return false;
  std::string p = path;
  if (p[0] != '/') {
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) {
      if (!getcwd(base, sizeof base)) return false;
    } else {
      std::string link = "/proc/self/fd/" + std::to_string(dirfd);
      ssize_t n = readlink(link.c_str(), base, sizeof base - 1);
      if (n <= 0) return false;
      base[n] = '\0';
    }
    p = std::string(base) + "/" + p;
  }
  size_t slash = p.find_last_of('/');
  std::string name = p.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") return false;
  std::string parent = canonical(slash == 0 ? "/" : p.substr(0, slash));
  if (parent.empty()) return false;
  std::string root = data_root();
  std::string rel_parent;
  if (root.empty()) return false;
  if (parent == root) {
  } else if (under(parent, root)) {
    rel_parent = parent.substr(root.size() + 1) + "/";
  } else {
    return false;
  }
  if (parent == g->state_root || under(parent, g->state_root)) return false;
  for (const std::string& suffix : g->exclude)
    if (ends_with(name, suffix)) return false;
  rel = rel_parent + name;
  if (rel.find('%') != std::string::npos) return false;  // would make state names ambiguous
  abs = parent + "/" + name;
  return true;
}

// ---- plain I/O helpers on real functions (mutex held) ----

void write_all(int fd, std::vector<iovec> iov, off_t offset /* -1: append */) {
  size_t i = 0;
  while (i < iov.size()) {
    if (iov[i].iov_len == 0) {
      ++i;
      continue;
    }
    int n = static_cast<int>(std::min<size_t>(iov.size() - i, IOV_MAX));
    ssize_t r = offset < 0 ? real.writev(fd, &iov[i], n) : real.pwritev(fd, &iov[i], n, offset);
    if (r < 0) {
      if (errno == EINTR) continue;
      fatal("writing shim state");
    }
    if (offset >= 0) offset += r;
    for (size_t left = static_cast<size_t>(r); left > 0 && i < iov.size();) {
      size_t step = std::min(left, iov[i].iov_len);
      iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + step;
      iov[i].iov_len -= step;
      left -= step;
      if (iov[i].iov_len == 0) ++i;
    }
  }
}

// The first `bytes` bytes of an iovec array.
std::vector<iovec> prefix(const iovec* iov, int count, size_t bytes) {
  std::vector<iovec> out;
  for (int i = 0; i < count && bytes > 0; ++i) {
    size_t n = std::min(bytes, iov[i].iov_len);
    out.push_back({iov[i].iov_base, n});
    bytes -= n;
  }
  return out;
}

void copy_range(int from, int to, off_t offset, off_t length) {
  std::vector<char> buf(1 << 16);
  while (length > 0) {
    ssize_t r = pread(from, buf.data(), std::min<off_t>(length, buf.size()), offset);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fatal("reading a tracked file");
    if (r == 0) return;
    write_all(to, {{buf.data(), static_cast<size_t>(r)}}, offset);
    offset += r;
    length -= r;
  }
}

int open_state(const std::string& path, int flags) {
  int fd = real.open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) fatal(path.c_str());
  return fd;
}

void journal(tracked_file* f, uint16_t type, uint16_t flags, uint64_t offset,
             const std::vector<iovec>& data) {
  fmt::record_header h{fmt::record_magic, type, flags, offset, 0};
  std::vector<iovec> iov{{&h, sizeof h}};
  for (const iovec& v : data) {
    h.length += v.iov_len;
    iov.push_back(v);
  }
  write_all(f->journal_fd, iov, -1);
}

// The durable image of an existing file nobody under the shim has opened yet is its current
// content: whatever a previous power-loss restore left is durable by construction.
void ensure_durable(const std::string& rel, const std::string& abs) {
  std::string durable = durable_path(rel);
  if (access(durable.c_str(), F_OK) == 0) return;
  int src = real.open(abs.c_str(), O_RDONLY | O_CLOEXEC);
  if (src < 0) return;
  std::string tmp = durable + ".tmp";  // a kill mid-copy must not leave a half image behind
  int dst = open_state(tmp, O_WRONLY | O_CREAT | O_TRUNC);
  struct stat st;
  if (fstat(src, &st) != 0) fatal("fstat");
  copy_range(src, dst, 0, st.st_size);
  real.ftruncate(dst, st.st_size);
  real.close(dst);
  real.close(src);
  real.truncate(pending_path(rel).c_str(), 0);
  if (real.rename(tmp.c_str(), durable.c_str()) != 0) fatal("rename");
}

tracked_file* acquire_file(const std::string& rel) {
  tracked_file*& f = g->files[rel];
  if (!f) {
    f = new tracked_file;
    f->rel = rel;
    f->journal_fd = open_state(pending_path(rel), O_WRONLY | O_CREAT | O_APPEND);
  }
  ++f->users;
  return f;
}

void release_file(tracked_file* f) {
  if (--f->users > 0) return;
  if (f->journal_fd >= 0) real.close(f->journal_fd);
  if (!f->dead) g->files.erase(f->rel);
  delete f;
}

// The name no longer refers to the file we tracked: drop its state (directory entries are
// treated as synced) and stop tracking writes through descriptors still open on the old inode.
void forget_name(const std::string& rel) {
  real.unlink(durable_path(rel).c_str());
  real.unlink(pending_path(rel).c_str());
  g->unjournaled.erase(rel);
  auto it = g->files.find(rel);
  if (it == g->files.end()) return;
  tracked_file* f = it->second;
  g->files.erase(it);
  f->dead = true;
  if (f->journal_fd >= 0) real.close(f->journal_fd);
  f->journal_fd = -1;
}

void move_name(const std::string& from, const std::string& to) {
  forget_name(to);
  real.rename(durable_path(from).c_str(), durable_path(to).c_str());
  real.rename(pending_path(from).c_str(), pending_path(to).c_str());
  if (g->unjournaled.erase(from)) g->unjournaled.insert(to);
  auto it = g->files.find(from);
  if (it == g->files.end()) return;
  tracked_file* f = it->second;
  g->files.erase(it);
  f->rel = to;
  g->files[to] = f;
}

void drop_fd(int fd) {
  if (fd < 0 || fd >= max_fds) return;
  open_desc* d = fd_table[fd].exchange(nullptr, std::memory_order_acq_rel);
  if (!d || --d->fds > 0) return;
  release_file(d->file);
  delete d;
}

void attach_fd(int fd, open_desc* d) {
  if (fd < 0 || fd >= max_fds) return;
  drop_fd(fd);
  ++d->fds;
  fd_table[fd].store(d, std::memory_order_release);
}

// A new fd for something untracked may reuse a number whose close we did not see.
void forget_stale(int fd) {
  if (!lookup(fd)) return;
  std::lock_guard<std::mutex> lock(g->mu);
  drop_fd(fd);
}

// The fd's description if it is a live tracked file (mutex held).
open_desc* tracked(int fd) {
  open_desc* d = lookup(fd);
  if (!d) return nullptr;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_dev != d->dev || st.st_ino != d->ino) {
    drop_fd(fd);
    return nullptr;
  }
  return d->file->dead ? nullptr : d;
}

// Reads the control file again only when it was replaced or changed (the harness gives every
// version a strictly later mtime, so (inode, size, mtime) identifies it).
fault_mode current_fault() {
  if (g->control_path.empty()) return fault_mode::normal;
  struct stat st;
  if (stat(g->control_path.c_str(), &st) != 0) {
    if (g->control_seen) {
      g->control_seen = false;
      g->mode = fault_mode::normal;
      g->disk_full = false;
    }
    return g->mode;
  }
  const struct stat& old = g->control_stat;
  if (g->control_seen && st.st_ino == old.st_ino && st.st_dev == old.st_dev &&
      st.st_size == old.st_size && st.st_mtim.tv_sec == old.st_mtim.tv_sec &&
      st.st_mtim.tv_nsec == old.st_mtim.tv_nsec)
    return g->mode;
  char buf[64] = {};
  int fd = real.open(g->control_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    real.close(fd);
  }
  std::string word;
  for (char* c = buf; *c && !strchr(" \t\r\n", *c); ++c) word += *c;
  g->mode = word == "enospc"     ? fault_mode::enospc
            : word == "short"    ? fault_mode::short_writes
            : word == "eio-sync" ? fault_mode::eio_sync
            : word == "stall-sync" ? fault_mode::stall_sync
                                 : fault_mode::normal;
  g->disk_full = false;
  g->control_stat = st;
  g->control_seen = true;
  return g->mode;
}

// Makes the current content of every range journaled since the last sync (or of the whole file,
// if it was written through stdio) durable, takes the durable size from the real file and empties
// the journal. `src` reads the real file.
void sync_file(const std::string& rel, int src) {
  std::string pending = pending_path(rel);
  int jfd = real.open(pending.c_str(), O_RDONLY | O_CLOEXEC);
  int dfd = open_state(durable_path(rel), O_WRONLY | O_CREAT);
  struct stat st;
  if (fstat(src, &st) != 0) fatal("fstat");
  if (g->unjournaled.count(rel)) copy_range(src, dfd, 0, st.st_size);
  for (off_t pos = 0; jfd >= 0;) {
    fmt::record_header h;
    if (pread(jfd, &h, sizeof h, pos) != static_cast<ssize_t>(sizeof h)) break;
    if (h.magic != fmt::record_magic) break;
    pos += sizeof h + h.length;
    if (h.type == fmt::record_write && static_cast<off_t>(h.offset) < st.st_size)
      copy_range(src, dfd, h.offset, std::min<off_t>(h.length, st.st_size - h.offset));
  }
  if (real.ftruncate(dfd, st.st_size) != 0) fatal("ftruncate");
  real.close(dfd);
  if (jfd >= 0) real.close(jfd);
  real.truncate(pending.c_str(), 0);
}

void sync_everything() {
  DIR* dir = opendir(g->state_root.c_str());
  if (!dir) return;
  std::set<std::string> rels = g->unjournaled;
  while (dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    struct stat st;
    if (!ends_with(name, fmt::pending_suffix)) continue;
    std::string rel = fmt::decode_name(name.substr(0, name.size() - strlen(fmt::pending_suffix)));
    if (stat(pending_path(rel).c_str(), &st) == 0 && st.st_size > 0) rels.insert(rel);
  }
  closedir(dir);
  for (const std::string& rel : rels) {
    int src = real.open((data_root() + "/" + rel).c_str(), O_RDONLY | O_CLOEXEC);
    if (src < 0) continue;
    sync_file(rel, src);
    real.close(src);
  }
}

// ---- interposed operations ----

// `stdio`: the fd belongs to a FILE*, whose writes the shim will not see.
template <class Call>
int do_open(int dirfd, const char* path, int flags, Call call_real, bool stdio = false) {
  ensure_init();
  std::string rel, abs;
  if ((flags & O_PATH) || !classify(dirfd, path, rel, abs)) {
    int fd = call_real();
    if (fd >= 0) forget_stale(fd);
    return fd;
  }
  struct stat before;
  bool existed = lstat(abs.c_str(), &before) == 0;
  if (existed && !S_ISREG(before.st_mode)) {  // fifos must not block while we hold the mutex
    int fd = call_real();
    if (fd >= 0) forget_stale(fd);
    return fd;
  }
  std::lock_guard<std::mutex> lock(g->mu);
  if (existed) ensure_durable(rel, abs);  // before O_TRUNC destroys the content
  int fd = call_real();
  if (fd < 0) return fd;
  errno_keeper keep;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || fd >= max_fds) {
    drop_fd(fd);
    return fd;
  }
  tracked_file* f = acquire_file(rel);
  if (!existed) {  // creation counts as durable: an empty image, nothing pending
    real.close(open_state(durable_path(rel), O_WRONLY | O_CREAT | O_TRUNC));
    real.ftruncate(f->journal_fd, 0);
  } else if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY && before.st_size > 0) {
    journal(f, fmt::record_size, 0, 0, {});
  }
  auto* d = new open_desc;
  d->file = f;
  d->status_flags = flags & (O_APPEND | O_DSYNC);
  d->dev = st.st_dev;
  d->ino = st.st_ino;
  attach_fd(fd, d);
  if (stdio && (flags & O_ACCMODE) != O_RDONLY) g->unjournaled.insert(rel);
  return fd;
}

// The open(2) flags equivalent to an fopen mode.
int stdio_flags(const char* mode) {
  int rw = strchr(mode, '+') ? O_RDWR : O_WRONLY;
  switch (mode[0]) {
    case 'w': return rw | O_CREAT | O_TRUNC;
    case 'a': return rw | O_CREAT | O_APPEND;
    default: return rw == O_RDWR ? O_RDWR : O_RDONLY;
  }
}

inline mode_t mode_arg(int flags, va_list ap) {
  return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

// Journals `r` bytes of `iov` written at `start` to d's file (mutex held); `durable`: they
// are on disk already (O_DSYNC, RWF_DSYNC).
void record_write(open_desc* d, const iovec* iov, int count, off_t start, size_t r, bool durable) {
  std::vector<iovec> written = prefix(iov, count, r);
  journal(d->file, fmt::record_write, durable ? fmt::flag_durable : 0, start, written);
  if (durable) {
    int dfd = open_state(durable_path(d->file->rel), O_WRONLY | O_CREAT);
    write_all(dfd, written, start);
    real.close(dfd);
  }
}

// Common path of every write entry point. `offset` < 0 means "at the fd's position";
// `call_real` performs the real call with the (possibly shortened) iovec array.
template <class Call>
ssize_t do_write(int fd, const iovec* iov, int count, off_t offset, bool append, bool durable,
                 Call call_real) {
  ensure_init();
  if (!lookup(fd)) return call_real(iov, count);
  std::unique_lock<std::mutex> lock(g->mu);
  open_desc* d = tracked(fd);
  if (!d) {
    lock.unlock();
    return call_real(iov, count);
  }
  fault_mode mode = current_fault();
  if (mode == fault_mode::enospc || g->disk_full) {
    errno = ENOSPC;
    return -1;
  }
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  std::vector<iovec> shortened;
  if (mode == fault_mode::short_writes && total > 0) {
    shortened = prefix(iov, count, total / 2);
    if (shortened.empty()) shortened.push_back({iov[0].iov_base, 0});
    iov = shortened.data();
    count = static_cast<int>(shortened.size());
    g->disk_full = true;
  }
  append = append || (d->status_flags & O_APPEND);
  durable = durable || (d->status_flags & O_DSYNC);
  off_t start = offset;
  if (offset < 0 && !append) start = lseek(fd, 0, SEEK_CUR);
  ssize_t r = call_real(iov, count);
  if (r <= 0) return r;
  errno_keeper keep;
  if (append) {  // the kernel chose the offset; pwrite on O_APPEND appends too (Linux)
    struct stat st;
    if (offset < 0) start = lseek(fd, 0, SEEK_CUR) - r;
    else if (fstat(fd, &st) == 0) start = st.st_size - r;
  }
  if (start < 0) fatal("cannot tell the offset of a tracked write");
  record_write(d, iov, count, start, r, durable);
  return r;
}

// A size change; journaled so that a restore can apply or drop it like any unsynced write.
template <class Call>
int do_resize(int fd, bool fault_applies, bool keeps_size, Call call_real) {
  ensure_init();
  if (!lookup(fd)) return call_real();
  std::unique_lock<std::mutex> lock(g->mu);
  open_desc* d = tracked(fd);
  if (!d) {
    lock.unlock();
    return call_real();
  }
  if (fault_applies) {
    fault_mode mode = current_fault();
    if (mode == fault_mode::enospc || g->disk_full) return -ENOSPC;
  }
  int r = call_real();
  if (r != 0 || keeps_size) return r;
  errno_keeper keep;
  struct stat st;
  if (fstat(fd, &st) != 0) fatal("fstat");
  journal(d->file, fmt::record_size, 0, st.st_size, {});
  return r;
}

int do_fsync(int fd, fd_fn call_real) {
  ensure_init();
  if (!lookup(fd)) return call_real(fd);
  std::unique_lock<std::mutex> lock(g->mu);
  open_desc* d = tracked(fd);
  if (!d) {
    lock.unlock();
    return call_real(fd);
  }
  if (current_fault() == fault_mode::eio_sync) {
    errno = EIO;
    return -1;
  }
  // A disk that does not answer: the sync waits (without the shim's lock) until the mode
  // changes.
  while (current_fault() == fault_mode::stall_sync) {
    lock.unlock();
    usleep(5'000);
    lock.lock();
  }
  d = tracked(fd);
  if (!d) {
    lock.unlock();
    return call_real(fd);
  }
  int r = call_real(fd);
  if (r != 0) return r;
  errno_keeper keep;
  // Reopened read-only: LMDB syncs through fds opened O_WRONLY.
  std::string self = "/proc/self/fd/" + std::to_string(fd);
  int src = real.open(self.c_str(), O_RDONLY | O_CLOEXEC);
  if (src < 0) fatal("reopening a tracked file");
  sync_file(d->file->rel, src);
  real.close(src);
  return 0;
}

template <class Call>
int do_unlink(int dirfd, const char* path, Call call_real) {
  ensure_init();
  std::string rel, abs;
  if (!classify(dirfd, path, rel, abs)) return call_real();
  std::lock_guard<std::mutex> lock(g->mu);
  int r = call_real();
  if (r == 0) {
    errno_keeper keep;
    forget_name(rel);
  }
  return r;
}

template <class Call>
int do_rename(int olddirfd, const char* oldpath, int newdirfd, const char* newpath, bool exchange,
              Call call_real) {
  ensure_init();
  std::string from, to, abs;
  bool from_tracked = classify(olddirfd, oldpath, from, abs);
  bool to_tracked = classify(newdirfd, newpath, to, abs);
  if (!from_tracked && !to_tracked) return call_real();
  std::lock_guard<std::mutex> lock(g->mu);
  int r = call_real();
  if (r != 0) return r;
  errno_keeper keep;
  if (from_tracked && to_tracked && !exchange) {
    move_name(from, to);
  } else {  // simplification: the next open snapshots whatever the names now hold
    if (from_tracked) forget_name(from);
    if (to_tracked) forget_name(to);
  }
  return r;
}

int do_truncate(const char* path, off_t length, truncate_fn call_real) {
  ensure_init();
  std::string rel, abs;
  struct stat st;
  if (!classify(AT_FDCWD, path, rel, abs) || lstat(abs.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return call_real(path, length);
  std::lock_guard<std::mutex> lock(g->mu);
  ensure_durable(rel, abs);
  int r = call_real(path, length);
  if (r != 0) return r;
  errno_keeper keep;
  tracked_file* f = acquire_file(rel);
  journal(f, fmt::record_size, 0, length, {});
  release_file(f);
  return r;
}

template <class Call>
int do_dup(int fd, int newfd, Call call_real) {
  ensure_init();
  if (!lookup(fd) && !lookup(newfd)) {
    int r = call_real();
    if (r >= 0) forget_stale(r);
    return r;
  }
  std::lock_guard<std::mutex> lock(g->mu);
  int r = call_real();
  if (r < 0 || r == fd) return r;
  errno_keeper keep;
  if (open_desc* d = lookup(fd)) attach_fd(r, d);
  else drop_fd(r);
  return r;
}

int do_fcntl(int fd, int cmd, void* arg, fcntl_fn call_real) {
  ensure_init();
  switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
      return do_dup(fd, -1, [&] { return call_real(fd, cmd, arg); });
    case F_SETFL: {
      int r = call_real(fd, cmd, arg);
      if (r == 0 && lookup(fd)) {
        std::lock_guard<std::mutex> lock(g->mu);
        int flags = static_cast<int>(reinterpret_cast<intptr_t>(arg));
        if (open_desc* d = lookup(fd))
          d->status_flags = (d->status_flags & ~O_APPEND) | (flags & O_APPEND);
      }
      return r;
    }
    default:
      return call_real(fd, cmd, arg);
  }
}

}  // namespace

// ---- exported symbols ----

FAULTFS_EXPORT int open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return do_open(AT_FDCWD, path, flags, [&] { return real.open(path, flags, mode); });
}

FAULTFS_EXPORT int open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return do_open(AT_FDCWD, path, flags, [&] { return real.open64(path, flags, mode); });
}

FAULTFS_EXPORT int openat(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return do_open(dirfd, path, flags, [&] { return real.openat(dirfd, path, flags, mode); });
}

FAULTFS_EXPORT int openat64(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return do_open(dirfd, path, flags, [&] { return real.openat64(dirfd, path, flags, mode); });
}

// Fortified callers (-D_FORTIFY_SOURCE) reach these instead of open when flags are not constant.
FAULTFS_EXPORT int __open_2(const char* path, int flags) {
  return do_open(AT_FDCWD, path, flags, [&] { return real.open_2(path, flags); });
}

FAULTFS_EXPORT int __open64_2(const char* path, int flags) {
  return do_open(AT_FDCWD, path, flags, [&] { return real.open64_2(path, flags); });
}

FAULTFS_EXPORT int __openat_2(int dirfd, const char* path, int flags) {
  return do_open(dirfd, path, flags, [&] { return real.openat_2(dirfd, path, flags); });
}

FAULTFS_EXPORT int __openat64_2(int dirfd, const char* path, int flags) {
  return do_open(dirfd, path, flags, [&] { return real.openat64_2(dirfd, path, flags); });
}

FAULTFS_EXPORT FILE* fopen(const char* path, const char* mode) {
  FILE* f = nullptr;
  do_open(AT_FDCWD, path, stdio_flags(mode), [&] {
    f = real.fopen(path, mode);
    return f ? fileno(f) : -1;
  }, true);
  return f;
}

FAULTFS_EXPORT FILE* fopen64(const char* path, const char* mode) {
  FILE* f = nullptr;
  do_open(AT_FDCWD, path, stdio_flags(mode), [&] {
    f = real.fopen64(path, mode);
    return f ? fileno(f) : -1;
  }, true);
  return f;
}

FAULTFS_EXPORT FILE* fdopen(int fd, const char* mode) {
  ensure_init();
  FILE* f = real.fdopen(fd, mode);
  if (f && lookup(fd) && (stdio_flags(mode) & O_ACCMODE) != O_RDONLY) {
    std::lock_guard<std::mutex> lock(g->mu);
    if (open_desc* d = tracked(fd)) g->unjournaled.insert(d->file->rel);
  }
  return f;
}

// glibc closes a FILE*'s fd internally, so close() never sees it.
FAULTFS_EXPORT int fclose(FILE* f) {
  ensure_init();
  int fd = f ? fileno(f) : -1;
  if (lookup(fd)) {
    std::lock_guard<std::mutex> lock(g->mu);
    drop_fd(fd);
  }
  return real.fclose(f);
}

FAULTFS_EXPORT int creat(const char* path, mode_t mode) {
  return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC,
                 [&] { return real.creat(path, mode); });
}

FAULTFS_EXPORT int creat64(const char* path, mode_t mode) {
  return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC,
                 [&] { return real.creat64(path, mode); });
}

FAULTFS_EXPORT ssize_t write(int fd, const void* buf, size_t n) {
  iovec v{const_cast<void*>(buf), n};
  return do_write(fd, &v, 1, -1, false, false, [&](const iovec* iov, int) {
    return real.write(fd, iov[0].iov_base, iov[0].iov_len);
  });
}

FAULTFS_EXPORT ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
  iovec v{const_cast<void*>(buf), n};
  return do_write(fd, &v, 1, offset, false, false, [&](const iovec* iov, int) {
    return real.pwrite(fd, iov[0].iov_base, iov[0].iov_len, offset);
  });
}

FAULTFS_EXPORT ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t offset) {
  iovec v{const_cast<void*>(buf), n};
  return do_write(fd, &v, 1, offset, false, false, [&](const iovec* iov, int) {
    return real.pwrite64(fd, iov[0].iov_base, iov[0].iov_len, offset);
  });
}

FAULTFS_EXPORT ssize_t writev(int fd, const struct iovec* iov, int count) {
  return do_write(fd, iov, count, -1, false, false,
                  [&](const iovec* v, int n) { return real.writev(fd, v, n); });
}

FAULTFS_EXPORT ssize_t pwritev(int fd, const struct iovec* iov, int count, off_t offset) {
  return do_write(fd, iov, count, offset, false, false,
                  [&](const iovec* v, int n) { return real.pwritev(fd, v, n, offset); });
}

FAULTFS_EXPORT ssize_t pwritev64(int fd, const struct iovec* iov, int count, off64_t offset) {
  return do_write(fd, iov, count, offset, false, false,
                  [&](const iovec* v, int n) { return real.pwritev64(fd, v, n, offset); });
}

namespace {
ssize_t do_pwritev2(int fd, const iovec* iov, int count, off_t offset, int flags,
                    pwritev2_fn call_real) {
  if (!call_real) {
    errno = ENOSYS;
    return -1;
  }
  // offset -1 means the fd's position, as for writev.
  return do_write(fd, iov, count, offset < 0 ? -1 : offset, flags & RWF_APPEND,
                  flags & (RWF_DSYNC | RWF_SYNC),
                  [&](const iovec* v, int n) { return call_real(fd, v, n, offset, flags); });
}
}  // namespace

FAULTFS_EXPORT ssize_t pwritev2(int fd, const struct iovec* iov, int count, off_t offset,
                                int flags) {
  ensure_init();
  return do_pwritev2(fd, iov, count, offset, flags, real.pwritev2);
}

FAULTFS_EXPORT ssize_t pwritev64v2(int fd, const struct iovec* iov, int count, off64_t offset,
                                   int flags) {
  ensure_init();
  return do_pwritev2(fd, iov, count, offset, flags, real.pwritev64v2);
}

FAULTFS_EXPORT int ftruncate(int fd, off_t length) {
  return do_resize(fd, false, false, [&] { return real.ftruncate(fd, length); });
}

FAULTFS_EXPORT int ftruncate64(int fd, off64_t length) {
  return do_resize(fd, false, false, [&] { return real.ftruncate64(fd, length); });
}

FAULTFS_EXPORT int truncate(const char* path, off_t length) {
  ensure_init();
  return do_truncate(path, length, real.truncate);
}

FAULTFS_EXPORT int truncate64(const char* path, off64_t length) {
  ensure_init();
  return do_truncate(path, length, real.truncate64);
}

FAULTFS_EXPORT int fallocate(int fd, int mode, off_t offset, off_t length) {
  int r = do_resize(fd, true, mode & FALLOC_FL_KEEP_SIZE,
                    [&] { return real.fallocate(fd, mode, offset, length); });
  if (r == -ENOSPC) errno = ENOSPC;
  return r < 0 ? -1 : r;
}

FAULTFS_EXPORT int fallocate64(int fd, int mode, off64_t offset, off64_t length) {
  int r = do_resize(fd, true, mode & FALLOC_FL_KEEP_SIZE,
                    [&] { return real.fallocate64(fd, mode, offset, length); });
  if (r == -ENOSPC) errno = ENOSPC;
  return r < 0 ? -1 : r;
}

// posix_fallocate reports errors as its return value, not through errno.
FAULTFS_EXPORT int posix_fallocate(int fd, off_t offset, off_t length) {
  int r = do_resize(fd, true, false, [&] { return real.posix_fallocate(fd, offset, length); });
  return r == -ENOSPC ? ENOSPC : r;
}

FAULTFS_EXPORT int posix_fallocate64(int fd, off64_t offset, off64_t length) {
  int r = do_resize(fd, true, false, [&] { return real.posix_fallocate64(fd, offset, length); });
  return r == -ENOSPC ? ENOSPC : r;
}

FAULTFS_EXPORT int fsync(int fd) {
  ensure_init();
  return do_fsync(fd, real.fsync);
}

FAULTFS_EXPORT int fdatasync(int fd) {
  ensure_init();
  return do_fsync(fd, real.fdatasync);
}

FAULTFS_EXPORT void sync() {
  ensure_init();
  real.sync();
  if (!g->enabled) return;
  std::lock_guard<std::mutex> lock(g->mu);
  errno_keeper keep;
  if (current_fault() != fault_mode::eio_sync) sync_everything();
}

FAULTFS_EXPORT int syncfs(int fd) {
  ensure_init();
  if (!g->enabled) return real.syncfs(fd);
  std::lock_guard<std::mutex> lock(g->mu);
  if (current_fault() == fault_mode::eio_sync) {
    errno = EIO;
    return -1;
  }
  int r = real.syncfs(fd);
  if (r != 0) return r;
  errno_keeper keep;
  sync_everything();  // simplification: every tracked file, whatever filesystem fd is on
  return r;
}

FAULTFS_EXPORT int close(int fd) {
  ensure_init();
  if (lookup(fd)) {
    // Forget the fd before the real close: afterwards another thread may get the same number.
    std::lock_guard<std::mutex> lock(g->mu);
    drop_fd(fd);
  }
  return real.close(fd);
}

FAULTFS_EXPORT int dup(int fd) {
  ensure_init();
  return do_dup(fd, -1, [&] { return real.dup(fd); });
}

FAULTFS_EXPORT int dup2(int fd, int newfd) {
  ensure_init();
  return do_dup(fd, newfd, [&] { return real.dup2(fd, newfd); });
}

FAULTFS_EXPORT int dup3(int fd, int newfd, int flags) {
  ensure_init();
  return do_dup(fd, newfd, [&] { return real.dup3(fd, newfd, flags); });
}

// glibc itself reads the third argument as a pointer-sized value for every command.
FAULTFS_EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  ensure_init();
  return do_fcntl(fd, cmd, arg, real.fcntl);
}

FAULTFS_EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  ensure_init();
  return do_fcntl(fd, cmd, arg, real.fcntl64 ? real.fcntl64 : real.fcntl);
}

FAULTFS_EXPORT int unlink(const char* path) {
  return do_unlink(AT_FDCWD, path, [&] { return real.unlink(path); });
}

FAULTFS_EXPORT int unlinkat(int dirfd, const char* path, int flags) {
  if (flags & AT_REMOVEDIR) {
    ensure_init();
    return real.unlinkat(dirfd, path, flags);
  }
  return do_unlink(dirfd, path, [&] { return real.unlinkat(dirfd, path, flags); });
}

FAULTFS_EXPORT int remove(const char* path) {
  return do_unlink(AT_FDCWD, path, [&] { return real.remove(path); });
}

FAULTFS_EXPORT int rename(const char* from, const char* to) {
  return do_rename(AT_FDCWD, from, AT_FDCWD, to, false, [&] { return real.rename(from, to); });
}

FAULTFS_EXPORT int renameat(int fromdir, const char* from, int todir, const char* to) {
  return do_rename(fromdir, from, todir, to, false,
                   [&] { return real.renameat(fromdir, from, todir, to); });
}

FAULTFS_EXPORT int renameat2(int fromdir, const char* from, int todir, const char* to,
                             unsigned flags) {
  ensure_init();
  if (!real.renameat2) {
    errno = ENOSYS;
    return -1;
  }
  return do_rename(fromdir, from, todir, to, flags & RENAME_EXCHANGE,
                   [&] { return real.renameat2(fromdir, from, todir, to, flags); });
}

namespace {
// The writes of the Linux AIO requests about to be submitted (mutex taken): durable at once
// with RWF_DSYNC/RWF_SYNC or an O_DSYNC fd (a kill -9 does not stop a write the kernel took,
// and the next process may read and act on it), else pending until a sync. Journaled before
// the kernel has them, so no moment exists when a write is done and not journaled.
void record_aio_submissions(long n, iocb* const* cbs) {
  std::lock_guard<std::mutex> lock(g->mu);
  for (long i = 0; i < n; ++i) {
    const iocb* cb = cbs[i];
    if (cb == nullptr) continue;
    open_desc* d = tracked(static_cast<int>(cb->aio_fildes));
    if (!d) continue;
    iovec one{reinterpret_cast<void*>(static_cast<uintptr_t>(cb->aio_buf)), static_cast<size_t>(cb->aio_nbytes)};
    const iovec* iov = &one;
    int count = 1;
    if (cb->aio_lio_opcode == IOCB_CMD_PWRITEV) {
      iov = reinterpret_cast<const iovec*>(static_cast<uintptr_t>(cb->aio_buf));
      count = static_cast<int>(cb->aio_nbytes);
    } else if (cb->aio_lio_opcode != IOCB_CMD_PWRITE) {
      continue;
    }
    size_t total = 0;
    for (int k = 0; k < count; ++k) total += iov[k].iov_len;
    bool durable = (cb->aio_rw_flags & (RWF_DSYNC | RWF_SYNC)) || (d->status_flags & O_DSYNC);
    record_write(d, iov, count, static_cast<off_t>(cb->aio_offset), total, durable);
  }
}
}  // namespace

// The system call itself, as glibc's syscall() makes it: the wrapper below is reached from
// allocators and thread libraries before the shim is initialised, and must not call dlsym.
long raw_syscall(long n, long a1, long a2, long a3, long a4, long a5, long a6) {
#if defined(__x86_64__)
  long ret;
  register long r10 asm("r10") = a4;
  register long r8 asm("r8") = a5;
  register long r9 asm("r9") = a6;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  if (ret < 0 && ret > -4096) {
    errno = static_cast<int>(-ret);
    return -1;
  }
  return ret;
#else
#error "faultfs_shim: syscall() passes through with inline x86-64 code only"
#endif
}

// libraft writes its log segments with Linux AIO (io_submit through syscall(), RWF_DSYNC):
// each write is journaled as it is submitted, as a pwritev2 would have been. Every other
// system call passes through.
FAULTFS_EXPORT long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (long& x : a) x = va_arg(ap, long);
  va_end(ap);
  if (number == __NR_io_submit && a[1] > 0 && a[2] != 0) {
    errno_keeper keep;
    ensure_init();
    if (g->enabled) record_aio_submissions(a[1], reinterpret_cast<iocb* const*>(a[2]));
  }
  return raw_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
