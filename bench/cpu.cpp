#include "bench/cpu.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "harness/processes.hpp"

namespace holdfast::bench {

namespace {

// utime + stime (+ cutime + cstime with `children`) of /proc/PID/stat, in seconds.
double stat_seconds(pid_t pid, bool children) {
  std::istringstream fields(proc_stat_fields(pid));
  std::string skip;
  for (int i = 3; i <= 13; ++i) fields >> skip;  // state .. cmajflt
  double utime = 0, stime = 0, cutime = 0, cstime = 0;
  fields >> utime >> stime >> cutime >> cstime;
  return (utime + stime + (children ? cutime + cstime : 0)) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

double cpu_seconds(pid_t pid) { return stat_seconds(pid, false); }
double cpu_seconds_with_reaped_children(pid_t pid) { return stat_seconds(pid, true); }

double reaped_children_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_CHILDREN, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

server_cpu::server_cpu(pid_t pid) : pid_(pid), start_(cpu_seconds_with_reaped_children(pid)) {
  for (auto child : children_of(pid)) children_.emplace_back(child, cpu_seconds(child));
}

double server_cpu::seconds_since() const {
  double used = cpu_seconds_with_reaped_children(pid_) - start_;
  // A child alive at the start: what it used since (if it ended meanwhile, its whole
  // life is in the parent's reaped figure, so its start sample comes off that).
  auto live = children_of(pid_);
  for (auto& [child, at_start] : children_) {
    if (std::find(live.begin(), live.end(), child) != live.end()) used += cpu_seconds(child) - at_start;
    else used -= at_start;
  }
  // Children born in the window and still alive.
  for (auto child : live)
    if (std::none_of(children_.begin(), children_.end(), [&](auto& c) { return c.first == child; }))
      used += cpu_seconds(child);
  return used;
}

std::pair<double, double> machine_cpu() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double v, total = 0, idle = 0;
  in >> cpu;
  for (int i = 0; i < 8 && in >> v; ++i) {
    total += v;
    if (i == 3 || i == 4) idle += v;  // idle, iowait
  }
  return {total - idle, total};
}

}  // namespace holdfast::bench
