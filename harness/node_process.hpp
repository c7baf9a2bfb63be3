// A `holdfast node` child process: started with a data directory and an ephemeral
// loopback port, its address read from the line it prints once it serves. Its stdout
// and stderr go to `<data_dir>.log`. Killed by PID when the handle goes. Used by the demo, the benchmarks and the process tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace holdfast {

// A child that prints "... listening on HOST:PORT" once it serves (a node, the payment
// gateway): started in a session of its own with stdout and stderr appended to
// `log_path`, registered with kill_on_interrupt. Throws listening_failed when it exits
// before that line or does not print it within `timeout` (then it is killed).
struct listening_child {
  pid_t pid = -1;
  std::string address;
  int exit_status = -1;
};
struct listening_failed : std::runtime_error {
  listening_failed(int s, const std::string& why) : std::runtime_error(why), status(s) {}
  int status;
};
listening_child start_listening(const std::vector<std::string>& args, const std::string& log_path,
                                std::chrono::milliseconds timeout, const std::vector<std::string>& env_extra = {});

class node_process {
public:
  // Throws std::runtime_error if the node does not report its address in time; the
  // message carries what the node printed (stdout and stderr).
  node_process(const std::string& binary, const std::string& data_dir,
               const std::vector<std::string>& extra_args = {},
               std::chrono::milliseconds timeout = std::chrono::seconds(30),
               const std::vector<std::string>& env_extra = {},
               const std::vector<std::string>& command_prefix = {});  // e.g. prlimit ...
  // A node some other process started (`holdfast cluster up`), found by its pid: signals
  // reach it; it is reaped by its own parent.
  static std::unique_ptr<node_process> adopt(pid_t pid, std::string address, std::string log_path);
  ~node_process();
  node_process(const node_process&) = delete;
  node_process& operator=(const node_process&) = delete;

  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  void kill9();      // SIGKILL and reap
  int terminate();   // SIGTERM, reap, exit status
  void stop_signal();    // SIGSTOP: the process freezes, its sockets stay open
  void continue_signal();  // SIGCONT
  // Everything the node printed so far (all runs on this data directory).
  std::string log() const;
  // "host:port" of the node's HTTP endpoint (--http) once its log names it, or "" if it
  // does not within `limit`.
  std::string http_address(std::chrono::milliseconds limit = std::chrono::seconds(10)) const;
  const std::string& log_path() const { return log_path_; }
  int exit_status() const { return exit_status_; }  // once it exited by itself
  // Lets the node outlive this handle (`holdfast cluster up`); returns its pid.
  pid_t release();

private:
  node_process() = default;
  pid_t pid_ = -1;
  int exit_status_ = -1;
  std::string address_;
  std::string log_path_;
};

// The running executable, for re-launching it as a node.
std::string self_executable();

}  // namespace holdfast
