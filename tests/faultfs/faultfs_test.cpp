// Tests of the power-loss shim and harness: faultfs_child runs a script under the shim, is
// SIGKILLed, and power_loss() must leave exactly what was durable (plus chosen unsynced pages).
// Waits are conditions with deadlines, never fixed sleeps.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "faultfs.hpp"

extern char** environ;

namespace holdfast::faultfs {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

// A faultfs_child process with pipes on stdin and stdout; SIGKILLed by PID when destroyed.
class child_process {
public:
  child_process(const std::vector<std::string>& args, const std::vector<std::string>& extra_env) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      std::string entry = *e;
      bool replaced = false;
      for (const std::string& x : extra_env)
        replaced |= entry.compare(0, x.find('=') + 1, x, 0, x.find('=') + 1) == 0;
      if (!replaced) env.push_back(entry);
    }
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    std::vector<std::string> argv{FAULTFS_CHILD_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv, cenv;
    for (std::string& a : argv) cargv.push_back(a.data());
    for (std::string& e : env) cenv.push_back(e.data());
    cargv.push_back(nullptr);
    cenv.push_back(nullptr);

    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      execve(cargv[0], cargv.data(), cenv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    in_ = in[1];
    out_ = out[0];
  }

  ~child_process() {
    kill();
    close(in_);
    close(out_);
  }

  // Waits for an output line starting with `prefix`.
  std::optional<std::string> wait_for(const std::string& prefix,
                                      std::chrono::milliseconds limit = 10s) {
    auto deadline = clock_type::now() + limit;
    for (size_t seen = 0;;) {
      for (; seen < lines_.size(); ++seen)
        if (lines_[seen].compare(0, prefix.size(), prefix) == 0) return lines_[seen];
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
      if (left <= 0ms || !read_some(static_cast<int>(left.count()))) return std::nullopt;
    }
  }

  void send_line(const std::string& line) {
    std::string l = line + "\n";
    ASSERT_EQ(write(in_, l.data(), l.size()), static_cast<ssize_t>(l.size()));
  }

  // SIGKILL, reap, and collect whatever it printed before dying.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    while (read_some(1000)) {
    }
  }

  // Waits for the child to exit by itself: its exit status, or nullopt (after killing it) if it
  // did not exit in time or died from a signal.
  std::optional<int> wait_exit(std::chrono::milliseconds limit = 20s) {
    auto deadline = clock_type::now() + limit;
    while (clock_type::now() < deadline) {
      int status;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        while (read_some(1000)) {
        }
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        return std::nullopt;
      }
      read_some(20);  // also the polling interval
    }
    kill();
    return std::nullopt;
  }

  const std::vector<std::string>& lines() const { return lines_; }

private:
  // Reads what is available within `timeout_ms`; false on EOF or timeout.
  bool read_some(int timeout_ms) {
    pollfd p{out_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    ssize_t n = read(out_, buf, sizeof buf);
    if (n <= 0) return false;
    partial_.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
      lines_.push_back(partial_.substr(0, nl));
      partial_.erase(0, nl + 1);
    }
    return true;
  }

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string partial_;
  std::vector<std::string> lines_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

std::string pages(std::initializer_list<std::pair<size_t, char>> runs) {
  std::string s;
  for (auto [n, c] : runs) s.append(n, c);
  return s;
}

