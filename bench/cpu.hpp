// CPU time from /proc, for CPU per operation: the steadiest figure on a small shared box.
#pragma once

#include <sys/types.h>

#include <utility>
#include <vector>

namespace holdfast::bench {

// CPU seconds a process has used (all its threads); 0 if it is gone.
double cpu_seconds(pid_t pid);
// The same plus what its children used that it has waited for (a server whose workers
// come and go: PostgreSQL's backends end when their client disconnects).
double cpu_seconds_with_reaped_children(pid_t pid);
// CPU seconds of this process's own children that have been waited for (getrusage):
// a load tool run to completion (redis-benchmark, pgbench).
double reaped_children_cpu_seconds();

// A server's CPU over a window: its own, its waited-for children's, and its live
// children's (sampled at both ends), so long-lived workers and short-lived ones count.
class server_cpu {
public:
  explicit server_cpu(pid_t pid);
  double seconds_since() const;  // CPU seconds used since construction
private:
  pid_t pid_;
  double start_ = 0;
  std::vector<std::pair<pid_t, double>> children_;
};
// The machine's busy and total CPU time so far, from /proc/stat (every core).
std::pair<double, double> machine_cpu();

}  // namespace holdfast::bench
