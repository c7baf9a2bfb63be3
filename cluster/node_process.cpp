#include "cluster/node_process.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <stdexcept>

namespace holdfast {

std::string self_executable() {
  char buf[PATH_MAX];
  auto n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot resolve /proc/self/exe");
  return std::string(buf, static_cast<size_t>(n));
}

node_process::node_process(const std::string& binary, const std::string& data_dir,
                           const std::vector<std::string>& extra_args,
                           std::chrono::milliseconds timeout) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  std::vector<std::string> args{binary, "node", "--data", data_dir, "--listen", "127.0.0.1:0"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  stdout_fd_ = fds[0];
  // Wait for "holdfast node listening on HOST:PORT ..." with a deadline; a wrapper
  // (heaptrack, valgrind) may print lines of its own first.
  const std::string marker = "listening on ";
  std::string seen;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto found = [&] {
    auto at = seen.find(marker);
    return at != std::string::npos && seen.find('\n', at) != std::string::npos;
  };
  while (!found()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
    pollfd p{stdout_fd_, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) {
      kill9();
      throw std::runtime_error("node did not start within the deadline");
    }
    char buf[256];
    auto n = read(stdout_fd_, buf, sizeof buf);
    if (n <= 0) {
      kill9();
      throw std::runtime_error("node exited before serving: " + seen);
    }
    seen.append(buf, static_cast<size_t>(n));
  }
  auto at = seen.find(marker);
  if (at == std::string::npos) {
    kill9();
    throw std::runtime_error("unexpected node output: " + seen);
  }
  auto start = at + marker.size();
  address_ = seen.substr(start, seen.find_first_of(" \n", start) - start);
}

node_process::~node_process() {
  if (running()) kill9();
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

void node_process::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

int node_process::terminate() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace holdfast
