#include "persistence/storage.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <unordered_map>

#include "persistence/active_hold_loader.hpp"
#include "persistence/data_directory.hpp"
#include "persistence/identity.hpp"
#include "protocol/log.hpp"

namespace holdfast {
namespace {

using steady = std::chrono::steady_clock;

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now().time_since_epoch())
    .count();
}

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// Sanity of a write batch before it is logged: the writer's invariants and the key
// limits. A batch that fails is a writer bug; it fails alone.
bool batch_sound(const std::vector<mutation>& batch) {
  const sku_record* sku = nullptr;
  bool holds = false;
  for (const auto& m : batch) {
    if (m.kind == mutation::put_sku) sku = &m.sku;
    holds = holds || m.kind == mutation::put_hold;
    if (m.kind != mutation::put_record) continue;
    const auto& r = m.record;
    if (r.key.empty() || r.key.size() > record_key_bytes_max ||
        r.value.size() > record_value_bytes_max || r.space < record_space::buyer ||
        r.space > record_space_last)
      return false;
  }
  // Entity records alone, or an SKU's changes (with any records it wrote).
  if (!sku) return !batch.empty() && !holds;
  const auto& name = sku->sku.sku;
  if (name.empty() || name.size() > sku_bytes_max || !check_invariants(sku->sku).empty())
    return false;
  for (const auto& m : batch) {
    if (m.kind != mutation::put_hold) continue;
    const auto& h = m.hold.hold;
    if (h.hold_id.empty() || h.hold_id.size() > hold_id_bytes_max || h.qty <= 0 ||
        (h.sku != name && !h.sku.empty()) || h.state > hold_state::returned)
      return false;
  }
  return true;
}

// A shared flock on the log directory while a backup reads it: the node deletes no
// segment meanwhile (node_log::drop_through tries the exclusive lock).
struct log_reading_lock {
  int fd = -1;
  explicit log_reading_lock(const std::string& dir) {
    fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) flock(fd, LOCK_SH);
  }
  ~log_reading_lock() {
    if (fd >= 0) close(fd);
  }
};

