// CPU time from /proc, for CPU per operation: the steadiest figure on a small shared box.
#pragma once

#include <sys/types.h>

#include <utility>

namespace holdfast::bench {

// CPU seconds a process has used (all its threads); 0 if it is gone.
double cpu_seconds(pid_t pid);
// The machine's busy and total CPU time so far, from /proc/stat (every core).
std::pair<double, double> machine_cpu();

}  // namespace holdfast::bench
