// Test child for faultfs_tests, run with and without the shim. argv is a script of commands
// executed in order; each file operation prints "<command> <result> <errno name or OK>" on
// stdout. Slots name open fds. At the end it prints "done" and waits to be SIGKILLed, the way a
// crashing node never cleans up.
//
//   open SLOT PATH FLAGS        FLAGS: letters c=O_CREAT t=O_TRUNC a=O_APPEND d=O_DSYNC
//                               s=O_SYNC r=O_RDONLY w=O_WRONLY (default O_RDWR), or "-"
//   openat SLOT DIR NAME FLAGS  openat relative to an O_DIRECTORY fd of DIR
//   creat SLOT PATH
//   write SLOT TEXT             pwrite SLOT OFFSET TEXT      seek SLOT OFFSET
//   writev SLOT A,B,...         pwritev SLOT OFFSET A,B,...
//   pwritev2 SLOT OFFSET FLAGS A,B,...   FLAGS: d=RWF_DSYNC a=RWF_APPEND or "-"
//   aio SLOT OFFSET FLAGS A,B,...        one IOCB_CMD_PWRITEV through Linux AIO (io_submit
//                               and io_getevents by syscall(), as libraft does); FLAGS as
//                               for pwritev2 (d=RWF_DSYNC) or "-"
//   sys-check                   syscall() passes other calls through: getpid's result, and
//                               io_setup(0) failing with EINVAL ("sys-check 0 OK" when so)
//   fill SLOT OFFSET LENGTH CHAR         one pwrite of LENGTH copies of CHAR
//   fsync SLOT   fdatasync SLOT   syncfs SLOT   sync
//   ftruncate SLOT SIZE   fallocate SLOT OFFSET LENGTH (posix_fallocate)
//   dup SLOT NEW   fdupfd SLOT NEW (fcntl F_DUPFD_CLOEXEC)   append-on SLOT (fcntl F_SETFL)
//   close SLOT   rename FROM TO   unlink PATH
//   fopen FSLOT PATH MODE   fdopen SLOT FSLOT MODE   fputs FSLOT TEXT   fflush FSLOT
//   ffsync FSLOT (fsync of its fd)   fclose FSLOT      FSLOTs name FILE*s, apart from SLOTs
//   threads PATH THREADS ITERATIONS   concurrent writers: iteration i of thread t pwrites block
//                               i * THREADS + t (4096 bytes of block_char(t, i)), fdatasyncs it
//                               and prints "synced t i"; even threads share one fd, odd ones
//                               open and close their own each time; every third iteration
//                               also leaves an unsynced block past the synced region
//   fsize-limit BYTES           RLIMIT_FSIZE, SIGXFSZ ignored: writes past it are partial
//   pause                       prints "paused", waits for a line on stdin
//   exit                        exits at once (no "done")
//   lmdb DIR COUNT NOSYNC       commits COUNT transactions, transaction i putting key i;
//                               prints "committing i" before and "committed i" after each
//                               commit; NOSYNC=1 opens with MDB_NOSYNC
//   lmdb-verify DIR LAST        exit 0 if keys 0..LAST are all present (LAST -1: none needed),
//                               2 if the environment does not open, 3 if a key is missing
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

std::map<int, int> slots;     // slot -> fd
std::map<int, FILE*> files;  // stdio slot -> stream

void report(const char* command, long result) {
  const char* err = result < 0 ? strerrorname_np(errno) : "OK";
  std::printf("%s %ld %s\n", command, result, err ? err : "?");
  std::fflush(stdout);
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "faultfs_child: %s\n", why.c_str());
  std::exit(64);
}

int open_flags(const std::string& letters) {
  int flags = O_RDWR;
  for (char c : letters) {
    switch (c) {
      case 'c': flags |= O_CREAT; break;
      case 't': flags |= O_TRUNC; break;
      case 'a': flags |= O_APPEND; break;
      case 'd': flags |= O_DSYNC; break;
      case 's': flags |= O_SYNC; break;
      case 'r': flags = (flags & ~O_ACCMODE) | O_RDONLY; break;
      case 'w': flags = (flags & ~O_ACCMODE) | O_WRONLY; break;
      case '-': break;
      default: usage("bad open flag " + letters);
    }
  }
  return flags;
}

