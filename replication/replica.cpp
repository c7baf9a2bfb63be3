#include "replication/replica.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <new>

namespace holdfast::replication {

namespace {
// Every call from libraft into C++ goes through this: an exception must not unwind through
// the engine's C frames (its state would be half updated), so it ends the process loudly.
template <class F>
auto guarded(const char* what, F&& f) noexcept -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "holdfast: replica %s threw: %s\n", what, e.what());
  } catch (...) {
    std::fprintf(stderr, "holdfast: replica %s threw\n", what);
  }
  std::abort();
}
}  // namespace

const char* outcome_name(outcome o) {
  switch (o) {
    case outcome::committed: return "committed";
    case outcome::not_leader: return "not_leader";
    case outcome::outcome_unknown: return "outcome_unknown";
    case outcome::failed: return "failed";
  }
  return "?";
}

replica::replica(state_machine& machine) : machine_(machine) {
  callbacks_.data = this;
  callbacks_.apply = [](void* data, unsigned long long index, const char* bytes, size_t len) {
    auto* self = static_cast<replica*>(data);
    ++self->counters_.applied;
    guarded("apply", [&] { self->machine_.apply(index, std::string_view(bytes, len)); });
  };
  callbacks_.snapshot = [](void* data, const char** bytes, size_t* len) -> int {
    auto* self = static_cast<replica*>(data);
    bool ok = guarded("snapshot", [&] {
      try {
        return self->machine_.snapshot(self->snapshot_);
      } catch (const std::bad_alloc&) {
        return false;
      }
    });
    if (!ok) {
      std::string().swap(self->snapshot_);
      return 1;
    }
    *bytes = self->snapshot_.data();
    *len = self->snapshot_.size();
    ++self->counters_.snapshots_taken;
    self->snapshot_index_ = hf_last_applied(self->raft_);  // libraft snapshots at the applied entry
    return 0;
  };
  callbacks_.snapshot_done = [](void* data) { std::string().swap(static_cast<replica*>(data)->snapshot_); };
  callbacks_.restore = [](void* data, const char* bytes, size_t len) -> int {
    auto* self = static_cast<replica*>(data);
    // A snapshot the group committed that this replica cannot load: it would stop applying
    // (libraft does not retry), so it stops instead.
    if (!guarded("restore", [&] { return self->machine_.restore(std::string_view(bytes, len)); })) {
      std::fprintf(stderr, "holdfast: replica %llu cannot restore the group's snapshot\n",
                   static_cast<unsigned long long>(self->status().id));
      std::abort();
    }
    ++self->counters_.snapshots_restored;
    return 0;
  };
  callbacks_.malformed = [](void* data, unsigned long long index) {
    auto* self = static_cast<replica*>(data);
    if (self->counters_.malformed++ == 0)
      std::fprintf(stderr, "holdfast: replica: entry %llu is not a command; skipped (as every replica does)\n", index);
  };
  callbacks_.stepped = [](void* data) { guarded("step", [&] { static_cast<replica*>(data)->stepped(); }); };
  fsm_ = hf_fsm_create(&callbacks_);
  if (fsm_ == nullptr) throw std::bad_alloc();
}

// The raft instance is closed first (closing fires pending callbacks into this replica).
replica::~replica() { hf_fsm_destroy(fsm_); }

void replica::attach(raft* r) {
  raft_ = r;
  hf_attach(r, fsm_);
}

// After every step of the engine: did this replica start or stop leading, and has it
// applied the log it was elected with?
void replica::stepped() {
  hf_raft_info info;
  hf_info(raft_, &info);
  known_leader_.store(info.leader_id, std::memory_order_relaxed);
  const bool leader = info.state == HF_LEADER;
  if (!leader || broken_ || (serving_term_ != 0 && serving_term_ != info.term)) stop_serving();
  if (!leader || broken_) return;
  if (led_term_ != info.term) {
    led_term_ = info.term;
    serve_from_ = info.last_index;
  }
  if (serving_term_ == 0 && info.last_applied >= serve_from_) {
    serving_term_ = info.term;
    ++counters_.terms_led;
    machine_.leading(info.term);
  }
}

void replica::stop_serving() {
  if (serving_term_ == 0) return;
  serving_term_ = 0;
  machine_.following();
}

void replica::finish(outcome o, const done_fn& done) {
  switch (o) {
    case outcome::committed: ++counters_.committed; break;
    case outcome::not_leader: ++counters_.not_leader; break;
    case outcome::outcome_unknown: ++counters_.outcome_unknown; break;
    case outcome::failed: ++counters_.failed; break;
  }
  if (done) guarded("callback", [&] { done(o); });
}

struct replica::apply_request {
  replica* self;
  done_fn done;
};

namespace {
outcome outcome_of(int hf) {
  switch (hf) {
    case HF_COMMITTED: return outcome::committed;
    case HF_NOT_LEADER: return outcome::not_leader;
    // Shutting down with the entry in flight: it may be on a majority already.
    case HF_LEADERSHIP_LOST:
    case HF_SHUTDOWN: return outcome::outcome_unknown;
    default: return outcome::failed;
  }
}
}  // namespace