std::string utc_now_text() {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::unique_ptr<storage> storage::open(const storage_options& options, std::string& error) {
  try {
    return open_or_throw(options, error);
  } catch (const std::bad_alloc&) {
    error = "out of memory while opening " + options.path;
  } catch (const std::exception& e) {
    error = "opening " + options.path + ": " + e.what();
  }
  return nullptr;
}

std::unique_ptr<storage> storage::open_or_throw(const storage_options& options, std::string& error) {
  std::unique_ptr<storage> s(new storage());
  s->options_ = options;
  if (!s->options_.clock) s->options_.clock = std::make_shared<system_wall_clock>();
  const auto& path = options.path;
  const auto log_dir = path + "/log";
  // A new directory gets its log directory before anything is marked: a marked
  // directory without one lost its log.
  if (!options.read_only) {
    std::error_code ec;
    if (!exists(path) && !std::filesystem::create_directories(path, ec) && ec) {
      error = "create " + path + ": " + ec.message();
      return nullptr;
    }
    if (!options.replicated && !exists(path + "/holdfast.format") && !exists(path + "/data.mdb") &&
        !exists(log_dir))
      mkdir(log_dir.c_str(), 0755);
  }
  // A read-only open (check) reads the snapshot's position and then the log: the node
  // deletes no segment in between.
  std::unique_ptr<log_reading_lock> reading;
  if (options.read_only) reading = std::make_unique<log_reading_lock>(log_dir);
  lmdb_options lo;
  lo.path = path;
  lo.map_size_bytes = options.map_size_bytes;
  lo.readers_max = options.readers_max;
  lo.read_only = options.read_only;
  lo.sync = options.sync;
  s->env_ = lmdb_env::open(lo, error);
  if (!s->env_) return nullptr;
  auto& directory = s->env_->directory();
  bool migrating = directory.marked_format() == 1;
  // A replica's directory has the group's Raft log instead of a log of its own.
  if (options.replicated && exists(log_dir)) {
    error = path + " has a node log: it is a single node's or an unreplicated member's data "
                   "directory, not a replica group's";
    return nullptr;
  }
  if (!options.replicated && !exists(log_dir) && exists(path + "/raft")) {
    error = path + " is a replica group's directory (its changes are in raft/): it opens only "
                   "as a replica";
    return nullptr;
  }
  if (!options.replicated && !exists(log_dir)) {
    if (options.read_only || !migrating) {
      error = path + " has no log directory: a data directory of format " +
              std::to_string(data_directory::format) +
              " keeps its latest changes there; restore the directory from a backup";
      return nullptr;
    }
    mkdir(log_dir.c_str(), 0755);
  }
  log_options lopts;
  lopts.directory = log_dir;
  lopts.directory_id = s->env_->meta().directory_id;
  lopts.segment_bytes = options.log_segment_bytes;
  lopts.sync = options.sync;
  lopts.read_only = options.read_only;
  auto* ov = &s->overlay_;
  std::vector<std::vector<mutation>> batches;
  auto replay = [&](uint64_t, std::string_view payload, std::string& why) {
    batches.clear();
    if (!decode_commit(payload, batches)) {
      why = "its checksum holds but its contents cannot be decoded";
      return false;
    }
    for (auto& b : batches) ov->apply(b);
    return true;
  };
  if (options.read_only && !options.replay_log) return s;
  // Active hold ids are indexed in memory only: from the snapshot's active holds, then
  // the log. A writer refuses to start when a record or a hold log cannot be read (an
  // id it missed could be granted twice); `check` goes on and reports everything.
  {
    // Two threads: this one scans the SKU records (checksums, invariants), the loader's
    // reads the hold logs of those with holds into the index (active_hold_loader.hpp).
    active_hold_loader loader(*s->env_, s->overlay_, options.read_only);
    std::string problem;
    std::vector<std::pair<int64_t, std::string>> holders;
    auto st = s->env_->scan_skus(
      [&](const sku_record& r) {
        if (r.sku.active_holds <= 0) return;
        loader.add(r);
        if (!options.read_only) holders.emplace_back(r.earliest_deadline_ms, r.sku.sku);
      },
      problem);
    auto unreadable = loader.finish();
    if (st != store_status::ok && !options.read_only) {
      error = problem.empty() ? std::string("reading the SKU records: ") + to_string(st) : problem;
      return nullptr;
    }
    if (!unreadable.empty()) {
      error = unreadable;
      return nullptr;
    }
    if (!options.read_only && st == store_status::ok) {  // for the directory's start
      s->holders_at_open_ = std::move(holders);
      s->holders_generation_ = s->overlay_.generation();
    }
    // The same verdict `check` gives: a damaged entity record is refused, not served.
    if (!options.read_only) {
      st = s->env_->verify_records(problem);
      if (st != store_status::ok) {
        error = problem.empty() ? std::string("reading the entity records: ") + to_string(st) : problem;
        return nullptr;
      }
    }
  }
  if (options.replicated) {
    // The group's replica hands the entries after the snapshot to apply_committed.
    s->applied_index_ = s->env_->meta().snapshot_position;
  } else {
    s->log_ = node_log::open(lopts, s->env_->meta().snapshot_position, replay, s->recovery_, error);
    if (!s->log_) return nullptr;
  }
  if (migrating && !options.read_only && !directory.mark(s->env_->meta().directory_id, error))
    return nullptr;
  if (s->recovery_.torn_bytes > 0)
    spdlog::warn(options.read_only
                   ? "storage: the log ends in a torn record of {} bytes at {} (an append that "
                     "never returned); the next start cuts it"
                   : "storage: cut a torn log tail of {} bytes at {} (an append that never "
                     "returned; nothing it held was acknowledged)",
                 s->recovery_.torn_bytes, s->recovery_.torn_at);
  s->stats_.snapshot_position = s->env_->meta().snapshot_position;
  if (s->overlay_.active_mutations() > 0) s->changes_since_ms_ = steady_ms();
  if (!options.read_only && options.background)
    s->thread_ = std::thread([p = s.get()] { p->run_background(); });
  s->opened_ = true;
  return s;
}

storage::~storage() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> guard(wake_mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  if (!options_.read_only && options_.snapshot_at_close && opened_) {
    auto st = snapshot_now();
    if (st != store_status::ok)
      spdlog::warn("storage: no snapshot at close ({}); the next start replays the log",
                   to_string(st));
  }
}

// -- reads ------------------------------------------------------------------------

store_status storage::read_sku(const std::string& sku, sku_record& out) const {
  if (overlay_.find_sku(sku, out)) return store_status::ok;
  return env_->read_sku(sku, out);
}

store_status storage::read_record(record_space space, const std::string& key,
                                  std::string& value) const {
  auto full = record_key(space, key);
  entity_record r;
  if (!overlay_.find_record(full, r)) {
    auto st = env_->read_record(full, r);
    if (st != store_status::ok) return st;
  }
  if (r.deleted) return store_status::not_found;
  value = std::move(r.value);
  return store_status::ok;
}

store_status storage::scan_records(record_space space,
                                   const std::function<void(const entity_record&)>& f) const {
  // The overlay first: a record it drops meanwhile is in LMDB by then.
  std::map<std::string, entity_record> all;
  std::map<std::string, entity_record> newer;
  overlay_.records_of(space, newer);
  auto st = env_->scan_records(space, [&](const entity_record& r) { all[r.key] = r; });
  if (st != store_status::ok) return st;
  for (auto& [key, r] : newer) all[key] = std::move(r);
  for (auto& [key, r] : all)
    if (!r.deleted) f(r);
  return store_status::ok;
}

store_status storage::scan_records_from(record_space space, const std::string& from_key, size_t max,
                                        const std::function<void(const entity_record&)>& f) const {
  std::map<std::string, entity_record> all, newer;
  overlay_.records_of(space, newer);
  bool full = false;  // LMDB had more than the page: keys past its last one are not all here
  std::string last;
  size_t n = 0;
  auto st = env_->scan_records(
    space,
    [&](const entity_record& r) {
      all[r.key] = r;
      last = r.key;
      full = ++n >= max;
    },
    from_key, max);
  if (st != store_status::ok) return st;
  for (auto& [key, r] : newer)
    if (key >= from_key && (!full || key <= last)) all[key] = std::move(r);
  size_t given = 0;
  for (auto& [key, r] : all) {
    if (r.deleted) continue;
    if (given++ >= max) break;
    f(r);
  }
  return store_status::ok;
}

store_status storage::lookup_hold_sku(const std::string& hold_id, std::string& sku) const {
  if (overlay_.find_hold_sku(hold_id, sku)) return store_status::ok;
  return env_->lookup_hold_sku(hold_id, sku);
}

store_status storage::hold_page(const std::string& sku, const std::string& after,
                                const std::function<bool(const hold_record&)>& wanted, size_t limit,
                                size_t scan_max, std::vector<hold_record>& out, std::string& next) const {
  // Only ended holds are read: every active one is in the SKU's book (the caller's), and
  // an id the overlay has as ended overrules the snapshot's record of it.
  for (;;) {
    auto generation = overlay_.generation();
    std::map<std::string, hold_record> page;
    std::string last;    // the last id read from the snapshot
    bool cut = false;    // the scan stopped with ids unread
    size_t read = 0;
    hold_record newer;
    auto st = env_->scan_finished_holds(sku, after, [&](const hold_record& r) {
      last = r.hold.hold_id;
      if (!overlay_.find_hold(sku, last, newer) && wanted(r)) page.emplace(last, r);
      cut = ++read >= scan_max || page.size() > limit;
      return !cut;
    });
    // The overlay's first limit + 1: no later one of them can be in the page.
    auto ended = overlay_.ended_holds(sku, after, wanted, limit + 1);
    // A snapshot froze or landed between the reads: they may not fit together.
    if (overlay_.generation() != generation) continue;
    if (st != store_status::ok) return st;
    for (auto& r : ended)
      if (!cut || r.hold.hold_id <= last) page[r.hold.hold_id] = std::move(r);
    out.clear();
    next.clear();
    for (auto& [id, r] : page) {
      if (out.size() == limit) {
        next = out.back().hold.hold_id;
        return store_status::ok;
      }
      out.push_back(std::move(r));
    }
    if (cut) next = last;
    return store_status::ok;
  }
}

store_status storage::read_active_holds(const std::string& sku,
                                        std::vector<hold_record>& out) const {
  for (;;) {
    auto generation = overlay_.generation();
    std::vector<hold_record> changed;
    overlay_.holds_of(sku, changed);
    std::vector<hold_record> base;
    auto st = env_->read_active_holds(sku, base);
    // A snapshot froze or landed between the two reads: they may not fit together.
    if (overlay_.generation() != generation) continue;
    if (st != store_status::ok) return st;
    first_seen_index in_overlay(changed.size());
    auto id_at = [&](size_t p) -> const std::string& { return changed[p].hold.hold_id; };
    for (size_t i = 0; i < changed.size(); ++i) in_overlay.find_or_add(changed[i].hold.hold_id, i, id_at);
    out.reserve(out.size() + base.size() + changed.size());
    for (auto& h : base)
      if (in_overlay.find(h.hold.hold_id, id_at) == first_seen_index::npos) out.push_back(std::move(h));
    for (auto& h : changed)
      if (h.hold.state == hold_state::active) out.push_back(std::move(h));
    return store_status::ok;
  }
}

store_status storage::scan_skus(const std::function<void(const sku_record&)>& f,
                                std::string& problem) const {
  std::map<std::string, sku_record> changed;
  overlay_.each_sku([&](const sku_record& r) { changed.emplace(r.sku.sku, r); });
  bool broken = false;
  auto emit = [&](const sku_record& r) {
    if (broken) return;
    if (auto why = check_invariants(r.sku); !why.empty()) {
      problem = "sku '" + r.sku.sku + "': " + why;
      broken = true;
      return;
    }
    f(r);
  };
  auto st = env_->scan_skus(
    [&](const sku_record& r) {
      while (!changed.empty() && changed.begin()->first < r.sku.sku) {
        emit(changed.begin()->second);
        changed.erase(changed.begin());
      }
      if (auto it = changed.find(r.sku.sku); it != changed.end()) {
        emit(it->second);
        changed.erase(it);
      } else {
        emit(r);
      }
    },
    problem);
  if (st != store_status::ok) return st;
  for (auto& [name, r] : changed) emit(r);
  return broken ? store_status::corrupt : store_status::ok;
}

store_status storage::scan_skus_with_holds(const std::function<void(const std::string&, int64_t)>& f,
                                           std::string& problem) const {
  std::optional<std::vector<std::pair<int64_t, std::string>>> holders;
  {
    std::lock_guard<std::mutex> guard(holders_mutex_);
    holders.swap(holders_at_open_);
  }
  // What changed since the snapshot overrules it (a record open's scan checked is not
  // checked again; the overlay's are). Read between two looks at the generation: with
  // no freeze or drop since open, the overlay holds every change since that snapshot.
  std::unordered_map<std::string, sku_record> changed;
  bool from_open = holders && overlay_.generation() == holders_generation_;
  if (from_open) {
    overlay_.each_sku([&](const sku_record& r) { changed.emplace(r.sku.sku, r); });
    from_open = overlay_.generation() == holders_generation_;
  }
  if (!from_open)
    return scan_skus(
      [&](const sku_record& r) {
        if (r.sku.active_holds > 0) f(r.sku.sku, r.earliest_deadline_ms);
      },
      problem);
  for (auto& [name, r] : changed) {
    if (auto why = check_invariants(r.sku); !why.empty()) {
      problem = "sku '" + name + "': " + why;
      return store_status::corrupt;
    }
  }
  for (auto& [name, r] : changed)
    if (r.sku.active_holds > 0) f(name, r.earliest_deadline_ms);
  for (auto& [deadline, name] : *holders)
    if (!changed.count(name)) f(name, deadline);
  return store_status::ok;
}

store_status storage::list_skus(const sku_list_query& query, sku_page& out,
                                std::string& problem) const {
  const size_t want = (query.limit ? query.limit : sku_list_limit_default) + size_t{1};
  auto wanted = [&](const std::string& name) {
    return name.compare(0, query.prefix.size(), query.prefix) == 0 &&
           (query.after.empty() || name > query.after);
  };
  // SKUs are never deleted: the overlay only adds records or replaces LMDB's, so the
  // first `want` of the union are among its matches and LMDB's first `want` matches.
  std::map<std::string, sku_record> found;
  for (auto& name : overlay_.sku_names(query.prefix, query.after, want)) {
    sku_record r;
    if (overlay_.find_sku(name, r)) found.emplace(name, std::move(r));
  }
  size_t from_lmdb = 0;
  auto st = env_->scan_skus_from(
    std::max(query.prefix, query.after),
    [&](const sku_record& r) {
      if (r.sku.sku.compare(0, query.prefix.size(), query.prefix) != 0) return false;
      if (!wanted(r.sku.sku)) return true;
      found.emplace(r.sku.sku, r);  // the overlay's newer record stays
      return ++from_lmdb < want;
    },
    problem);
  if (st != store_status::ok) return st;
  out.skus.clear();
  for (auto& [name, r] : found) {
    if (out.skus.size() + 1 == want) {
      out.next = out.skus.back().sku;
      break;
    }
    out.skus.push_back(r.sku);
  }
  return store_status::ok;
}

storage::read_view::read_view(const storage* s) : storage_(s) {}

lmdb_env::read_view& storage::read_view::snapshot() {
  // The generation is read before the transaction begins: the transaction then holds
  // every snapshot that generation promises.
  auto generation = storage_->overlay_.generation();
  if (!view_) {
    view_ = storage_->env_->read();
  } else if (generation != generation_) {
    view_->refresh();
  }
  generation_ = generation;
  return *view_;
}

store_status storage::read_view::lookup_hold_sku(const std::string& hold_id, std::string& sku) {
  if (storage_->overlay_.find_hold_sku(hold_id, sku)) return store_status::ok;
  return snapshot().lookup_hold_sku(hold_id, sku);
}

store_status storage::read_view::read_finished_hold(const std::string& sku,
                                                    const std::string& hold_id,
                                                    hold_record& out) {
  hold_record h;
  if (storage_->overlay_.find_hold(sku, hold_id, h)) {
    if (h.hold.state == hold_state::active) return store_status::not_found;
    out = std::move(h);
    return store_status::ok;
  }
  return snapshot().read_finished_hold(sku, hold_id, out);
}

store_status storage::read_view::has_sku(const std::string& sku) {
  sku_record r;
  if (storage_->overlay_.find_sku(sku, r)) return store_status::ok;
  return snapshot().has_sku(sku);
}

void storage::read_view::refresh() {
  if (view_) {
    generation_ = storage_->overlay_.generation();
    view_->refresh();
  }
}

std::unique_ptr<storage::read_view> storage::read() const {
  return std::unique_ptr<read_view>(new read_view(this));
}

// -- writes -----------------------------------------------------------------------

store_status storage::commit(const std::vector<commit_part>& parts,
                             std::vector<store_status>& part_status, uint64_t tenure) {
  part_status.assign(parts.size(), store_status::ok);
  auto started = std::chrono::steady_clock::now();
  // A failed batch takes its writer's later batches with it: they build on its state.
  auto fail_batch = [&](size_t i, store_status why) {
    for (size_t j = i; j < parts.size(); ++j)
      if (parts[j].writer == parts[i].writer && part_status[j] == store_status::ok)
        part_status[j] = why;
  };
  for (size_t i = 0; i < parts.size(); ++i)
    if (part_status[i] == store_status::ok && !batch_sound(*parts[i].mutations))
      fail_batch(i, store_status::rejected);
  std::unique_lock<std::mutex> lock(commit_mutex_);
  // Room in the overlay: wait for a healthy snapshot, refuse when snapshots fail.
  while (overlay_.active_mutations() + overlay_.frozen_mutations() >=
         options_.overlay_mutations_max) {
    if (!options_.background) {
      lock.unlock();
      auto st = snapshot_once();
      lock.lock();
      if (st != store_status::ok) return st;
      continue;
    }
    if (snapshot_status_ != store_status::ok) return snapshot_status_;
    {
      std::lock_guard<std::mutex> guard(stats_mutex_);
      stats_.commit_waits++;
    }
    wake_.notify_one();
    snapshot_done_.wait_for(lock, std::chrono::milliseconds(100));
  }
  // One hold id on one SKU is the node-wide claim's job (overlay::claim_hold): an index
  // check per new hold here cost the store thread 6% of the node's CPU on row 1b. The
  // snapshot keeps the first SKU an id was indexed on, and `holdfast check` reports a
  // second.
  std::vector<std::vector<mutation>*> batches;
  batches.reserve(parts.size());
  for (size_t i = 0; i < parts.size(); ++i)
    if (part_status[i] == store_status::ok) batches.push_back(parts[i].mutations);
  if (batches.empty()) return store_status::ok;
  if (options_.replicated) return commit_replicated(batches, lock, started, tenure);
  auto payload = encode_commit(batches);
  uint64_t seq = 0;
  std::string error;
  auto st = log_->append(payload, seq, error);
  if (st != store_status::ok) {
    static rate_limit limit;
    uint64_t held = 0;
    if (limit.allow(held))
      spdlog::error("storage: {} ({}; {} more not logged)", error, to_string(st), held);
    return st;
  }
  for (auto* b : batches) overlay_.apply(*b, /*index_active=*/false);  // claimed by their reserves
  if (changes_since_ms_ == 0) changes_since_ms_ = steady_ms();
  {
    std::lock_guard<std::mutex> guard(stats_mutex_);
    stats_.log_appends++;
    stats_.log_bytes += node_log::record_bytes(payload.size());
  }
  commit_batches_.record(static_cast<int64_t>(batches.size()));
  commit_us_.record(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count());
  bool due = overlay_.active_mutations() >= options_.snapshot_mutations;
  lock.unlock();
  if (due) {
    if (options_.background) wake_.notify_one();
    else snapshot_once();
  }
  return store_status::ok;
}

store_status storage::commit_replicated(std::vector<std::vector<mutation>*>& batches,
                                       std::unique_lock<std::mutex>& lock,
                                       std::chrono::steady_clock::time_point started, uint64_t tenure) {
  auto payload = encode_commit(batches);
  // The replica applies the entry (apply_committed takes the mutex) before it answers.
  lock.unlock();
  store_status st = store_status::not_leader;
  {
    std::lock_guard<std::mutex> hold(replicator_mutex_);
    if (replicator_) st = replicator_->replicate(std::string(payload), tenure);
  }
  if (st != store_status::ok) return st;
  commit_batches_.record(static_cast<int64_t>(batches.size()));
  commit_us_.record(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count());
  return store_status::ok;
}

bool storage::apply_committed(uint64_t index, std::string_view payload) {
  std::vector<std::vector<mutation>> batches;
  // An empty entry changes nothing: a leader's read barrier (cluster/replicated_skus.cpp).
  bool decoded = payload.empty() || decode_commit(payload, batches);
  bool due = false;
  {
    std::lock_guard<std::mutex> lock(commit_mutex_);
    if (index <= applied_index_.load(std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> guard(stats_mutex_);
      stats_.entries_skipped++;
      return true;
    }
    applied_index_.store(index, std::memory_order_release);
    if (!decoded) return false;
    for (auto& b : batches) overlay_.apply(b);
    // An empty entry (a read barrier) changed nothing: no snapshot is due for it.
    if (changes_since_ms_ == 0 && !batches.empty()) changes_since_ms_ = steady_ms();
    due = overlay_.active_mutations() >= options_.snapshot_mutations;
    std::lock_guard<std::mutex> guard(stats_mutex_);
    stats_.entries_applied++;
    stats_.log_bytes += payload.size();
  }
  if (due) {
    if (options_.background) wake_.notify_one();
    else snapshot_once();
  }
  return true;
}

store_status storage::rebuild_hold_claims(std::string& problem) {
  // Read without holding up applies (a long scan would stop the replica's heartbeats): a
  // leader rebuilds before its directory runs, when nothing of its own is in flight and the
  // earlier entries are applied, so nothing changes the holds meanwhile.
  overlay::active_batch batch;
  store_status failed = store_status::ok;
  auto st = scan_skus_with_holds(
    [&](const std::string& name, int64_t) {
      std::vector<hold_record> holds;
      auto read = read_active_holds(name, holds);
      if (read != store_status::ok) {
        failed = read;
        problem = "sku '" + name + "': its active holds: " + to_string(read);
        return;
      }
      auto number = overlay_.sku_number(name);
      for (auto& h : holds) batch.add(h.hold.hold_id, number);
    },
    problem);
  if (st != store_status::ok || failed != store_status::ok) return st != store_status::ok ? st : failed;
  std::lock_guard<std::mutex> lock(commit_mutex_);
  overlay_.clear_active_index();
  overlay_.index_active(batch);
  return store_status::ok;
}

store_status storage::snapshot_reference(std::string& out, uint64_t& index) {
  auto st = snapshot_now();
  if (st != store_status::ok) return st;
  {
    std::lock_guard<std::mutex> guard(stats_mutex_);
    index = stats_.snapshot_position;  // what LMDB is stamped with: nothing applies meanwhile
  }
  out = lmdb_env::state_reference(index);
  return store_status::ok;
}

store_status storage::install_state(std::string_view state, std::string& problem) {
  uint64_t at = 0;
  if (!lmdb_env::state_position(state, at)) {
    problem = "not a Holdfast state or reference (its header or checksum)";
    return store_status::corrupt;
  }
  if (at <= applied_index()) return store_status::ok;
  if (lmdb_env::is_state_reference(state)) {
    problem = "this replica's Raft snapshot refers to its data at entry " + std::to_string(at) +
              ", and its data is at entry " + std::to_string(applied_index()) +
              ": the data was lost or replaced by an older copy (replace the replica)";
    return store_status::corrupt;
  }
  // Everything waiting in memory is older than the state: written out first, so the
  // overlay is empty and reads see only what the state has once it is in.
  auto st = snapshot_now();
  if (st != store_status::ok) {
    problem = std::string("writing the changes that waited: ") + to_string(st);
    return st;
  }
  {
    std::lock_guard<std::mutex> one(snapshot_mutex_);
    uint64_t position = 0;
    st = env_->import_state(state, now_ms(), position, problem);
    if (st != store_status::ok) return st;
    std::lock_guard<std::mutex> lock(commit_mutex_);
    applied_index_.store(position, std::memory_order_release);
  }
  {
    std::lock_guard<std::mutex> guard(holders_mutex_);
    holders_at_open_.reset();
  }
  {
    std::lock_guard<std::mutex> guard(stats_mutex_);
    stats_.snapshot_position = at;
    stats_.states_installed++;
  }
  return rebuild_hold_claims(problem);
}

// -- snapshots and collection ----------------------------------------------------------

store_status storage::snapshot_once() {
  std::lock_guard<std::mutex> one(snapshot_mutex_);
  {
    std::lock_guard<std::mutex> lock(commit_mutex_);
    if (!overlay_.has_frozen()) {
      if (overlay_.active_mutations() == 0) {
        changes_since_ms_ = 0;  // nothing waits: the background thread has nothing due
        return store_status::ok;
      }
      overlay_.freeze();
      frozen_position_ = log_ ? log_->last_seq() : applied_index_.load();
      changes_since_ms_ = 0;
    }
  }
  auto started = steady::now();
  auto contents = overlay_.frozen_contents();
  auto st = env_->write_snapshot(contents, frozen_position_, now_ms());
  size_t deleted = 0;
  if (st == store_status::ok) {
    overlay_.drop_frozen();
    // The generation's many small blocks go back to the system, not to a free list
    // that keeps the node's resident size at its peak.
    malloc_trim(0);
    if (log_) deleted = log_->drop_through(frozen_position_);
  } else {
    static rate_limit limit;
    uint64_t held = 0;
    if (limit.allow(held))
      spdlog::error("storage: snapshot of {} changes failed: {}; the log keeps them",
                    contents.mutations, to_string(st));
  }
  {
    std::lock_guard<std::mutex> lock(commit_mutex_);
    snapshot_status_ = st;
  }
  {
    std::lock_guard<std::mutex> guard(stats_mutex_);
    if (st == store_status::ok) {
      stats_.snapshots++;
      stats_.snapshot_mutations += contents.mutations;
      stats_.segments_deleted += deleted;
      stats_.snapshot_position = frozen_position_;
      stats_.last_snapshot_ms =
        std::chrono::duration<double, std::milli>(steady::now() - started).count();
    } else {
      stats_.snapshot_failures++;
    }
  }
  snapshot_done_.notify_all();
  return st;
}

store_status storage::snapshot_now() {
  auto st = snapshot_once();
  // A frozen generation was pending: what came after it waits in the active one.
  if (st == store_status::ok && overlay_.active_mutations() > 0) st = snapshot_once();
  return st;
}

void storage::collect_step(int64_t now, bool& backlog) {
  auto r = env_->collect_finished(now - options_.finished_hold_retention_ms,
                                  options_.collect_scan_max, collect_cursor_, now);
  backlog = r.status == store_status::ok && !r.wrapped && r.deleted > 0;
  std::lock_guard<std::mutex> guard(stats_mutex_);
  stats_.finished_collected += r.deleted;
  if (r.wrapped) stats_.collection_passes++;
}

void storage::maintain() {
  snapshot_now();
  bool backlog = false;
  collect_step(now_ms(), backlog);
}

void storage::run_background() {
  // Snapshots are background work: under load they yield to the threads that answer
  // calls (they still get their share, and a full overlay makes commits wait for them).
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 5);
  int64_t next_collect = steady_ms() + options_.collect_interval_ms;
  // After a failed snapshot: 100 ms, doubling to 2 s, and never less than four times what
  // the failed attempt took: an overlay of millions of changes that cannot fit (a full
  // map) costs seconds of CPU per attempt, and retrying every 2 s kept a core busy on a
  // node that could only refuse writes.
  int64_t retry_ms = 0;
  int64_t next_retry = 0;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      if (stopping_) return;
    }
    auto now = steady_ms();
    auto since = changes_since_ms_.load();
    bool due = overlay_.has_frozen() ||
               overlay_.active_mutations() >= options_.snapshot_mutations ||
               (since != 0 && now - since >= options_.snapshot_interval_ms);
    if (due && now >= next_retry) {
      if (snapshot_once() == store_status::ok) {
        retry_ms = 0;
      } else {
        auto took = steady_ms() - now;
        retry_ms = std::min<int64_t>(2'000, retry_ms == 0 ? 100 : retry_ms * 2);
        retry_ms = std::max(retry_ms, 4 * took);
        next_retry = steady_ms() + retry_ms;
      }
      continue;
    }
    if (now >= next_collect) {
      bool backlog = false;
      collect_step(now_ms(), backlog);
      next_collect = now + (backlog ? 10 : options_.collect_interval_ms);
      continue;
    }
    int64_t wait = next_collect - now;
    if (since != 0) wait = std::min(wait, since + options_.snapshot_interval_ms - now);
    if (due) wait = std::min(wait, next_retry - now);
    std::unique_lock<std::mutex> lock(wake_mutex_);
    if (stopping_) return;
    wake_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(1, wait)));
    if (stopping_) return;
  }
}