class faultfs_test : public ::testing::Test {
protected:
  faultfs_test() {
    std::string tmpl = (fs::temp_directory_path() / "holdfast-faultfs-XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
    opts_.data_dir = root_ + "/data";
    opts_.state_dir = root_ + "/state";
    opts_.control_path = root_ + "/control";
    opts_.shim_path = FAULTFS_SHIM_PATH;
    fs::create_directories(opts_.data_dir);
  }
  ~faultfs_test() override { fs::remove_all(root_); }

  std::string path(const std::string& rel) const { return opts_.data_dir + "/" + rel; }

  // Runs a script under the shim until it prints "done", then SIGKILLs it. Returns its output.
  std::vector<std::string> crash(const std::vector<std::string>& script) {
    child_process child(script, child_environment(opts_));
    bool done = child.wait_for("done").has_value();
    child.kill();
    std::string out;
    for (const std::string& l : child.lines()) out += l + "\n";
    EXPECT_TRUE(done) << "child did not finish its script; output:\n" << out;
    return child.lines();
  }

  // Lets one crash be restored several ways.
  void save() {
    fs::remove_all(root_ + "/saved");
    fs::create_directories(root_ + "/saved");
    fs::copy(opts_.data_dir, root_ + "/saved/data", fs::copy_options::recursive);
    fs::copy(opts_.state_dir, root_ + "/saved/state", fs::copy_options::recursive);
  }
  void load() {
    fs::remove_all(opts_.data_dir);
    fs::remove_all(opts_.state_dir);
    fs::copy(root_ + "/saved/data", opts_.data_dir, fs::copy_options::recursive);
    fs::copy(root_ + "/saved/state", opts_.state_dir, fs::copy_options::recursive);
  }

  void reset_dirs() {
    fs::remove_all(opts_.data_dir);
    fs::remove_all(opts_.state_dir);
    fs::create_directories(opts_.data_dir);
  }

  std::string root_;
  options opts_;
};

bool has_line(const std::vector<std::string>& lines, const std::string& line) {
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

TEST_F(faultfs_test, unsynced_write_is_lost_when_no_page_survives) {
  crash({"open", "1", path("f"), "ct", "fill", "1", "0", "8192", "a", "fsync", "1", "fill", "1",
         "4096", "8192", "b"});
  ASSERT_EQ(read_file(path("f")), pages({{4096, 'a'}, {8192, 'b'}}));  // the page cache kept it
  restore_report r = power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("f")), pages({{8192, 'a'}})) << r.to_string();
  EXPECT_EQ(r.files, 1u);
  EXPECT_EQ(r.unsynced_pages, 2u);
  EXPECT_EQ(r.kept_pages, 0u);
  EXPECT_TRUE(fs::is_empty(opts_.state_dir));
}

TEST_F(faultfs_test, unsynced_write_is_replayed_when_every_page_survives) {
  crash({"open", "1", path("f"), "ct", "fill", "1", "0", "8192", "a", "fsync", "1", "fill", "1",
         "4096", "8192", "b"});
  restore_report r = power_loss(opts_, 1, 1.0);
  EXPECT_EQ(read_file(path("f")), pages({{4096, 'a'}, {8192, 'b'}})) << r.to_string();
  EXPECT_EQ(r.kept_pages, 2u);
}

TEST_F(faultfs_test, partial_survival_is_page_granular_and_reproducible_by_seed) {
  const size_t n = 32;
  crash({"open", "1", path("f"), "ct", "fill", "1", "0", std::to_string(n * 4096), "a", "fsync",
         "1", "fill", "1", "0", std::to_string(n * 4096), "b",
         // Pieces follow the file's pages: this record straddles a boundary, so it is two.
         "open", "2", path("g"), "c", "fill", "2", "4090", "12", "x"});
  save();
  restore_report first = power_loss(opts_, 42, 0.5);
  std::string content = read_file(path("f"));
  ASSERT_EQ(content.size(), n * 4096);
  size_t new_pages = 0;
  for (size_t p = 0; p < n; ++p) {
    std::string page = content.substr(p * 4096, 4096);
    bool old_page = page == std::string(4096, 'a'), new_page = page == std::string(4096, 'b');
    EXPECT_TRUE(old_page || new_page) << "page " << p << " is torn";
    new_pages += new_page;
  }
  EXPECT_EQ(first.unsynced_pages, n + 2);
  std::string g = read_file(path("g"));
  size_t g_pieces = g.size() < 4096 ? 0 : g.size() == 4102 ? 1 : 2;
  EXPECT_EQ(first.kept_pages, new_pages + g_pieces) << first.to_string();
  EXPECT_GT(new_pages, 0u);
  EXPECT_LT(new_pages, n);

  load();
  power_loss(opts_, 42, 0.5);
  EXPECT_EQ(read_file(path("f")), content);
  load();
  power_loss(opts_, 43, 0.5);
  EXPECT_NE(read_file(path("f")), content) << "another seed should choose other pages";
}

