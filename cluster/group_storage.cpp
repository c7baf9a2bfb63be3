#include "cluster/group_storage.hpp"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <future>
#include <thread>

#include "protocol/files.hpp"
#include "protocol/log.hpp"

namespace holdfast {

std::unique_ptr<group_storage> group_storage::open(group_storage_options options,
                                                   replication::raft_connector& connector,
                                                   std::string& error) {
  std::unique_ptr<group_storage> g(new group_storage());
  options.storage.replicated = true;
  options.raft.dir = options.storage.path + "/raft";
  g->options_ = std::move(options);
  std::unique_ptr<storage> s = storage::open(g->options_.storage, error);
  if (!s) return nullptr;
  g->storage_ = std::move(s);
  g->options_.raft.applied_at_start = g->storage_->applied_index();
  // Data that came whole from a leader (an installed state) is ahead of this replica's own
  // log until the entries after it arrive: the check that the log reaches the data is for
  // entries this replica applied from its log, so it starts past the installed state.
  std::string installed;
  if (read_small_file(g->options_.storage.path + "/installed", 64, installed).empty() &&
      std::strtoull(installed.c_str(), nullptr, 10) >= g->options_.raft.applied_at_start)
    g->options_.raft.applied_at_start = 0;
  try {
    g->host_ = std::make_unique<replication::raft_host>(g->options_.raft, *g, connector);
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
  g->storage_->attach(g.get());
  return g;
}

group_storage::~group_storage() {
  // The replica closes first: a commit in flight answers (outcome_unknown), later ones
  // not_leader at once; then the storage lets go of it (attach waits for a commit that is
  // still in replicate()), and what waits for a confirmation is refused.
  if (host_) host_->close();
  if (storage_) storage_->attach(nullptr);
  end_tenure();
  host_.reset();
}

void group_storage::apply(uint64_t index, std::string_view command) {
  if (!storage_->apply_committed(index, command))
    spdlog::error("group storage {}: entry {} is not a commit; skipped", storage_->path(), index);
}

bool group_storage::snapshot(std::string& out) {
  // libraft asks again after every apply while one is due: a failure waits a while (the
  // log keeps its entries meanwhile; a disk that is full stays full for a bit).
  auto now = std::chrono::steady_clock::now();
  if (now < snapshot_retry_at_) return false;
  uint64_t index = 0;
  auto st = storage_->snapshot_reference(out, index);
  if (st != store_status::ok) {
    snapshot_retry_at_ = now + std::chrono::seconds(10);
    spdlog::warn("group storage {}: no Raft snapshot ({}); the log keeps its entries, next try in 10 s",
                 storage_->path(), to_string(st));
    return false;
  }
  spdlog::info("group storage {}: Raft snapshot (the state in LMDB at entry {}) in {:.1f} ms", storage_->path(),
               index, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - now).count());
  return true;
}

bool group_storage::ship(uint64_t index, std::string_view stored, std::string& out) {
  try {
    return ship_or_throw(index, stored, out);
  } catch (const std::exception& e) {
    spdlog::error("group storage {}: the state is not sent now (libraft tries again after its install "
                  "timeout): {}", storage_->path(), e.what());
    return false;
  }
}

bool group_storage::ship_or_throw(uint64_t index, std::string_view stored, std::string& out) {
  // Whatever was stored (a reference, or a state this replica installed), the state sent is
  // LMDB's now: it covers at least what the snapshot does, and entries it already has are
  // skipped when they come after it.
  auto started = std::chrono::steady_clock::now();
  uint64_t covers = 0, at = 0;
  if (!lmdb_env::state_position(stored, covers))
    throw std::runtime_error("the Raft snapshot at entry " + std::to_string(index) + " is damaged");
  // On a libuv pool thread, one at a time (raft_uv_c.c drops the sends libraft repeats
  // while one is under way).
  auto st = storage_->read_state(out, at);
  if (st != store_status::ok) throw std::runtime_error(std::string("reading the state: ") + to_string(st));
  if (at < covers)
    throw std::runtime_error("the data is at entry " + std::to_string(at) + ", behind its Raft snapshot's " +
                             std::to_string(covers));
  spdlog::info("group storage {}: sending the state at entry {} (Raft snapshot {}): {} bytes read in {:.1f} ms",
               storage_->path(), at, index, out.size(),
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
  return true;
}

bool group_storage::restore(std::string_view data) {
  std::string problem;
  auto started = std::chrono::steady_clock::now();
  auto before = storage_->applied_index();
  // Noted before the state goes in (see open): a start after it must not take the data's
  // position for entries this replica's log accepted.
  uint64_t at = 0;
  if (!lmdb_env::is_state_reference(data) && lmdb_env::state_position(data, at) && at > before &&
      !write_file_atomically(storage_->path() + "/installed", std::to_string(at) + "\n", problem)) {
    spdlog::critical("group storage {}: cannot note the state it installs: {}", storage_->path(), problem);
    return false;
  }
  auto st = storage_->install_state(data, problem);
  if (st != store_status::ok) {
    spdlog::critical("group storage {}: cannot install the group's state: {}{}{}", storage_->path(),
                     to_string(st), problem.empty() ? "" : ": ", problem);
    return false;
  }
  if (storage_->applied_index() != before)
    spdlog::info("group storage {}: installed the group's state at entry {} (had {}): {} bytes in {:.1f} ms",
                 storage_->path(), storage_->applied_index(), before, data.size(),
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
  return true;
}

void group_storage::leading(uint64_t term) {
  uint64_t tenure = 0;
  {
    std::lock_guard<std::mutex> lock(confirm_mutex_);
    tenure = ++tenure_;  // odd: leading
    confirmed_ = submitted_;  // only entries of this tenure confirm its answers
  }
  if (options_.on_leading) options_.on_leading(term, tenure);
}

void group_storage::following() {
  end_tenure();
  uint64_t tenure = 0;
  {
    std::lock_guard<std::mutex> lock(confirm_mutex_);
    tenure = tenure_;
  }
  if (options_.on_following) options_.on_following(tenure);
}

void group_storage::end_tenure() {
  {
    std::lock_guard<std::mutex> lock(confirm_mutex_);
    if (tenure_ % 2 == 1) ++tenure_;  // even: not leading
  }
  refuse_all();
}

void group_storage::refuse_all() {
  std::vector<waiting> refused;
  {
    std::lock_guard<std::mutex> lock(confirm_mutex_);
    refused.swap(waiting_);
  }
  for (auto& w : refused) w.refuse();
}

uint64_t group_storage::submit_tracked(std::string payload, replication::replica::done_fn done, uint64_t tenure) {
  uint64_t n = 0;
  {
    std::lock_guard<std::mutex> lock(confirm_mutex_);
    n = ++submitted_;
  }
  // Checked on the replica's thread, where tenures change: writes of a tenure that ended
  // (this replica led again meanwhile) are not appended.
  std::function<bool()> still;
  if (tenure != 0)
    still = [this, tenure] {
      std::lock_guard<std::mutex> lock(confirm_mutex_);
      return tenure_ == tenure;
    };
  host_->submit(std::move(payload), [this, n, done = std::move(done)](replication::outcome o) {
    if (o == replication::outcome::committed) {
      committed(n);
    } else {
      // Answers may wait on this entry: a barrier of their own commits, or fails and
      // ends the tenure's waiting.
      bool barrier = false;
      {
        std::lock_guard<std::mutex> lock(confirm_mutex_);
        barrier = !waiting_.empty() && !barrier_in_flight_ && tenure_ % 2 == 1;
        barrier_in_flight_ = barrier_in_flight_ || barrier;
      }
      if (barrier) submit_barrier();
    }
    done(o);
  }, std::move(still));
  return n;
}

void group_storage::committed(uint64_t submission) {
  std::vector<waiting> ready;
  {
    std::lock_guard<std::mutex> lock(confirm_mutex_);
    if (submission <= confirmed_) return;
    confirmed_ = submission;
    auto keep = std::partition(waiting_.begin(), waiting_.end(),
                               [&](const waiting& w) { return w.stamp >= confirmed_; });
    std::move(keep, waiting_.end(), std::back_inserter(ready));
    waiting_.erase(keep, waiting_.end());
  }
  for (auto& w : ready) w.release();
}

group_storage::confirmation_stamp group_storage::stamp(uint64_t tenure) {
  std::lock_guard<std::mutex> lock(confirm_mutex_);
  return {tenure, submitted_};
}

void group_storage::after(confirmation_stamp stamp, std::function<void()> release, std::function<void()> refuse) {
  bool now = false, over = false, barrier = false;
  {
    std::lock_guard<std::mutex> lock(confirm_mutex_);
    over = stamp.tenure != tenure_ || tenure_ % 2 == 0;
    now = !over && confirmed_ > stamp.submitted;
    if (!over && !now) {
      waiting_.push_back({stamp.submitted, std::move(release), std::move(refuse)});
      // An entry submitted after the stamp may be in flight already (a write's: if it
      // fails, a barrier follows); if not, an empty one. One barrier at a time: the next
      // one for whatever waits when it ends.
      barrier = submitted_ <= stamp.submitted && !barrier_in_flight_;
      barrier_in_flight_ = barrier_in_flight_ || barrier;
    }
  }
  if (over) return refuse();
  if (now) return release();
  if (barrier) submit_barrier();
}

void group_storage::submit_barrier() {
  submit_tracked(std::string(), [this](replication::outcome o) { barrier_done(o == replication::outcome::committed); });
}

void group_storage::barrier_done(bool ok) {
  if (!ok) {
    {
      std::lock_guard<std::mutex> lock(confirm_mutex_);
      barrier_in_flight_ = false;
    }
    return refuse_all();  // (the tenure ends when the replica says it stopped leading)
  }
  bool again = false;
  {
    std::lock_guard<std::mutex> lock(confirm_mutex_);
    // What still waits arrived after this barrier was submitted: another one.
    again = !waiting_.empty();
    barrier_in_flight_ = again;
  }
  if (again) submit_barrier();
}

store_status group_storage::replicate(std::string payload, uint64_t tenure) {
  auto answer = std::make_shared<std::promise<replication::outcome>>();
  auto outcome = answer->get_future();
  submit_tracked(std::move(payload), [answer](replication::outcome o) { answer->set_value(o); }, tenure);
  switch (outcome.get()) {
    case replication::outcome::committed: return store_status::ok;
    case replication::outcome::not_leader: return store_status::not_leader;
    case replication::outcome::outcome_unknown: return store_status::outcome_unknown;
    case replication::outcome::failed: return store_status::io_error;
  }
  return store_status::outcome_unknown;
}

}  // namespace holdfast
