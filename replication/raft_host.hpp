// A replica's home in a process: a thread running a libuv loop with one libraft instance on
// its own directory (raft_uv: the Raft log and its snapshots, fsync'd), whose connections to
// the other replicas come from a `raft_connector` (the node's mutual-TLS links).
//
// Threads: everything libraft does (and so the state machine's callbacks and submit's
// `done`) runs on the host's thread. The other methods may be called from any other thread
// (run() and status() wait for the host's thread: never from a callback). The connector
// outlives the host.
//
// The directory: locked for the host's life (a second host on it is refused), and bound to
// the replica's id at first use. libraft's auto-recovery is off: a damaged log segment stops
// the start with why instead of being set aside with the entries it held (which this
// replica may have acknowledged). Connections are accepted only from servers in the group's
// configuration (or `address_of` knows), and libraft answers them at the address the
// configuration gives, never at one the peer named (but for a joining replica that has no
// configuration yet and no `address_of`: the leader's first message brings it).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "replication/replica.hpp"

namespace holdfast::replication {

class raft_host;

// Makes the connections Raft runs over. A dial's answer and an accepted connection are a
// connected socket (a socketpair's end whose other end the connector carries over TLS).
class raft_connector {
public:
  virtual ~raft_connector() = default;
  // Incoming connections go to `host.accept` from now on (until stop()).
  virtual void start(raft_host& host) = 0;
  // Connect to server `id` at `address`: `done(fd)` once, from any thread; -1 = failed.
  virtual void dial(uint64_t id, const std::string& address, std::function<void(int fd)> done) = 0;
  // No accept or dial answer after this returns.
  virtual void stop() = 0;
};

struct raft_voter {
  uint64_t id = 0;
  std::string address;  // what the connector dials
};

struct raft_host_options {
  std::string dir;      // created if missing; Raft's own files
  uint64_t id = 0;
  std::string address;  // this replica's, as the others dial it
  std::vector<raft_voter> voters;  // the group's first configuration (a fresh directory only)
  // Added to a running group (raft_add by its leader): never bootstrapped; its configuration
  // and entries arrive from the leader, and until they do it neither votes nor campaigns.
  bool joining = false;
  // Checks the configuration the directory holds at start (empty for a joining replica
  // that has received none yet): "" or why this replica must not start with it. Unset: each
  // of `voters` must be in it at its address.
  std::function<std::string(const std::vector<server_info>&)> check_configuration;
  // Where server `id` is answered when the configuration does not name it ("" refuses it):
  // a leader that an uncommitted change in this replica's log removed (Raft needs its
  // AppendEntries to truncate that change), or a joining replica's first leader. Unset:
  // only a joining replica without a configuration answers at the address a connection names.
  std::function<std::string(uint64_t id)> address_of;
  unsigned election_timeout_ms = 1000;  // randomized between 1x and 2x by libraft
  unsigned heartbeat_ms = 100;
  bool pre_vote = true;
  unsigned snapshot_threshold = 0;  // 0: libraft's default (1024 entries)
  unsigned snapshot_trailing = 0;
  // The last entry the state machine has durably applied (0: unknown): a log that ends
  // before it refuses to start.
  uint64_t applied_at_start = 0;
};

class raft_host {
public:
  // Starts the thread and the replica; throws std::runtime_error with why on failure (the
  // directory in use or another replica's, its log damaged, this replica not in its
  // configuration).
  raft_host(raft_host_options options, state_machine& machine, raft_connector& connector);
  // Closes the replica (pending submissions answer outcome_unknown) and joins the thread.
  ~raft_host();
  // The same, keeping the object: later submissions answer not_leader at once, status()
  // "unavailable", leader_hint() what was last known. Idempotent.
  void close();
  raft_host(const raft_host&) = delete;
  raft_host& operator=(const raft_host&) = delete;

  // From any thread: appends `command` on this replica (see replica::submit); `done` runs
  // on the host's thread, or at once on the caller's with not_leader once the host is
  // closing (its destructor began).
  // `still` (optional) runs on the host's thread first: false answers not_leader without
  // appending (a condition that only that thread changes, checked where it holds).
  void submit(std::string command, replica::done_fn done, std::function<bool()> still = {});
  // From any thread: runs `f` on the host's thread and waits for it; once the host is
  // closing, returns without running it (status() then answers "unavailable").
  void run(const std::function<void(replica&)>& f);
  replica_status status();
  // From any thread, without waiting: the status as the host's thread copied it at most
  // about 100 ms ago ("unavailable" once closing).
  replica_status published_status() const;
  // From any thread: replica::transfer on the host's thread; `done` runs there, or at once
  // on the caller's when the host is closing.
  void transfer(uint64_t to, std::function<void(std::string refused)> done);
  // From any thread: `f` on the host's thread, without waiting; false (`f` dropped) once
  // the host is closing.
  bool post(std::function<void(replica&)> f);
  // From any thread, without waiting: the leader as this replica last knew it (0: none).
  uint64_t leader_hint() const;
  // From the connector, any thread: a connection from server `id` at `address`.
  void accept(uint64_t id, std::string address, int fd);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace holdfast::replication