TEST_F(faultfs_test, o_dsync_write_survives_and_older_unsynced_write_never_covers_it) {
  crash({"open", "1", path("f"), "ct", "open", "2", path("f"), "wd", "pwrite", "1", "0",
         "AAAAAAAA", "pwrite", "2", "0", "DDDD", "pwrite", "1", "8", "tail"});
  save();
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("f")), "DDDD");
  load();
  power_loss(opts_, 1, 1.0);
  EXPECT_EQ(read_file(path("f")), "DDDDAAAAtail");
  // Whatever subset survives, the durable bytes do: an unsynced record may be kept while the
  // durable one after it is "dropped" only if restore forgets which records were durable.
  for (uint64_t seed = 1; seed <= 32; ++seed) {
    load();
    power_loss(opts_, seed, 0.5);
    EXPECT_EQ(read_file(path("f")).substr(0, 4), "DDDD") << "seed " << seed;
  }
}

TEST_F(faultfs_test, o_sync_and_rwf_dsync_writes_are_durable_at_once) {
  crash({"open", "1", path("f"), "cs", "write", "1", "sync", "open", "2", path("g"), "c",
         "pwritev2", "2", "0", "d", "rw,f", "pwritev2", "2", "3", "-", "lost"});
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("f")), "sync");
  EXPECT_EQ(read_file(path("g")), "rwf");
}

// libraft writes its Raft log this way: without the shim seeing it, a power loss would
// rewind every segment to nothing.
TEST_F(faultfs_test, linux_aio_writes_are_journaled_as_they_are_submitted) {
  auto out = crash({"open", "1", path("f"), "c", "aio", "1", "0", "d", "dura,ble", "aio", "1", "7", "-", "-lost",
                    "sys-check"});
  EXPECT_TRUE(has_line(out, "aio 7 OK")) << "the kernel wrote it";
  EXPECT_TRUE(has_line(out, "aio 5 OK"));
  EXPECT_TRUE(has_line(out, "sys-check 0 OK")) << "other system calls pass through, errno too";
  save();
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("f")), "durable");  // RWF_DSYNC: durable once submitted
  load();
  power_loss(opts_, 1, 1.0);
  EXPECT_EQ(read_file(path("f")), "durable-lost");  // unsynced, kept when every page survives
}

TEST_F(faultfs_test, every_write_path_is_journaled_at_the_offset_really_written) {
  auto out = crash({
      "open", "1", path("f"), "ct",                   // fd position 0
      "writev", "1", "ab,cd",                         // [0,4)
      "pwrite", "1", "10", "XY",                      // [10,12), leaves a hole
      "seek", "1", "2", "writev", "1", ",Q,",         // [2,3)
      "pwritev", "1", "6", "mn,op",                   // [6,10)
      "open", "2", path("f"), "a", "write", "2", "END",  // O_APPEND: [12,15)
      "pwrite", "2", "0", "zz",                       // pwrite on O_APPEND appends on Linux
      "pwritev2", "1", "-1", "-", "r,s",              // at fd 1's position 3
      "pwritev2", "1", "0", "a", "APP",               // RWF_APPEND
      "dup", "1", "3", "write", "3", "D",             // shares fd 1's position (5)
      "fdupfd", "1", "4", "append-on", "4", "write", "1", "Z",  // fd 1 now appends too
      "openat", "5", opts_.data_dir, "g", "c", "write", "5", "at",
      "creat", "6", path("h"), "write", "6", "creat",
  });
  for (const char* line : {"writev 4 OK", "pwrite 2 OK", "writev 1 OK", "pwritev 4 OK",
                           "write 3 OK", "pwritev2 2 OK", "pwritev2 3 OK"})
    EXPECT_TRUE(has_line(out, line)) << line;
  std::string cached = read_file(path("f"));
  ASSERT_EQ(cached, std::string("abQrsDmnopXYENDzzAPPZ"));
  save();
  power_loss(opts_, 1, 1.0);
  EXPECT_EQ(read_file(path("f")), cached);
  EXPECT_EQ(read_file(path("g")), "at");
  EXPECT_EQ(read_file(path("h")), "creat");
  load();
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("f")), "");  // created (durable), never synced
  EXPECT_EQ(read_file(path("g")), "");
  EXPECT_EQ(read_file(path("h")), "");
}

