#include "harness/node_process.hpp"

#include <fcntl.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <thread>

#include "harness/processes.hpp"

namespace holdfast {
namespace {

std::string read_from(const std::string& path, off_t offset) {
  std::string out;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  ssize_t n;
  while ((n = pread(fd, buf, sizeof buf, offset)) > 0) {
    out.append(buf, static_cast<size_t>(n));
    offset += n;
  }
  close(fd);
  return out;
}

}  // namespace

std::string self_executable() {
  char buf[PATH_MAX];
  auto n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot resolve /proc/self/exe");
  return std::string(buf, static_cast<size_t>(n));
}

listening_child start_listening(const std::vector<std::string>& args, const std::string& log_path,
                                std::chrono::milliseconds timeout, const std::vector<std::string>& env_extra) {
  int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) throw std::runtime_error("cannot open " + log_path);
  auto log_start = lseek(log, 0, SEEK_END);
  listening_child out;
  try {
    // Its own session: a Ctrl-C or hang-up meant for the harness (or the orphaned,
    // stopped process group `cluster up` leaves) does not reach it; the harness kills
    // its children itself (kill_on_interrupt).
    spawn_spec spec{args, env_extra, std::nullopt, log, log};
    spec.new_session = true;
    out.pid = spawn(spec);
    kill_on_interrupt(out.pid);
  } catch (...) {
    close(log);
    throw;
  }
  close(log);
  // Wait for "... listening on HOST:PORT ..." with a deadline; a wrapper (heaptrack,
  // valgrind) may print lines of its own first.
  const std::string marker = "listening on ";
  std::string seen;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    seen = read_from(log_path, log_start);
    auto at = seen.find(marker);
    if (at != std::string::npos && seen.find('\n', at) != std::string::npos) {
      auto start = at + marker.size();
      out.address = seen.substr(start, seen.find_first_of(" \n", start) - start);
      return out;
    }
    int status = 0;
    if (waitpid(out.pid, &status, WNOHANG) == out.pid) {
      forget_on_interrupt(out.pid);
      out.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      throw listening_failed(out.exit_status, "exited (status " + std::to_string(out.exit_status) +
                                                ") before serving: " + read_from(log_path, log_start));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(out.pid, SIGKILL);
      waitpid(out.pid, &status, 0);
      forget_on_interrupt(out.pid);
      throw listening_failed(137, "did not start within the deadline: " + seen);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
}

node_process::node_process(const std::string& binary, const std::string& data_dir,
                           const std::vector<std::string>& extra_args,
                           std::chrono::milliseconds timeout,
                           const std::vector<std::string>& env_extra,
                           const std::vector<std::string>& command_prefix) {
  // The node logs to a file beside its data directory, never to a pipe: nobody reads a
  // pipe once the node serves, and a full one would stall the node.
  log_path_ = data_dir + ".log";
  std::vector<std::string> args = command_prefix;
  for (auto a : {binary, std::string("node"), std::string("--data"), data_dir})
    args.push_back(a);
  // A cluster member serves the address its [[node]] entry names.
  if (std::find(extra_args.begin(), extra_args.end(), "--cluster") == extra_args.end())
    for (auto a : {std::string("--listen"), std::string("127.0.0.1:0")}) args.push_back(a);
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  try {
    auto child = start_listening(args, log_path_, timeout, env_extra);
    pid_ = child.pid;
    address_ = child.address;
  } catch (const listening_failed& e) {
    exit_status_ = e.status;
    throw std::runtime_error(std::string("node: ") + e.what());
  }
}

pid_t node_process::release() {
  auto pid = pid_;
  if (pid > 0) forget_on_interrupt(pid);
  pid_ = -1;
  return pid;
}

std::unique_ptr<node_process> node_process::adopt(pid_t pid, std::string address, std::string log_path) {
  std::unique_ptr<node_process> n(new node_process());
  n->pid_ = pid;
  n->address_ = std::move(address);
  n->log_path_ = std::move(log_path);
  return n;
}

node_process::~node_process() {
  if (running()) kill9();
}

std::string node_process::log() const { return read_from(log_path_, 0); }

std::string node_process::http_address(std::chrono::milliseconds limit) const {
  std::string http;
  wait_until(
    [&] {
      auto text = log();
      auto at = text.find("http on ");
      if (at == std::string::npos) return false;
      at += 8;
      http = text.substr(at, text.find_first_of(" \n", at) - at);
      return true;
    },
    limit);
  return http;
}

void node_process::kill9() {
  if (pid_ <= 0) return;
  forget_on_interrupt(pid_);
  ::kill(pid_, SIGCONT);
  stop_child(pid_, SIGKILL, std::chrono::seconds(10));
  pid_ = -1;
}

int node_process::terminate() {
  if (pid_ <= 0) return -1;
  forget_on_interrupt(pid_);
  ::kill(pid_, SIGCONT);
  auto status = stop_child(pid_, SIGTERM, std::chrono::seconds(30));
  pid_ = -1;
  return status;
}

void node_process::stop_signal() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void node_process::continue_signal() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

}  // namespace holdfast
