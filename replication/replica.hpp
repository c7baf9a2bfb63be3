// One replica of a replica group: a C++ face over a libraft instance (raft.h's "legacy"
// API: raft_io, raft_fsm, raft_apply, raft_barrier), which is what Debian's libraft 0.22
// drives its FSM through.
//
// What libraft does and this relies on (read in raft.h, src/legacy.c of 0.22.1):
// - The FSM is synchronous: a committed entry is applied on the raft loop as soon as
//   the commit index passes it, on every replica, in log order; the snapshot callback
//   runs on the same loop and must hand back the whole state (its buffers stay ours until
//   snapshot_finalize).
// - A raft_apply callback fires after its entry was applied (status 0), or with
//   RAFT_LEADERSHIPLOST when this server stopped leading first: the entry may still be
//   committed by the next leader, so the caller's answer is "outcome unknown".
// - `legacy.step_cb` runs after every step of the engine: the only place to notice that
//   leadership began or ended before the next client call (raft.h has no state callback).
//
// Callbacks into the state machine and `done` must not throw (the process aborts: an
// exception cannot unwind through libraft). A snapshot that cannot be restored aborts too.
//
// The rule this adds, for whoever decides on the leader (an SKU actor deciding against its
// book before the entry commits): a replica *serves* only once it has applied every entry
// its log held when it became leader (libraft appends a barrier entry then when any of them
// was not known committed). By Raft's leader completeness every entry an earlier leader got
// committed is in that log, so the state is complete before anything is decided (noticed at
// the engine's next step after that apply: a tick at most later). When it
// stops leading, `following()` tells the state machine to drop whatever it decided that the
// group has not applied.
//
// Single-threaded: every call on the thread that runs the raft loop. The replica must
// outlive the raft instance (raft_close fires pending callbacks): close the raft first.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "replication/raft_c.h"

namespace holdfast::replication {

// What a replica group replicates: a deterministic function of the committed commands.
class state_machine {
public:
  virtual ~state_machine() = default;
  // One committed command, at log `index`: the same bytes, in the same order, everywhere.
  virtual void apply(uint64_t index, std::string_view command) = 0;
  // The whole applied state, and its inverse (a follower that fell behind the leader's
  // log receives the leader's snapshot instead of the entries). snapshot: false = not now
  // (libraft asks again after a later apply); restore: false = refused.
  virtual bool snapshot(std::string& out) = 0;
  virtual bool restore(std::string_view data) = 0;
  // Sending the state to a follower the leader's log no longer reaches: what to send in
  // place of `stored` (the snapshot this replica took or installed at entry `index`), on a
  // thread of its own while the replica goes on: true with `out`; false (or throwing):
  // nothing now, libraft sends again after its install timeout. Not overridden: `stored`.
  virtual bool ship(uint64_t index, std::string_view stored, std::string& out) {
    out.assign(stored);
    return true;
  }
  // This replica leads `term` and everything committed before it is applied: it may decide.
  virtual void leading(uint64_t term) {}
  // It stopped leading (or never served): anything decided but not applied is void.
  virtual void following() {}
};

enum class outcome {
  committed,        // applied on this replica; a majority has it on disk
  not_leader,       // refused: this replica is not serving (see leader())
  outcome_unknown,  // leadership was lost while in flight: it may or may not commit
  failed,           // refused by the engine (out of memory): nothing was appended
};
const char* outcome_name(outcome o);

struct follower_progress {
  uint64_t id = 0;
  uint64_t match_index = 0;  // highest entry known to be on its log
  uint64_t lag = 0;          // leader's last index minus match_index
};

struct server_info {
  uint64_t id = 0;
  const char* role = "voter";  // voter, standby, spare
  std::string address;
};

struct replica_status {
  uint64_t id = 0;
  const char* state = "unavailable";  // follower, candidate, leader, unavailable
  bool serving = false;
  uint64_t term = 0;
  uint64_t commit_index = 0;
  uint64_t last_applied = 0;
  uint64_t last_index = 0;
  uint64_t leader_id = 0;
  std::string leader_address;
  std::vector<follower_progress> followers;  // when leading: every other server
  std::vector<server_info> servers;  // the configuration this replica has (its last, committed or not)
  bool configuration_pending = false;  // `servers` is not committed yet
  uint64_t snapshot_index = 0;   // the entry its latest snapshot covers (0: none taken yet)
  uint64_t snapshots_taken = 0;
};

struct replica_counters {
  uint64_t submitted = 0, committed = 0, not_leader = 0, outcome_unknown = 0, failed = 0;
  uint64_t applied = 0, snapshots_taken = 0, snapshots_restored = 0;
  uint64_t terms_led = 0;
  uint64_t io_failures = 0;  // the local disk refused an entry at once: see hf_apply
  uint64_t malformed = 0;    // committed entries that were not commands: skipped
};

class replica {
public:
  explicit replica(state_machine& machine);
  ~replica();
  replica(const replica&) = delete;
  replica& operator=(const replica&) = delete;

  // The FSM to give libraft (raft_init, raft_fixture_grow); then attach() the raft instance
  // before it starts.
  raft_fsm* fsm() { return fsm_; }
  void attach(raft* r);

  // Appends `command` as one entry when serving; `done` is called once, on the raft loop:
  // a refusal (not serving, engine error) before submit returns, the rest when the entry
  // is applied or leadership is lost.
  using done_fn = std::function<void(outcome)>;
  void submit(std::string_view command, done_fn done);

  // Hands leadership to voter `to` (raft_transfer: it is sent the entries it lacks, then
  // told to start an election at once). `done` runs once on the raft loop: "" when `to`
  // leads, else why not (this replica does not lead, `to` is not a voter or is this one,
  // a transfer is already under way, or `to` did not take over within an election timeout).
  void transfer(uint64_t to, std::function<void(std::string refused)> done);

  // A change of the group's configuration, on the leader (see hf_change in raft_c.h):
  // HF_CHANGE_ADD `id` at `address` as a spare, HF_CHANGE_PROMOTE spare `id` to voter
  // once it caught up, HF_CHANGE_REMOVE `id`. `done` runs once on the raft loop: "" when
  // the new configuration is committed, else why not.
  void change(int kind, uint64_t id, const std::string& address, std::function<void(std::string refused)> done);

  bool serving() const { return serving_term_ != 0; }
  // The leader this replica knew at its engine's last step (0: none): readable from any
  // thread, for routing hints.
  uint64_t known_leader() const { return known_leader_.load(std::memory_order_relaxed); }
  bool broken() const { return broken_; }
  replica_status status() const;
  const replica_counters& counters() const { return counters_; }

private:
  struct apply_request;
  void stepped();
  void stop_serving();
  void finish(outcome o, const done_fn& done);

  state_machine& machine_;
  hf_fsm_callbacks callbacks_{};
  raft_fsm* fsm_ = nullptr;
  raft* raft_ = nullptr;
  uint64_t led_term_ = 0;     // the term this replica last became leader in
  uint64_t serve_from_ = 0;   // serving once applied up to here (its log when it was elected)
  uint64_t serving_term_ = 0; // 0: not serving
  bool broken_ = false;       // its log refused an entry: it takes no more (see submit)
  std::string snapshot_;      // handed to libraft until it is written
  uint64_t snapshot_index_ = 0;
  std::atomic<uint64_t> known_leader_{0};
  replica_counters counters_;
};

}  // namespace holdfast::replication