TEST_F(faultfs_test, partial_writes_journal_only_the_bytes_written) {
  // RLIMIT_FSIZE cuts writes that cross it; it limits the shim's journal too, hence the offset.
  const long limit = 1 << 20;
  auto out = crash({"fsize-limit", std::to_string(limit),
                    "open", "1", path("f"), "ct", "pwrite", "1", std::to_string(limit - 2), "abc",
                    "open", "2", path("g"), "ct", "seek", "2", std::to_string(limit - 3),
                    "writev", "2", "de,fg", "open", "3", path("h"), "ct", "seek", "3",
                    std::to_string(limit - 1), "write", "3", "hij"});
  for (const char* line : {"pwrite 2 OK", "writev 3 OK", "write 1 OK"})
    EXPECT_TRUE(has_line(out, line)) << line;
  std::string f = read_file(path("f")), g = read_file(path("g")), h = read_file(path("h"));
  ASSERT_EQ(f.substr(limit - 2), "ab");
  ASSERT_EQ(g.substr(limit - 3), "def");
  ASSERT_EQ(h.substr(limit - 1), "h");
  power_loss(opts_, 1, 1.0);
  EXPECT_TRUE(read_file(path("f")) == f);
  EXPECT_TRUE(read_file(path("g")) == g);
  EXPECT_TRUE(read_file(path("h")) == h);
}

TEST_F(faultfs_test, fsync_through_any_fd_of_the_file_makes_it_durable) {
  // syncfs() and sync() cover every tracked file, so they come first, syncfs() before sync().
  crash({"open", "4", path("h"), "c", "write", "4", "fs", "syncfs", "4",
         "open", "3", path("g"), "c", "write", "3", "synced", "close", "3", "sync",
         "open", "1", path("f"), "cw", "write", "1", "hello", "open", "2", path("f"), "r",
         "fsync", "2", "write", "1", "world"});
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("f")), "hello");
  EXPECT_EQ(read_file(path("g")), "synced");  // sync() covers files already closed
  EXPECT_EQ(read_file(path("h")), "fs");
}

TEST_F(faultfs_test, stdio_files_are_tracked_and_synced_whole) {
  // sync() covers every tracked file, so it comes first.
  crash({"fopen", "1", path("g"), "w", "fputs", "1", "closed", "fclose", "1", "sync",
         "open", "1", path("h"), "c", "fdopen", "1", "2", "w", "fputs", "2", "fd", "fflush", "2",
         "fsync", "1", "fopen", "3", path("f"), "w", "fputs", "3", "hello", "fflush", "3",
         "ffsync", "3", "fputs", "3", "world", "fflush", "3"});
  ASSERT_EQ(read_file(path("f")), "helloworld");
  power_loss(opts_, 1, 1.0);  // unjournaled: even "keep all" cannot replay stdio writes
  EXPECT_EQ(read_file(path("f")), "hello");
  EXPECT_EQ(read_file(path("g")), "closed");
  EXPECT_EQ(read_file(path("h")), "fd");
}

