// Child processes for tests, benchmarks and the demo: nodes and peers (redis-server,
// postgres) started on loopback and stopped by PID, and short commands whose output is
// read back. No shell is involved: arguments go to execve as they are. Not part of the
// node: only harnesses link this library.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace holdfast {

// The user a child runs as (postgres refuses to run as root).
struct run_as {
  uid_t uid;
  gid_t gid;
};

// How to start a child. Exactly one fork + exec lives behind this.
struct spawn_spec {
  std::vector<std::string> argv;        // argv[0] is the program's path
  std::vector<std::string> env_extra;   // "NAME=value", added to this process's environment
  std::optional<run_as> user;
  int stdout_fd = -1;                   // -1: inherit
  int stderr_fd = -1;                   // -1: inherit
  bool new_session = false;             // setsid(): no terminal's or process group's signals
};

// Forks and execs; the child gets /dev/null as stdin. Returns the child's pid; throws
// std::runtime_error when fork fails. An exec failure shows as exit status 127.
pid_t spawn(const spawn_spec& spec);

// Sends `signal`, then SIGKILL if the child is still there after `grace`; reaps it and
// returns its exit status (128 + signal when killed). A process that is not our child
// (adopted from a PID file) is waited for until it is gone; its status is then -1.
int stop_child(pid_t pid, int signal, std::chrono::milliseconds grace);
// Children that must not outlive an interrupted harness (the demo, chaos, a benchmark, a
// test): on the first SIGINT, SIGTERM or SIGHUP each registered pid gets SIGKILL, then
// the signal takes its default course. node_process registers its nodes until they are
// stopped or released (`cluster up` releases them on purpose).
void kill_on_interrupt(pid_t pid);
void forget_on_interrupt(pid_t pid);
// A temporary directory (a demo's, a benchmark's) removed on that interrupt too, after
// the registered children are killed and reaped; forgotten once the caller removed it.
void remove_on_interrupt(const std::string& dir);
void forget_removal_on_interrupt(const std::string& dir);
// SIGKILLs every registered child now (async-signal-safe): for a harness about to die
// without running destructors (a sanitizer's report, an abort).
void kill_registered_now();
// True when `pid` no longer runs: no such process, or a zombie its parent has not reaped.
bool process_gone(pid_t pid);
// /proc/PID/stat after "pid (comm) ": state, parent, ... (empty: no such process).
std::string proc_stat_fields(pid_t pid);
// The live (or not yet reaped) children of `pid`.
std::vector<pid_t> children_of(pid_t pid);

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
  bool timed_out = false;  // run_command_for: killed at its limit (status is then 137)
};

// Runs a command to completion and captures its output.
command_result run_command(const std::vector<std::string>& argv,
                           std::optional<run_as> user = std::nullopt,
                           const std::vector<std::string>& env_extra = {});
// The same for at most `limit`: a command still running then is killed with everything
// it started (SIGKILL to its process group: it runs in a session of its own).
command_result run_command_for(const std::vector<std::string>& argv,
                               std::chrono::milliseconds limit);

// The full path of `name` on PATH or in `extra_dirs`, or empty.
std::string find_program(const std::string& name, const std::vector<std::string>& extra_dirs = {});

// Runs gnuplot on `body` (a script without its `set terminal` line, which begins with
// the terminal's options, e.g. " size 800,400\nset output ..."), in pngcairo or else png.
// Returns "" when it wrote the picture, else why not (gnuplot missing or failing).
std::string plot_png(const std::string& body, const std::string& tmp_dir);

// A loopback TCP port that was free a moment ago.
int free_port();

// A fresh directory under the system temp dir; removed by the caller.
std::string make_temp_dir(const std::string& prefix);

// Retries `ready` until it is true or `limit` passes.
bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds limit);

// The value at quantile p (0..1) of an ascending vector; 0 when empty.
double percentile_of_sorted(const std::vector<double>& sorted, double p);

}  // namespace holdfast
