// A cluster of `holdfast node` processes on loopback, from a directory made by
// `holdfast cluster init` (made here when missing): node <id> keeps its data in
// DIR/node-<id>/ and logs to DIR/node-<id>.log. Used by `holdfast cluster up`, the demo,
// `holdfast chaos`, the cluster benchmark and the process tests. Nodes still running when
// the handle goes are killed, unless released.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "client/client.hpp"
#include "client/cluster_file.hpp"
#include "harness/node_process.hpp"

namespace holdfast {

class local_cluster {
public:
  // Throws std::runtime_error when the directory cannot be made or read, or a node
  // does not start. `extra_args` go to every node.
  local_cluster(const std::string& binary, const std::string& dir, int nodes,
                std::vector<std::string> extra_args = {}, bool start_nodes = true);
  ~local_cluster();

  const cluster_config& config() const { return cfg_; }
  const std::string& dir() const { return dir_; }
  std::string file() const { return dir_ + "/cluster.toml"; }
  std::vector<uint32_t> ids() const;
  const std::string& address(uint32_t id) const { return cfg_.member(id)->client; }
  client_options client_config(int64_t timeout_ms = 5'000) const;  // TLS when the file says so

  void start(uint32_t id);  // (re)starts a node that is not running
  // The options every later start() passes (replacing those given so far).
  void set_args(std::vector<std::string> extra_args) { extra_ = std::move(extra_args); }
  // "NAME=value" entries node `id`'s later starts add to its environment (a test's faultfs shim).
  void set_env(uint32_t id, std::vector<std::string> env) { env_of_[id] = std::move(env); }
  // Each member's HTTP endpoint's webhook URL, http://HOST:PORT/webhooks/payments.
  std::vector<std::string> webhook_urls() const;
  void kill9(uint32_t id);
  void stop_signal(uint32_t id);      // SIGSTOP
  void continue_signal(uint32_t id);  // SIGCONT
  bool running(uint32_t id) const;
  bool stopped(uint32_t id) const { return stopped_.count(id) && stopped_.at(id); }
  node_process* process(uint32_t id);
  // True once every running, unstopped node reports every other such node's link up.
  bool links_up() const;
  bool wait_links_up(std::chrono::milliseconds limit) const;
  // A replicated cluster's: the running member whose replica serves as the SKU group's
  // leader, as it says itself; 0 when none does within `limit`.
  uint32_t raft_leader(std::chrono::milliseconds limit) const;
  // Member `id`'s replica as it reports it (a client on a thread of its own); throws when
  // it does not answer.
  raft_group_status raft_status(uint32_t id) const;
  // Lets the nodes outlive this handle; returns id -> pid.
  std::map<uint32_t, pid_t> release();
  // ...and records each pid in DIR/node-<id>.pid, as `holdfast cluster up` leaves them.
  void release_to_pid_files();

  // Takes over the nodes `cluster up` started in this directory (what `holdfast chaos
  // --attach` does); throws std::runtime_error naming a member that is not running.
  // A restart reuses the options the node was started with.
  void attach();
  static std::string pid_file(const std::string& dir, uint32_t id);
  // The pid in pid_file(dir, id) (else the one DIR/node-<id>/holdfast.lock names: a node
  // whose starter died before writing the pid file) if that process is still `holdfast
  // node` as member `id` of DIR/cluster.toml, else 0.
  static pid_t live_pid(const std::string& dir, uint32_t id);
  // The pid of the run attached to `dir` (it holds DIR/chaos.lock), -1 if that pid is
  // unknown, 0 if none is.
  static pid_t attached_by(const std::string& dir);

private:
  std::string binary_, dir_;
  std::vector<std::string> extra_;
  std::map<uint32_t, std::vector<std::string>> extra_of_;  // adopted nodes' own options
  std::map<uint32_t, std::vector<std::string>> env_of_;
  bool attached_ = false;
  int lock_fd_ = -1;  // DIR/chaos.lock, held while attached
  cluster_config cfg_;
  std::map<uint32_t, std::unique_ptr<node_process>> nodes_;
  std::map<uint32_t, bool> stopped_;
};

// Sets [cluster] raft_snapshot_entries in DIR/cluster.toml as `cluster init` wrote it (each
// replica's own setting: the file's hash stays). False with why.
bool set_raft_snapshot_entries(const std::string& dir, int entries, std::string& error);

}  // namespace holdfast
