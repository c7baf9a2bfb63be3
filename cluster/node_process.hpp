// A `holdfast node` child process: started with a data directory and an ephemeral
// loopback port, its address read from the line it prints once it serves. Killed by
// PID when the handle goes. Used by the demo and the process-level tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace holdfast {

class node_process {
public:
  // Throws std::runtime_error if the node does not report its address in time.
  node_process(const std::string& binary, const std::string& data_dir,
               const std::vector<std::string>& extra_args = {},
               std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~node_process();
  node_process(const node_process&) = delete;
  node_process& operator=(const node_process&) = delete;

  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  void kill9();      // SIGKILL and reap
  int terminate();   // SIGTERM, reap, exit status

private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string address_;
};

// The running executable, for re-launching it as a node.
std::string self_executable();

}  // namespace holdfast