void replica::submit(std::string_view command, done_fn done) {
  ++counters_.submitted;
  // The engine's own state too: a step that failed, or the close, skips our step callback.
  hf_raft_info info{};
  if (raft_ != nullptr) hf_info(raft_, &info);
  if (broken_) {
    finish(outcome::failed, done);
    return;
  }
  if (serving_term_ == 0 || info.state != HF_LEADER || info.term != serving_term_) {
    finish(outcome::not_leader, done);
    return;
  }
  auto* request = new (std::nothrow) apply_request{this, std::move(done)};
  if (request == nullptr) {
    finish(outcome::failed, done);
    return;
  }
  int rv = hf_apply(raft_, command.data(), command.size(), [](void* data, int result) {
    auto* request = static_cast<apply_request*>(data);
    request->self->finish(outcome_of(result), request->done);
    delete request;
  }, request);
  if (rv != HF_SUBMITTED) {
    auto refused = std::move(request->done);
    delete request;
    if (rv == HF_IO_FAILED) {
      // In the engine's log, refused by the local disk or network at once: it may still
      // commit elsewhere, and libraft 0.22 does not recover from it (its legacy layer's
      // log and the engine's disagree): this replica takes nothing more.
      ++counters_.io_failures;
      broken_ = true;
      stop_serving();
      std::fprintf(stderr, "holdfast: replica %llu: its log refused an entry; it takes no more\n",
                   static_cast<unsigned long long>(status().id));
      finish(outcome::outcome_unknown, refused);
    } else {
      finish(rv == HF_NOT_LEADER ? outcome::not_leader : outcome::failed, refused);
    }
  }
}

void replica::transfer(uint64_t to, std::function<void(std::string refused)> done) {
  if (raft_ == nullptr) return done("the replica is not running");
  struct request {
    replica* self;
    uint64_t to;
    std::function<void(std::string)> done;
  };
  auto req = std::make_unique<request>(request{this, to, std::move(done)});
  int rv = hf_transfer(raft_, to, [](void* data) {
    std::unique_ptr<request> r(static_cast<request*>(data));
    hf_raft_info info;
    hf_info(r->self->raft_, &info);
    guarded("transfer", [&] {
      if (info.leader_id == r->to) return r->done("");
      r->done("replica " + std::to_string(r->to) + " did not take over within an election timeout (leader now " +
              (info.leader_id ? "replica " + std::to_string(info.leader_id) : std::string("unknown")) +
              "): is it up, and can it reach the others?");
    });
  }, req.get());
  if (rv == 0) {
    req.release();  // the callback's now
    return;
  }
  hf_raft_info info;
  hf_info(raft_, &info);
  req->done(info.state != HF_LEADER ? "this replica does not lead the group"
            : to == info.id         ? "replica " + std::to_string(to) + " leads already"
                                    : std::string(hf_strerror(rv)) + " (replica " + std::to_string(to) +
                                        ": a voter of the group, and no transfer under way?)");
}

void replica::change(int kind, uint64_t id, const std::string& address,
                     std::function<void(std::string refused)> done) {
  if (raft_ == nullptr) return done("the replica is not running");
  struct request {
    int kind;
    uint64_t id;
    std::function<void(std::string)> done;
  };
  static const char* verbs[] = {"adding", "promoting", "removing"};
  auto req = std::make_unique<request>(request{kind, id, std::move(done)});
  int rv = hf_change(raft_, kind, id, address.c_str(), [](void* data, int status) {
    std::unique_ptr<request> r(static_cast<request*>(data));
    guarded("configuration change", [&] {
      if (status == 0) return r->done("");
      r->done(std::string(verbs[r->kind]) + " replica " + std::to_string(r->id) + " failed: " + hf_strerror(status) +
              (r->kind == HF_CHANGE_PROMOTE ? " (it did not catch up with the leader's log: is it running, and can "
                                              "it reach the leader?)"
                                            : ""));
    });
  }, req.get());
  if (rv == 0) {
    req.release();  // the callback's now
    return;
  }
  hf_raft_info info;
  hf_info(raft_, &info);
  req->done(info.state != HF_LEADER ? std::string("this replica does not lead the group")
                                    : std::string(verbs[kind]) + " replica " + std::to_string(id) + ": " +
                                        hf_strerror(rv));
}

replica_status replica::status() const {
  replica_status s;
  if (raft_ == nullptr) return s;
  hf_raft_info info;
  hf_info(raft_, &info);
  static const char* names[] = {"unavailable", "follower", "candidate", "leader"};
  s.id = info.id;
  s.state = names[info.state];
  s.serving = serving_term_ != 0;
  s.term = info.term;
  s.commit_index = info.commit_index;
  s.last_applied = info.last_applied;
  s.last_index = info.last_index;
  s.snapshot_index = snapshot_index_;
  s.snapshots_taken = counters_.snapshots_taken;
  s.leader_id = info.leader_id;
  if (info.leader_address != nullptr) s.leader_address = info.leader_address;
  hf_server servers[32];
  unsigned n = hf_servers(raft_, servers, 32);
  s.configuration_pending = hf_configuration_pending(raft_) != 0;
  static const char* roles[] = {"voter", "standby", "spare"};
  for (unsigned i = 0; i < n; ++i) {
    s.servers.push_back({servers[i].id, roles[servers[i].role], servers[i].address});
    unsigned long long match = 0;
    if (info.state != HF_LEADER || servers[i].id == info.id || hf_match_index(raft_, servers[i].id, &match) != 0)
      continue;
    s.followers.push_back({servers[i].id, match, s.last_index > match ? s.last_index - match : 0});
  }
  return s;
}

}  // namespace holdfast::replication