// -- backup, check, stats ------------------------------------------------------------

store_status storage::backup(const std::string& directory, std::string& error) const {
  // Not into the source, nor anywhere inside it.
  std::error_code ec;
  auto source = std::filesystem::weakly_canonical(path(), ec).string() + "/";
  auto into = std::filesystem::weakly_canonical(directory, ec).string() + "/";
  if (into.compare(0, source.size(), source) == 0) {
    error = directory + " is inside the data directory it would copy";
    return store_status::io_error;
  }
  auto target = data_directory::open(directory, data_directory::mode::write, error);
  if (!target) return store_status::io_error;
  if (!target->fresh() || !target->marked_id().empty()) {
    error = directory + " is not empty: a backup goes into a new or empty directory";
    return store_status::io_error;
  }
  if (options_.replicated) {
    error = "a replica's directory is not backed up this way: its group's other replicas "
            "hold its data (replace the replica instead)";
    return store_status::io_error;
  }
  const auto log_dir = path() + "/log";
  log_reading_lock reading(log_dir);
  if (auto st = env_->copy_to(directory, error); st != store_status::ok) return st;
  uint64_t position = 0, last = 0;
  if (!lmdb_env::read_snapshot_position(directory, position, error)) return store_status::io_error;
  if (!node_log::copy(log_dir, directory + "/log", meta().directory_id, position, last, error))
    return store_status::io_error;
  // The copy is what the source is, marked as a backup: it starts only through
  // `holdfast restore`, never as a second copy of a live member.
  directory_identity identity;
  if (!read_identity(path(), identity, error)) return store_status::io_error;
  if (identity.kind == directory_identity::role::none) identity.kind = directory_identity::role::single;
  identity.backup = true;
  identity.backup_taken = utc_now_text() + " from " + source.substr(0, source.size() - 1);
  if (!write_identity(directory, identity, error)) return store_status::io_error;
  if (!target->mark(meta().directory_id, error)) return store_status::io_error;
  target.reset();
  // The copy must open as a directory of its own.
  storage_options check_options;
  check_options.path = directory;
  check_options.read_only = true;
  std::string why;
  if (!storage::open(check_options, why)) {
    error = "the copy does not open: " + why;
    return store_status::corrupt;
  }
  return store_status::ok;
}

