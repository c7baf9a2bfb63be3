#include "harness/local_cluster.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "cluster/certs.hpp"
#include "harness/processes.hpp"
#include "protocol/files.hpp"

namespace holdfast {

local_cluster::local_cluster(const std::string& binary, const std::string& dir, int nodes,
                             std::vector<std::string> extra_args, bool start_nodes)
  : binary_(binary), dir_(dir), extra_(std::move(extra_args)) {
  std::string error;
  if (::access(file().c_str(), F_OK) != 0) {
    if (!init_cluster_dir(dir_, nodes, 0, "holdfast-local", false, cfg_, error))
      throw std::runtime_error(error);
  } else if (!load_cluster_file(file(), cfg_, error)) {
    throw std::runtime_error(error);
  }
  // A client_certs cluster answers only certificates: this harness (cluster up's link
  // check, chaos) uses the local admin one, made here once from the CA beside the file.
  if (cfg_.client_certs && !ensure_local_admin_certificate(cfg_, error)) throw std::runtime_error(error);
  if (start_nodes)
    for (auto id : ids()) start(id);
}

local_cluster::~local_cluster() {
  for (auto& [id, n] : nodes_) n.reset();  // kill -9 by pid, each reaped
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::vector<uint32_t> local_cluster::ids() const {
  std::vector<uint32_t> out;
  for (auto& m : cfg_.members) out.push_back(m.id);
  return out;
}

std::vector<std::string> local_cluster::webhook_urls() const {
  std::vector<std::string> out;
  for (auto& m : cfg_.members)
    if (!m.http.empty()) out.push_back("http://" + m.http + "/webhooks/payments");
  return out;
}

client_options local_cluster::client_config(int64_t timeout_ms) const {
  client_options o;
  o.call_timeout_ms = timeout_ms;
  cluster_tls_defaults(o, cfg_);
  return o;
}

raft_group_status local_cluster::raft_status(uint32_t id) const {
  // A thread of its own: a thread has at most one KJ event loop, and the caller's may have one.
  raft_group_status out;
  std::exception_ptr failed;
  std::thread([&] {
    try {
      blocking_client c(address(id), client_config(1'000));
      out = c.status().raft;
    } catch (...) {
      failed = std::current_exception();
    }
  }).join();
  if (failed) std::rethrow_exception(failed);
  return out;
}

uint32_t local_cluster::raft_leader(std::chrono::milliseconds limit) const {
  uint32_t found = 0;
  wait_until([&] {
    for (auto id : ids()) {
      if (!running(id) || stopped(id)) continue;
      try {
        if (raft_status(id).serving) {
          found = id;
          return true;
        }
      } catch (const std::exception&) {
      }
    }
    return false;
  }, limit);
  return found;
}

void local_cluster::start(uint32_t id) {
  if (running(id)) return;
  std::vector<std::string> args{"--cluster", file(), "--id", std::to_string(id)};
  auto& extra = extra_of_.count(id) ? extra_of_[id] : extra_;
  args.insert(args.end(), extra.begin(), extra.end());
  nodes_[id] = std::make_unique<node_process>(binary_, dir_ + "/node-" + std::to_string(id), args,
                                              std::chrono::seconds(30), env_of_[id]);
  stopped_[id] = false;
  if (attached_) {
    // A node of someone else's cluster: it stays if we are interrupted, and `cluster
    // down` finds it at once.
    forget_on_interrupt(nodes_[id]->pid());
    std::ofstream(pid_file(dir_, id)) << nodes_[id]->pid() << "\n";
  }
}

void local_cluster::kill9(uint32_t id) {
  if (auto* n = process(id)) n->kill9();
  nodes_.erase(id);
  stopped_[id] = false;
}

void local_cluster::stop_signal(uint32_t id) {
  if (auto* n = process(id)) {
    n->stop_signal();
    stopped_[id] = true;
  }
}

void local_cluster::continue_signal(uint32_t id) {
  if (auto* n = process(id)) {
    n->continue_signal();
    stopped_[id] = false;
  }
}

bool local_cluster::running(uint32_t id) const {
  auto it = nodes_.find(id);
  return it != nodes_.end() && it->second && it->second->running();
}

node_process* local_cluster::process(uint32_t id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.get();
}

bool local_cluster::links_up() const {
  for (auto id : ids()) {
    if (!running(id) || stopped(id)) continue;
    try {
      blocking_client c(address(id), client_config(1'000));
      auto s = c.status();
      for (auto& l : s.links)
        if (running(l.node) && !stopped(l.node) && l.state != "up") return false;
    } catch (const std::exception&) {
      return false;
    }
  }
  return true;
}

bool local_cluster::wait_links_up(std::chrono::milliseconds limit) const {
  return wait_until([this] { return links_up(); }, limit);
}

std::map<uint32_t, pid_t> local_cluster::release() {
  std::map<uint32_t, pid_t> out;
  for (auto& [id, n] : nodes_)
    if (n && n->running()) out[id] = n->release();
  nodes_.clear();
  return out;
}

void local_cluster::release_to_pid_files() {
  for (auto& [id, pid] : release()) std::ofstream(pid_file(dir_, id)) << pid << "\n";
}

std::string local_cluster::pid_file(const std::string& dir, uint32_t id) {
  return dir + "/node-" + std::to_string(id) + ".pid";
}

namespace {

std::vector<std::string> command_line(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::vector<std::string> out;
  std::string arg;
  while (std::getline(in, arg, '\0')) out.push_back(arg);
  return out;
}

// The value of `--name VALUE` or `--name=VALUE` in a command line; empty if absent.
std::string option_value(const std::vector<std::string>& args, const std::string& name) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == name && i + 1 < args.size()) return args[i + 1];
    if (args[i].rfind(name + "=", 0) == 0) return args[i].substr(name.size() + 1);
  }
  return {};
}

// Where `path`, as a process with working directory `cwd` names it, really is.
std::string real_path(const std::string& path, const std::string& cwd) {
  std::error_code ec;
  std::filesystem::path p = path;
  if (p.is_relative()) p = std::filesystem::path(cwd) / p;
  auto out = std::filesystem::weakly_canonical(p, ec);
  return ec ? p.lexically_normal().string() : out.string();
}

}  // namespace

pid_t local_cluster::live_pid(const std::string& dir, uint32_t id) {
  // The pid file; else whoever holds the node's data directory (DIR/node-N/holdfast.lock
  // names it): a node started by a command killed before it wrote the pid file.
  for (auto path : {pid_file(dir, id), dir + "/node-" + std::to_string(id) + "/holdfast.lock"}) {
    std::ifstream in(path);
    pid_t pid = 0;
    if (!(in >> pid) || pid <= 0 || process_gone(pid)) continue;
    // A recycled pid is somebody else's process, possibly a node of another cluster: it
    // must be `holdfast node` as member `id` of this directory's cluster file.
    auto args = command_line(pid);
    if (std::find(args.begin(), args.end(), "node") == args.end()) continue;
    if (option_value(args, "--id") != std::to_string(id)) continue;
    std::error_code ec;
    auto cwd = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/cwd", ec);
    if (ec) continue;
    auto theirs = real_path(option_value(args, "--cluster"), cwd.string());
    auto ours = real_path(dir + "/cluster.toml", std::filesystem::current_path(ec).string());
    if (theirs == ours) return pid;
  }
  return 0;
}

pid_t local_cluster::attached_by(const std::string& dir) {
  int fd = ::open((dir + "/chaos.lock").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  pid_t holder = 0;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
    char buf[32] = {};
    if (::read(fd, buf, sizeof buf - 1) > 0) holder = static_cast<pid_t>(std::atol(buf));
    if (holder <= 0) holder = -1;  // held, by an unknown process
  }
  ::close(fd);
  return holder;
}

void local_cluster::attach() {
  if (lock_fd_ < 0) {
    lock_fd_ = ::open((dir_ + "/chaos.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0) throw std::runtime_error("cannot open " + dir_ + "/chaos.lock");
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(lock_fd_);
      lock_fd_ = -1;
      auto holder = attached_by(dir_);
      throw std::runtime_error("another run is attached to " + dir_ +
                               (holder > 0 ? " (pid " + std::to_string(holder) + ")" : std::string()));
    }
    auto pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, pid.data(), pid.size(), 0) < 0)
      throw std::runtime_error("cannot write " + dir_ + "/chaos.lock");
  }
  for (auto id : ids()) {
    if (running(id)) continue;
    auto pid = live_pid(dir_, id);
    if (!pid)
      throw std::runtime_error("node " + std::to_string(id) + " of " + dir_ +
                               " is not running (no live pid in " + pid_file(dir_, id) +
                               "): `holdfast cluster up --dir " + dir_ + "` first");
    // A stopped member (SIGSTOP, ^Z) would hold its links down: say so now, not after the
    // 30 s the run waits for its links.
    if (auto fields = proc_stat_fields(pid); !fields.empty() && (fields[0] == 'T' || fields[0] == 't'))
      throw std::runtime_error("node " + std::to_string(id) + " of " + dir_ + " is stopped (pid " +
                               std::to_string(pid) + "): `kill -CONT " + std::to_string(pid) + "` first");
    // Its own options, without those start() sets.
    auto args = command_line(pid);
    std::vector<std::string> own;
    auto after = std::find(args.begin(), args.end(), "node");
    for (size_t i = static_cast<size_t>(after - args.begin()) + 1; i < args.size(); ++i) {
      auto& a = args[i];
      if (a == "--data" || a == "--cluster" || a == "--id") {
        ++i;
        continue;
      }
      if (a.rfind("--data=", 0) == 0 || a.rfind("--cluster=", 0) == 0 || a.rfind("--id=", 0) == 0)
        continue;
      own.push_back(a);
    }
    extra_of_[id] = own;
    attached_ = true;
    nodes_[id] = node_process::adopt(pid, address(id), dir_ + "/node-" + std::to_string(id) + ".log");
    stopped_[id] = false;
  }
}

bool set_raft_snapshot_entries(const std::string& dir, int entries, std::string& error) {
  std::string file = dir + "/cluster.toml", text;
  if (auto why = read_small_file(file, 1 << 20, text); !why.empty()) {
    error = file + ": " + why;
    return false;
  }
  const std::string key = "raft_snapshot_entries = ";
  auto at = text.find(key);
  if (at == std::string::npos) {
    error = file + " has no raft_snapshot_entries line";
    return false;
  }
  auto end = text.find_first_not_of("0123456789", at + key.size());
  text.replace(at, end - at, key + std::to_string(entries));
  return write_file_atomically(file, text, error);
}

}  // namespace holdfast