// Splits "A,B,C" into iovec-backing strings.
std::vector<std::string> parts(const std::string& list) {
  std::vector<std::string> out;
  for (size_t start = 0;;) {
    size_t comma = list.find(',', start);
    out.push_back(list.substr(start, comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

std::vector<iovec> iovecs(std::vector<std::string>& strings) {
  std::vector<iovec> iov;
  for (std::string& s : strings) iov.push_back({s.data(), s.size()});
  return iov;
}

std::string key_of(int i) { return "key-" + std::to_string(i); }
// Values span a few hundred bytes so transactions dirty several pages.
std::string value_of(int i) {
  return std::string(300, static_cast<char>('a' + i % 26)) + key_of(i);
}

int run_lmdb(const char* dir, int count, bool nosync) {
  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_mapsize(env, 64 << 20);
  if (rc == 0) rc = mdb_env_open(env, dir, nosync ? MDB_NOSYNC : 0, 0644);
  if (rc != 0) {
    std::fprintf(stderr, "faultfs_child: lmdb open: %s\n", mdb_strerror(rc));
    return 1;
  }
  for (int i = 0; i < count; ++i) {
    MDB_txn* txn = nullptr;
    MDB_dbi dbi;
    std::string k = key_of(i), v = value_of(i);
    MDB_val key{k.size(), k.data()}, val{v.size(), v.data()};
    // Filler rewritten by every transaction: commits write many pages, so a kill often lands
    // while they are in flight, and old pages are freed and reused.
    std::string filler(2000, static_cast<char>('A' + i % 26));
    rc = mdb_txn_begin(env, nullptr, 0, &txn);
    if (rc == 0) rc = mdb_dbi_open(txn, nullptr, 0, &dbi);
    if (rc == 0) rc = mdb_put(txn, dbi, &key, &val, 0);
    for (int f = 0; rc == 0 && f < 16; ++f) {
      std::string fk = "filler-" + std::to_string(f);
      MDB_val fkey{fk.size(), fk.data()}, fval{filler.size(), filler.data()};
      rc = mdb_put(txn, dbi, &fkey, &fval, 0);
    }
    if (rc == 0) {
      std::printf("committing %d\n", i);  // lets the parent kill during the commit's I/O
      std::fflush(stdout);
      rc = mdb_txn_commit(txn);
    }
    if (rc != 0) {
      std::fprintf(stderr, "faultfs_child: lmdb txn %d: %s\n", i, mdb_strerror(rc));
      return 1;
    }
    std::printf("committed %d\n", i);
    std::fflush(stdout);
  }
  return 0;  // the environment stays open: the process is killed, not closed
}

int run_threads(const std::string& path, int threads, int iterations) {
  int shared = open(path.c_str(), O_RDWR | O_CREAT, 0644);
  if (shared < 0) return 1;
  std::mutex out;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < iterations; ++i) {
        int fd = t % 2 == 0 ? shared : open(path.c_str(), O_WRONLY);
        std::string block(4096, static_cast<char>('a' + (t * 7 + i) % 26));
        off_t offset = static_cast<off_t>(i * threads + t) * 4096;
        bool ok = pwrite(fd, block.data(), block.size(), offset) == 4096 && fdatasync(fd) == 0;
        if (i % 3 == 0) {
          off_t unsynced = static_cast<off_t>((iterations + i) * threads + t) * 4096;
          ok = ok && pwrite(fd, block.data(), block.size(), unsynced) == 4096;
        }
        if (fd != shared) close(fd);
        std::lock_guard<std::mutex> lock(out);
        std::printf(ok ? "synced %d %d\n" : "failed %d %d\n", t, i);
        std::fflush(stdout);
      }
    });
  }
  for (std::thread& w : workers) w.join();
  return 0;
}