TEST_F(faultfs_test, enospc_fails_writes_and_changes_nothing) {
  write_file(path("f"), "hello");  // pre-existing content is durable
  set_fault(opts_, "enospc");
  auto out = crash({"open", "1", path("f"), "-", "write", "1", "xyz", "pwrite", "1", "0", "xyz",
                    "writev", "1", "x,y", "fallocate", "1", "0", "100000", "fsync", "1"});
  for (const char* line : {"write -1 ENOSPC", "pwrite -1 ENOSPC", "writev -1 ENOSPC",
                           "fallocate -1 ENOSPC", "fsync 0 OK"})
    EXPECT_TRUE(has_line(out, line)) << line;
  EXPECT_EQ(read_file(path("f")), "hello");
  restore_report r = power_loss(opts_, 1, 1.0);
  EXPECT_EQ(read_file(path("f")), "hello");
  EXPECT_EQ(r.records, 0u);
}

TEST_F(faultfs_test, short_mode_writes_half_then_fills_the_disk) {
  set_fault(opts_, "short");
  auto out = crash({"open", "1", path("f"), "ct", "write", "1", "0123456789", "write", "1",
                    "56789", "fsync", "1"});
  EXPECT_TRUE(has_line(out, "write 5 OK"));
  EXPECT_TRUE(has_line(out, "write -1 ENOSPC"));
  EXPECT_TRUE(has_line(out, "fsync 0 OK"));
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("f")), "01234");
}

TEST_F(faultfs_test, eio_sync_fails_fsync_and_makes_nothing_durable) {
  set_fault(opts_, "eio-sync");
  auto out = crash({"open", "1", path("f"), "ct", "write", "1", "data", "fsync", "1",
                    "fdatasync", "1", "syncfs", "1"});
  EXPECT_TRUE(has_line(out, "write 4 OK"));
  EXPECT_TRUE(has_line(out, "fsync -1 EIO"));
  EXPECT_TRUE(has_line(out, "fdatasync -1 EIO"));
  EXPECT_TRUE(has_line(out, "syncfs -1 EIO"));
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("f")), "");
}

TEST_F(faultfs_test, fault_mode_changes_are_seen_by_a_running_process) {
  child_process child({"open", "1", path("f"), "ct", "write", "1", "aa", "pause", "write", "1",
                       "bb", "pause", "write", "1", "cc", "fsync", "1"},
                      child_environment(opts_));
  ASSERT_TRUE(child.wait_for("paused"));
  set_fault(opts_, "enospc");
  child.send_line("go");
  ASSERT_TRUE(child.wait_for("write -1 ENOSPC"));
  // Same size as "enospc": only the forced mtime tells the versions apart.
  set_fault(opts_, "normal");
  child.send_line("go");
  ASSERT_TRUE(child.wait_for("done"));
  child.kill();
  EXPECT_TRUE(has_line(child.lines(), "fsync 0 OK"));
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("f")), "aacc");
}

TEST_F(faultfs_test, excluded_files_are_left_alone) {
  crash({"open", "1", path("x.lock"), "ct", "write", "1", "flock", "open", "2", path("lock.mdb"),
         "ct", "write", "2", "readers", "open", "3", path("data.mdb"), "ct", "write", "3",
         "pages"});
  EXPECT_FALSE(fs::exists(opts_.state_dir + "/x.lock.durable"));
  EXPECT_FALSE(fs::exists(opts_.state_dir + "/lock.mdb.durable"));
  EXPECT_TRUE(fs::exists(opts_.state_dir + "/data.mdb.durable"));
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("x.lock")), "flock");
  EXPECT_EQ(read_file(path("lock.mdb")), "readers");
  EXPECT_EQ(read_file(path("data.mdb")), "");
}

