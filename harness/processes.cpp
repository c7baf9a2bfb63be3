#include "harness/processes.hpp"

#include <fstream>
#include <sstream>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <ctime>
#include <cerrno>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace holdfast {
namespace {

std::vector<char*> c_strings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& a : v) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

pid_t spawn(const spawn_spec& spec) {
  if (spec.argv.empty()) throw std::runtime_error("spawn: empty argv");
  // Everything the child needs is built before fork: only async-signal-safe calls after.
  auto argv = c_strings(spec.argv);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), spec.env_extra.begin(), spec.env_extra.end());
  auto envp = c_strings(env_strings);
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid > 0) return pid;
  if (spec.stdout_fd >= 0) dup2(spec.stdout_fd, STDOUT_FILENO);
  if (spec.stderr_fd >= 0) dup2(spec.stderr_fd, STDERR_FILENO);
  int null = open("/dev/null", O_RDONLY);
  if (null >= 0) dup2(null, STDIN_FILENO);
  if (spec.new_session) setsid();
  if (spec.user &&
      (setgroups(0, nullptr) != 0 || setgid(spec.user->gid) != 0 || setuid(spec.user->uid) != 0))
    _exit(126);
  execve(argv[0], argv.data(), envp.data());
  _exit(127);
}

namespace {

constexpr size_t interrupt_slots = 256;
std::atomic<pid_t> interrupt_pids[interrupt_slots];
std::once_flag interrupt_installed;

// Directories to remove on an interrupt: fixed slots, so the handler needs no allocation.
constexpr size_t removal_slots = 16;
char removal_dirs[removal_slots][4096];
std::atomic<bool> removal_claimed[removal_slots];  // a registration owns the slot
std::atomic<bool> removal_used[removal_slots];     // its path is complete: the handler may use it

void install_interrupt_handler();

extern "C" void kill_registered_children(int signal) {
  kill_registered_now();
  // The killed children are reaped before their files go (they may be writing); then
  // `rm -rf` per directory, by fork and execve, which a signal handler may call.
  for (auto& slot : interrupt_pids)
    if (pid_t pid = slot.load(); pid > 0) waitpid(pid, nullptr, 0);
  for (size_t i = 0; i < removal_slots; ++i) {
    if (!removal_used[i].load()) continue;
    char rm[] = "/bin/rm", flags[] = "-rf";
    char* argv[] = {rm, flags, removal_dirs[i], nullptr};
    char* envp[] = {nullptr};
    pid_t pid = fork();
    if (pid == 0) {
      execve(rm, argv, envp);
      _exit(127);
    }
    if (pid > 0) waitpid(pid, nullptr, 0);
  }
  ::signal(signal, SIG_DFL);
  ::raise(signal);
}

}  // namespace

void remove_on_interrupt(const std::string& dir) {
  install_interrupt_handler();
  if (dir.empty() || dir.size() >= sizeof removal_dirs[0]) return;
  for (size_t i = 0; i < removal_slots; ++i) {
    bool claimed = false;
    if (!removal_claimed[i].compare_exchange_strong(claimed, true)) continue;
    std::memcpy(removal_dirs[i], dir.c_str(), dir.size() + 1);
    removal_used[i].store(true);
    return;
  }
}

void forget_removal_on_interrupt(const std::string& dir) {
  for (size_t i = 0; i < removal_slots; ++i)
    if (removal_used[i].load() && dir == removal_dirs[i]) {
      removal_used[i] = false;
      removal_claimed[i] = false;
    }
}

void kill_registered_now() {
  for (auto& slot : interrupt_pids)
    if (pid_t pid = slot.load(); pid > 0) ::kill(pid, SIGKILL);
}

namespace {
void install_interrupt_handler() {
  std::call_once(interrupt_installed, [] {
    struct sigaction sa {};
    sa.sa_handler = kill_registered_children;
    sigemptyset(&sa.sa_mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction old {};
      // A caller that chose to ignore the signal (nohup) keeps its choice.
      if (sigaction(s, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
      sigaction(s, &sa, nullptr);
    }
  });
}
}  // namespace

void kill_on_interrupt(pid_t pid) {
  install_interrupt_handler();
  for (auto& slot : interrupt_pids) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, pid)) return;
  }
}

void forget_on_interrupt(pid_t pid) {
  for (auto& slot : interrupt_pids) {
    pid_t expected = pid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

std::string proc_stat_fields(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(stat, text);
  auto name_end = text.rfind(')');  // "pid (comm) state ...": comm may hold anything
  return name_end == std::string::npos || name_end + 2 >= text.size() ? std::string() : text.substr(name_end + 2);
}

bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return true;
  auto fields = proc_stat_fields(pid);
  return !fields.empty() && fields[0] == 'Z';
}

std::vector<pid_t> children_of(pid_t pid) {
  // Every process's parent from /proc/*/stat (/proc/PID/task/*/children needs a kernel
  // option that not every kernel has).
  std::vector<pid_t> out;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto child = static_cast<pid_t>(std::stol(name));
    std::istringstream fields(proc_stat_fields(child));
    std::string state;
    long parent = 0;
    if (fields >> state >> parent && parent == pid) out.push_back(child);
  }
  return out;
}