int verify_lmdb(const char* dir, int last) {
  MDB_env* env = nullptr;
  MDB_txn* txn = nullptr;
  MDB_dbi dbi;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_mapsize(env, 64 << 20);
  if (rc == 0) rc = mdb_env_open(env, dir, 0, 0644);
  if (rc == 0) rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
  if (rc == 0) rc = mdb_dbi_open(txn, nullptr, 0, &dbi);
  if (rc != 0) {
    std::printf("open failed: %s\n", mdb_strerror(rc));
    return 2;
  }
  for (int i = 0; i <= last; ++i) {
    std::string k = key_of(i);
    MDB_val key{k.size(), k.data()}, val;
    rc = mdb_get(txn, dbi, &key, &val);
    if (rc != 0 || std::string(static_cast<char*>(val.mv_data), val.mv_size) != value_of(i)) {
      std::printf("missing %d: %s\n", i, rc ? mdb_strerror(rc) : "wrong value");
      return 3;
    }
  }
  std::printf("verified 0..%d\n", last);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  size_t i = 0;
  auto next = [&]() -> std::string {
    if (i >= args.size()) usage("missing argument");
    return args[i++];
  };
  auto num = [&]() {
    std::string arg = next();
    char* end = nullptr;
    long long n = std::strtoll(arg.c_str(), &end, 10);
    if (arg.empty() || *end) usage("not a number: " + arg);
    return n;
  };
  auto file = [&]() {
    int s = static_cast<int>(num());
    if (!files.count(s)) usage("stdio slot " + std::to_string(s) + " is not open");
    return files[s];
  };
  auto slot = [&]() {
    int s = static_cast<int>(num());
    if (!slots.count(s)) usage("slot " + std::to_string(s) + " is not open");
    return slots[s];
  };
  while (i < args.size()) {
    std::string cmd = next();
    const char* c = cmd.c_str();
    if (cmd == "open") {
      int s = static_cast<int>(num());
      std::string path = next();
      int fd = open(path.c_str(), open_flags(next()), 0644);
      if (fd >= 0) slots[s] = fd;
      report(c, fd);
    } else if (cmd == "openat") {
      int s = static_cast<int>(num());
      std::string dir = next(), name = next();
      int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
      int fd = openat(dfd, name.c_str(), open_flags(next()), 0644);
      close(dfd);
      if (fd >= 0) slots[s] = fd;
      report(c, fd);
    } else if (cmd == "creat") {
      int s = static_cast<int>(num());
      int fd = creat(next().c_str(), 0644);
      if (fd >= 0) slots[s] = fd;
      report(c, fd);
    } else if (cmd == "write") {
      int fd = slot();
      std::string text = next();
      report(c, write(fd, text.data(), text.size()));
    } else if (cmd == "pwrite") {
      int fd = slot();
      off_t offset = num();
      std::string text = next();
      report(c, pwrite(fd, text.data(), text.size(), offset));
    } else if (cmd == "seek") {
      int fd = slot();
      report(c, lseek(fd, num(), SEEK_SET));
    } else if (cmd == "writev") {
      int fd = slot();
      auto strings = parts(next());
      auto iov = iovecs(strings);
      report(c, writev(fd, iov.data(), static_cast<int>(iov.size())));
    } else if (cmd == "pwritev") {
      int fd = slot();
      off_t offset = num();
      auto strings = parts(next());
      auto iov = iovecs(strings);
      report(c, pwritev(fd, iov.data(), static_cast<int>(iov.size()), offset));
    } else if (cmd == "pwritev2") {
      int fd = slot();
      off_t offset = num();
      int flags = 0;
      for (char f : next()) flags |= f == 'd' ? RWF_DSYNC : f == 'a' ? RWF_APPEND : 0;
      auto strings = parts(next());
      auto iov = iovecs(strings);
      report(c, pwritev2(fd, iov.data(), static_cast<int>(iov.size()), offset, flags));
    } else if (cmd == "aio") {
      int fd = slot();
      off_t offset = num();
      int flags = 0;
      for (char f : next()) flags |= f == 'd' ? RWF_DSYNC : 0;
      auto strings = parts(next());
      auto iov = iovecs(strings);
      aio_context_t ctx = 0;
      if (syscall(__NR_io_setup, 1, &ctx) != 0) {
        report(c, -1);
        continue;
      }
      iocb cb{};
      cb.aio_fildes = static_cast<uint32_t>(fd);
      cb.aio_lio_opcode = IOCB_CMD_PWRITEV;
      cb.aio_buf = reinterpret_cast<uintptr_t>(iov.data());
      cb.aio_nbytes = iov.size();
      cb.aio_offset = offset;
      cb.aio_rw_flags = flags;
      iocb* cbs[1] = {&cb};
      io_event event{};
      long r = syscall(__NR_io_submit, ctx, 1, cbs);
      if (r == 1) r = syscall(__NR_io_getevents, ctx, 1, 1, &event, nullptr);
      if (r == 1 && event.res < 0) {
        errno = static_cast<int>(-event.res);
        r = -1;
      } else if (r == 1) {
        r = event.res;
      }
      syscall(__NR_io_destroy, ctx);
      report(c, r);
    } else if (cmd == "sys-check") {
      aio_context_t ctx = 0;
      bool pid = syscall(SYS_getpid) == getpid();
      long setup = syscall(__NR_io_setup, 0, &ctx);
      bool einval = setup == -1 && errno == EINVAL;
      errno = 0;
      report(c, pid && einval ? 0 : -1);
    } else if (cmd == "fill") {
      int fd = slot();
      off_t offset = num();
      size_t length = num();
      std::string text(length, next().at(0));
      report(c, pwrite(fd, text.data(), text.size(), offset));
    } else if (cmd == "fsync") {
      report(c, fsync(slot()));
    } else if (cmd == "fdatasync") {
      report(c, fdatasync(slot()));
    } else if (cmd == "syncfs") {
      report(c, syncfs(slot()));
    } else if (cmd == "sync") {
      sync();
      report(c, 0);
    } else if (cmd == "ftruncate") {
      int fd = slot();
      report(c, ftruncate(fd, num()));
    } else if (cmd == "fallocate") {
      int fd = slot();
      off_t offset = num();
      int rc = posix_fallocate(fd, offset, num());
      errno = rc;
      report(c, rc ? -1 : 0);
    } else if (cmd == "dup" || cmd == "fdupfd") {
      int fd = slot();
      int s = static_cast<int>(num());
      int copy = cmd == "dup" ? dup(fd) : fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (copy >= 0) slots[s] = copy;
      report(c, copy);
    } else if (cmd == "append-on") {
      int fd = slot();
      report(c, fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_APPEND));
    } else if (cmd == "close") {
      int s = static_cast<int>(num());
      int fd = slots.at(s);
      slots.erase(s);
      report(c, close(fd));
    } else if (cmd == "fopen" || cmd == "fdopen") {
      int fd = cmd == "fdopen" ? slot() : -1;
      int s = static_cast<int>(num());
      std::string path = cmd == "fopen" ? next() : "";
      std::string mode = next();
      FILE* f = cmd == "fopen" ? fopen(path.c_str(), mode.c_str()) : fdopen(fd, mode.c_str());
      if (f) files[s] = f;
      report(c, f ? fileno(f) : -1);
    } else if (cmd == "fputs") {
      FILE* f = file();
      report(c, fputs(next().c_str(), f));
    } else if (cmd == "fflush") {
      report(c, fflush(file()));
    } else if (cmd == "ffsync") {
      report(c, fsync(fileno(file())));
    } else if (cmd == "fclose") {
      int s = static_cast<int>(num());
      FILE* f = files.at(s);
      files.erase(s);
      report(c, fclose(f));
    } else if (cmd == "rename") {
      std::string from = next(), to = next();
      report(c, rename(from.c_str(), to.c_str()));
    } else if (cmd == "unlink") {
      report(c, unlink(next().c_str()));
    } else if (cmd == "threads") {
      std::string file = next();
      int threads = static_cast<int>(num());
      if (int rc = run_threads(file, threads, static_cast<int>(num()))) return rc;
    } else if (cmd == "fsize-limit") {
      signal(SIGXFSZ, SIG_IGN);
      rlim_t limit = num();
      rlimit r{limit, limit};
      report(c, setrlimit(RLIMIT_FSIZE, &r));
    } else if (cmd == "pause") {
      std::printf("paused\n");
      std::fflush(stdout);
      char line[64];
      if (!std::fgets(line, sizeof line, stdin)) return 0;
    } else if (cmd == "exit") {
      std::fflush(stdout);
      _exit(0);
    } else if (cmd == "lmdb") {
      std::string dir = next();
      int count = static_cast<int>(num());
      bool nosync = num() != 0;
      if (int rc = run_lmdb(dir.c_str(), count, nosync)) return rc;
    } else if (cmd == "lmdb-verify") {
      std::string dir = next();
      return verify_lmdb(dir.c_str(), static_cast<int>(num()));
    } else {
      usage("unknown command " + cmd);
    }
  }
  std::printf("done\n");
  std::fflush(stdout);
  for (;;) pause();
}