TEST_F(faultfs_test, unsynced_size_changes_rewind) {
  fs::create_directories(path("sub/dir"));
  crash({"open", "1", path("sub/dir/f"), "ct", "fill", "1", "0", "5000", "a", "fsync", "1",
         "fill", "1", "5000", "10000", "b", "ftruncate", "1", "20000",
         "open", "2", path("g"), "ct", "fill", "2", "0", "9000", "c", "fdatasync", "2",
         "ftruncate", "2", "100",
         "open", "3", path("h"), "ct", "write", "3", "x", "fsync", "3", "fallocate", "3", "0",
         "65536",
         // Synced size changes without any write: fsync must take the size from the file.
         "open", "4", path("k"), "ct", "fill", "4", "0", "9000", "k", "fsync", "4", "ftruncate",
         "4", "100", "fsync", "4", "open", "5", path("m"), "ct", "ftruncate", "5", "7000",
         "fdatasync", "5"});
  EXPECT_EQ(fs::file_size(path("sub/dir/f")), 20000u);
  save();
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("sub/dir/f")), pages({{5000, 'a'}}));
  EXPECT_EQ(read_file(path("g")), pages({{9000, 'c'}}));
  EXPECT_EQ(read_file(path("h")), "x");
  EXPECT_EQ(read_file(path("k")), pages({{100, 'k'}}));
  EXPECT_EQ(read_file(path("m")), pages({{7000, '\0'}}));
  load();
  power_loss(opts_, 1, 1.0);
  EXPECT_EQ(read_file(path("sub/dir/f")), pages({{5000, 'a'}, {10000, 'b'}, {5000, '\0'}}));
  EXPECT_EQ(read_file(path("g")), pages({{100, 'c'}}));
  EXPECT_EQ(fs::file_size(path("h")), 65536u);
}

TEST_F(faultfs_test, o_trunc_is_an_unsynced_size_change) {
  write_file(path("f"), "hello");
  crash({"open", "1", path("f"), "t", "write", "1", "hi"});
  ASSERT_EQ(read_file(path("f")), "hi");
  save();
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("f")), "hello");
  load();
  power_loss(opts_, 1, 1.0);
  EXPECT_EQ(read_file(path("f")), "hi");
}

TEST_F(faultfs_test, renames_and_unlinks_carry_their_durable_state) {
  crash({"open", "1", path("gone"), "ct", "write", "1", "old", "fsync", "1", "close", "1",
         "open", "2", path("tmp"), "ct", "write", "2", "v1", "fsync", "2",
         "rename", path("tmp"), path("final"), "pwrite", "2", "0", "v2", "unlink", path("gone")});
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("final")), "v1");
  EXPECT_FALSE(fs::exists(path("tmp")));
  EXPECT_FALSE(fs::exists(path("gone")));
}

TEST_F(faultfs_test, a_later_run_starts_from_the_restored_content) {
  crash({"open", "1", path("f"), "ct", "write", "1", "first", "fsync", "1", "write", "1", "!"});
  power_loss(opts_, 1, 0.0);
  crash({"open", "1", path("f"), "w", "pwrite", "1", "0", "F", "fsync", "1", "pwrite", "1", "1",
         "I"});
  power_loss(opts_, 1, 0.0);
  EXPECT_EQ(read_file(path("f")), "First");
}

TEST_F(faultfs_test, concurrent_writers_keep_every_synced_block) {
  const int threads = 8, iterations = 40;
  auto out = crash({"threads", path("f"), std::to_string(threads), std::to_string(iterations)});
  std::vector<std::pair<int, int>> synced;
  for (const std::string& line : out) {
    int t, i;
    if (std::sscanf(line.c_str(), "synced %d %d", &t, &i) == 2) synced.emplace_back(t, i);
    EXPECT_NE(line.rfind("failed", 0), 0u) << line;
  }
  ASSERT_EQ(synced.size(), static_cast<size_t>(threads * iterations));
  std::string cached = read_file(path("f"));
  save();
  for (uint64_t seed : {1, 2, 3}) {
    load();
    restore_report r = power_loss(opts_, seed, 0.5);
    std::string content = read_file(path("f"));
    for (auto [t, i] : synced) {
      size_t offset = static_cast<size_t>(i * threads + t) * 4096;
      ASSERT_GE(content.size(), offset + 4096) << r.to_string();
      EXPECT_EQ(content.substr(offset, 4096),
                std::string(4096, static_cast<char>('a' + (t * 7 + i) % 26)))
          << "block of thread " << t << " iteration " << i << ", seed " << seed;
    }
  }
  load();
  power_loss(opts_, 1, 1.0);
  EXPECT_TRUE(read_file(path("f")) == cached);
}

