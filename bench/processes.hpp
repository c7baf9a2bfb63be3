// Child processes for the benchmarks: peers (redis-server, postgres) started on
// loopback and stopped by PID, and short commands whose output is read back. No shell
// is involved: arguments go to execv as they are.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace holdfast::bench {

// The user a child runs as (postgres refuses to run as root).
struct run_as {
  uid_t uid;
  gid_t gid;
};

// A long-running child. Its stdout and stderr go to `log_path`. Stopped with `signal`
// and reaped when the handle goes.
class child_process {
public:
  child_process(const std::vector<std::string>& argv, const std::string& log_path,
                std::optional<run_as> user = std::nullopt, int stop_signal = 15);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  pid_t pid() const { return pid_; }
  bool alive();  // false once it exited
  void stop();

private:
  pid_t pid_ = -1;
  int stop_signal_;
};

struct command_result {
  int status = -1;  // exit status; 127: could not be started
  std::string output;  // stdout and stderr together
};

// Runs a command to completion and captures its output.
command_result run_command(const std::vector<std::string>& argv,
                           std::optional<run_as> user = std::nullopt);

// The full path of `name` on PATH or in `extra_dirs`, or empty.
std::string find_program(const std::string& name, const std::vector<std::string>& extra_dirs = {});

// A loopback TCP port that was free a moment ago.
int free_port();

// A fresh directory under the system temp dir; removed by the caller.
std::string make_temp_dir(const std::string& prefix);

// Retries `ready` until it is true or `limit` passes.
bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds limit);

}  // namespace holdfast::bench