int stop_child(pid_t pid, int signal, std::chrono::milliseconds grace) {
  int status = 0;
  ::kill(pid, signal);
  auto deadline = std::chrono::steady_clock::now() + grace;
  for (;;) {
    auto reaped = waitpid(pid, &status, WNOHANG);
    if (reaped == pid) break;
    if (reaped < 0 && errno == ECHILD) {  // not ours: its parent reaps it
      while (!process_gone(pid)) {
        if (std::chrono::steady_clock::now() > deadline) ::kill(pid, SIGKILL);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));  // poll interval
      }
      return -1;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // poll interval
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

child_process::child_process(const std::vector<std::string>& argv, const std::string& log_path,
                             std::optional<run_as> user, int stop_signal)
  : stop_signal_(stop_signal) {
  int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log < 0) throw std::runtime_error("cannot open " + log_path);
  if (user && fchown(log, user->uid, user->gid) != 0) {
    close(log);
    throw std::runtime_error("cannot chown " + log_path);
  }
  try {
    pid_ = spawn({argv, {}, user, log, log});
  } catch (...) {
    close(log);
    throw;
  }
  close(log);
  kill_on_interrupt(pid_);
}

child_process::~child_process() { stop(); }

bool child_process::alive() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    forget_on_interrupt(pid_);
    pid_ = -1;
    return false;
  }
  return true;
}

void child_process::stop() {
  if (pid_ <= 0) return;
  forget_on_interrupt(pid_);
  // A peer that ignores its stop signal for 10 s gets SIGKILL.
  stop_child(pid_, stop_signal_, std::chrono::seconds(10));
  pid_ = -1;
}

command_result run_command(const std::vector<std::string>& argv, std::optional<run_as> user,
                           const std::vector<std::string>& env_extra) {
  command_result result;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return result;
  pid_t pid;
  try {
    pid = spawn({argv, env_extra, user, fds[1], fds[1]});
  } catch (const std::exception&) {
    close(fds[0]);
    close(fds[1]);
    return result;
  }
  close(fds[1]);
  char buf[65536];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) result.output.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

command_result run_command_for(const std::vector<std::string>& argv,
                               std::chrono::milliseconds limit) {
  command_result result;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return result;
  spawn_spec spec{argv, {}, std::nullopt, fds[1], fds[1]};
  spec.new_session = true;
  pid_t pid;
  try {
    pid = spawn(spec);
  } catch (const std::exception&) {
    close(fds[0]);
    close(fds[1]);
    return result;
  }
  close(fds[1]);
  auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  bool exited = false, closed = false;
  while (!(exited && closed)) {
    if (std::chrono::steady_clock::now() > deadline) {
      result.timed_out = true;
      ::kill(-pid, SIGKILL);
      if (!exited) waitpid(pid, &status, 0);
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    poll(&p, 1, 20);  // poll interval
    char buf[65536];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) result.output.append(buf, static_cast<size_t>(n));
    if (n == 0) closed = true;
    if (!exited && waitpid(pid, &status, WNOHANG) == pid) exited = true;
  }
  close(fds[0]);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string find_program(const std::string& name, const std::vector<std::string>& extra_dirs) {
  std::vector<std::string> dirs;
  if (const char* path = getenv("PATH")) {
    std::string p = path;
    size_t at = 0;
    while (at <= p.size()) {
      auto colon = p.find(':', at);
      if (colon == std::string::npos) colon = p.size();
      if (colon > at) dirs.push_back(p.substr(at, colon - at));
      at = colon + 1;
    }
  }
  dirs.insert(dirs.end(), extra_dirs.begin(), extra_dirs.end());
  for (auto& d : dirs) {
    auto candidate = d + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

namespace {

// Binds `port` on loopback (0: any) and returns the port bound, or 0.
int try_bind_loopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t len = sizeof a;
  int bound = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    bound = ntohs(a.sin_port);
  close(fd);
  return bound;
}

}  // namespace

// Below the kernel's ephemeral range: a port picked inside it can be taken by any outgoing
// connection (a client's, a peer link's) between this check and the node's bind, which
// made a cluster test fail with "Address already in use". Outside it only another
// listener can race, and the pick is random over thousands of ports.
int free_port() {
  int ephemeral_low = 32768;
  {
    std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
    range >> ephemeral_low;
  }
  constexpr int floor = 10'000;
  if (ephemeral_low > floor + 1'000) {
    static std::mutex mutex;
    static std::minstd_rand pick(static_cast<unsigned>(getpid()) ^ static_cast<unsigned>(time(nullptr)));
    for (int attempt = 0; attempt < 100; ++attempt) {
      int port;
      {
        std::lock_guard<std::mutex> guard(mutex);
        port = floor + static_cast<int>(pick() % static_cast<unsigned>(ephemeral_low - floor));
      }
      if (try_bind_loopback(port) == port) return port;
    }
  }
  int port = try_bind_loopback(0);
  if (port == 0) throw std::runtime_error("no free loopback port");
  return port;
}

std::string make_temp_dir(const std::string& prefix) {
  std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::string plot_png(const std::string& body, const std::string& tmp_dir) {
  auto gnuplot = find_program("gnuplot");
  if (gnuplot.empty()) return "gnuplot is not installed (apt-get install gnuplot-nox)";
  command_result result;
  // pngcairo looks better; the plain png terminal is there when cairo is not.
  for (const char* terminal : {"pngcairo", "png"}) {
    std::ofstream(tmp_dir + "/plot.gp") << "set terminal " << terminal << body;
    result = run_command({gnuplot, tmp_dir + "/plot.gp"});
    if (result.status == 0) return "";
  }
  return "gnuplot failed: " + result.output.substr(0, 200);
}

bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!ready()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // poll interval
  }
  return true;
}

double percentile_of_sorted(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto i = static_cast<size_t>(p * static_cast<double>(sorted.size()));
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace holdfast