// ---- end to end with LMDB ----

struct lmdb_round {
  int last_committed = -1;
  std::string verdict;  // the verifier's output, or why it produced none
  bool intact = false;
};

class lmdb_test : public faultfs_test {
protected:
  // One crash: a child commits under the shim and is killed (as it starts committing
  // transaction `kill_in_commit`, or after committing all if that is -1; with `mid_io`, only
  // once that commit's pages are written but not yet synced); then power_loss; then an
  // independent process (no shim: corrupt data may crash it) checks every printed commit.
  lmdb_round run_round(bool nosync, uint64_t seed, double keep, int kill_in_commit,
                       bool mid_io = false) {
    reset_dirs();
    lmdb_round round;
    {
      child_process child({"lmdb", opts_.data_dir, "40", nosync ? "1" : "0"},
                          child_environment(opts_));
      std::string kill_at = "done";
      if (kill_in_commit >= 0) kill_at = "committing " + std::to_string(kill_in_commit);
      EXPECT_TRUE(child.wait_for(kill_at));
      if (mid_io) {
        // The previous commit left one durable record (its meta page); more means data pages
        // in flight. Spin: the window lasts about one fdatasync.
        std::string pending = opts_.state_dir + "/data.mdb.pending";
        auto deadline = clock_type::now() + 5s;
        std::error_code ec;
        while (fs::file_size(pending, ec) <= 24 + 4096 && clock_type::now() < deadline)
          std::this_thread::yield();
      }
      child.kill();
      for (const std::string& l : child.lines())
        if (l.rfind("committed ", 0) == 0) round.last_committed = std::stoi(l.substr(10));
    }
    restore_report report = power_loss(opts_, seed, keep);
    child_process verifier({"lmdb-verify", opts_.data_dir, std::to_string(round.last_committed)},
                           {});
    std::optional<int> status = verifier.wait_exit();
    for (const std::string& l : verifier.lines()) round.verdict += l;
    if (!status) round.verdict += " (verifier crashed or hung)";
    round.intact = status == 0;
    round.verdict += " | " + report.to_string();
    return round;
  }
};

TEST_F(lmdb_test, synced_commits_survive_every_power_loss) {
  const double keeps[] = {0.5, 0.0, 1.0};
  for (int r = 0; r < 12; ++r) {
    // Kill as transaction 3, 6, ... starts committing, in odd rounds while its pages are written.
    lmdb_round round = run_round(false, 1000 + r, keeps[r % 3], 3 + r * 3, r % 2 == 1);
    std::cout << "[ synced   ] round " << r << ": keep " << keeps[r % 3] << ", last committed "
              << round.last_committed << ": " << round.verdict << "\n";
    EXPECT_TRUE(round.intact) << "round " << r << ": last committed " << round.last_committed
                              << ": " << round.verdict;
  }
}

TEST_F(lmdb_test, nosync_commits_are_lost_so_the_harness_has_teeth) {
  // Control: replaying every page reproduces the page cache, which kill -9 alone never loses.
  lmdb_round all = run_round(true, 1, 1.0, -1);
  EXPECT_TRUE(all.intact) << all.verdict;
  EXPECT_EQ(all.last_committed, 39);

  int lost = 0;
  const int rounds = 20;
  for (int r = 0; r < rounds; ++r) {
    lmdb_round round = run_round(true, 2000 + r, 0.5, -1);
    if (!round.intact) ++lost;
    std::cout << "[ nosync   ] round " << r << ": " << (round.intact ? "intact" : "LOST") << ": "
              << round.verdict << "\n";
  }
  std::cout << "[ nosync   ] " << lost << "/" << rounds << " rounds lost committed data\n";
  EXPECT_GE(lost, 1) << "MDB_NOSYNC never lost data: power_loss is not simulating anything";
}

}  // namespace
}  // namespace holdfast::faultfs