check_report storage::check() const {
  auto report = env_->check();
  if (!log_ && !options_.replicated) report.problems.push_back("the log was not read");
  report.snapshot_position = meta().snapshot_position;
  report.log_records = static_cast<int64_t>(recovery_.replayed);
  report.log_torn_bytes = recovery_.torn_bytes;
  // The SKUs the log changed since the snapshot, as the node would serve them.
  std::vector<sku_record> changed;
  overlay_.each_sku([&](const sku_record& r) { changed.push_back(r); });
  for (auto& r : changed) {
    const auto& name = r.sku.sku;
    if (auto broken = check_invariants(r.sku); !broken.empty()) {
      report.problems.push_back("sku '" + name + "' (log): " + broken);
      continue;
    }
    std::vector<hold_record> holds;
    if (auto st = read_active_holds(name, holds); st != store_status::ok) {
      report.problems.push_back("sku '" + name + "' (log): active holds: " + to_string(st));
      continue;
    }
    int64_t reserved = 0;
    for (auto& h : holds) reserved += h.hold.qty;
    if (reserved != r.sku.reserved || static_cast<int64_t>(holds.size()) != r.sku.active_holds)
      report.problems.push_back("sku '" + name + "' (log): record says reserved " +
                                std::to_string(r.sku.reserved) + " in " +
                                std::to_string(r.sku.active_holds) + " holds, its holds have " +
                                std::to_string(reserved) + " in " + std::to_string(holds.size()));
  }
  return report;
}

storage_stats storage::stats() const {
  std::lock_guard<std::mutex> guard(stats_mutex_);
  auto s = stats_;
  if (log_) {
    s.log_position = log_->last_seq();
    s.log_segments = log_->segment_count();
  }
  s.overlay_mutations = overlay_.active_mutations() + overlay_.frozen_mutations();
  if (options_.replicated) s.log_position = s.applied_index = applied_index();
  s.commit_latency = commit_us_.read();
  s.commit_batches = commit_batches_.read();
  if (log_) s.sync_latency = log_->sync_latency();
  return s;
}

}  // namespace holdfast
