#include "persistence/lmdb_env.hpp"

#include <fcntl.h>
#include <lmdb.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <atomic>
#include <filesystem>
#include <string_view>
#include <unordered_map>

#include "persistence/clock.hpp"
#include "persistence/crc32c.hpp"
#include "persistence/data_directory.hpp"
#include "protocol/regular_file.hpp"
#include "protocol/log.hpp"

namespace holdfast {

const char* to_string(store_status s) {
  switch (s) {
    case store_status::ok: return "ok";
    case store_status::not_found: return "not found";
    case store_status::map_full: return "storage map full";
    case store_status::disk_full: return "disk full";
    case store_status::readers_full: return "reader table full";
    case store_status::corrupt: return "record corrupt";
    case store_status::io_error: return "i/o error";
    case store_status::rejected: return "write rejected";
    case store_status::outcome_unknown:
      return "the write may or may not be durable (a log append that could not be undone, or "
             "its group's leadership lost): retry with the same ids";
    case store_status::not_leader: return "this replica does not lead its group";
  }
  return "?";
}

namespace {

store_status from_mdb(int rc) {
  switch (rc) {
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
      return store_status::corrupt;
    case MDB_BAD_VALSIZE:
    case MDB_KEYEXIST:
    case EINVAL:
      return store_status::rejected;
    case MDB_SUCCESS: return store_status::ok;
    case MDB_NOTFOUND: return store_status::not_found;
    case MDB_MAP_FULL: return store_status::map_full;
    case MDB_READERS_FULL: return store_status::readers_full;
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
      return store_status::disk_full;
    default: return store_status::io_error;
  }
}

MDB_val val(const std::string& s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

// Hold-log blocks are keyed by SKU then big-endian block number: one SKU's log is one
// range, in write order, and appends land at its end.
std::string block_key(const std::string& sku, uint64_t block) {
  std::string k;
  k.reserve(sku.size() + 9);
  k.append(sku).push_back('\0');
  for (int shift = 56; shift >= 0; shift -= 8) k.push_back(static_cast<char>(block >> shift));
  return k;
}

// Finished holds are keyed by SKU then hold id.
std::string hold_key(const std::string& sku, const std::string& hold_id) {
  std::string k;
  k.reserve(sku.size() + 1 + hold_id.size());
  k.append(sku).push_back('\0');
  k.append(hold_id);
  return k;
}

struct read_txn {
  MDB_txn* txn = nullptr;
  int rc;
  explicit read_txn(MDB_env* env) { rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn); }
  ~read_txn() {
    if (txn) mdb_txn_abort(txn);
  }
};

}  // namespace

struct lmdb_env::impl {
  std::unique_ptr<data_directory> directory;
  MDB_env* env = nullptr;
  MDB_dbi skus = 0;
  MDB_dbi hold_log = 0;
  MDB_dbi finished_holds = 0;
  MDB_dbi hold_index = 0;
  MDB_dbi records = 0;
  bool has_records = false;  // a read-only open of a directory from before entity records
  // A Bloom filter of the ids in hold_index: a new hold id (nearly every reserve) is
  // known absent without a B-tree search. Bits are only ever set; ids the collector
  // deletes stay in it as false positives, which cost one search.
  std::unique_ptr<std::atomic<uint64_t>[]> bloom;
  uint64_t bloom_mask = 0;  // bits - 1

  static void bloom_probes(const void* key, size_t size, uint64_t (&out)[4], uint64_t mask) {
    uint64_t h1 = std::hash<std::string_view>{}(std::string_view(static_cast<const char*>(key), size));
    uint64_t h2 = ((h1 * 0x9E3779B97F4A7C15ULL) ^ (h1 >> 29)) | 1;
    for (int i = 0; i < 4; ++i) out[i] = (h1 + static_cast<uint64_t>(i) * h2) & mask;
  }
  void bloom_add(const void* key, size_t size) {
    uint64_t p[4];
    bloom_probes(key, size, p, bloom_mask);
    for (auto bit : p) bloom[bit >> 6].fetch_or(uint64_t{1} << (bit & 63), std::memory_order_relaxed);
  }
  bool bloom_may_hold(const std::string& key) const {
    uint64_t p[4];
    bloom_probes(key.data(), key.size(), p, bloom_mask);
    for (auto bit : p)
      if (!(bloom[bit >> 6].load(std::memory_order_relaxed) & (uint64_t{1} << (bit & 63))))
        return false;
    return true;
  }
  // Sized for at least 16 bits per indexed id (about 0.2% false positives), filled from
  // the index.
  int build_bloom(MDB_txn* txn) {
    MDB_stat st;
    if (int rc = mdb_stat(txn, hold_index, &st)) return rc;
    uint64_t bits = uint64_t{1} << 24;
    while (bits < st.ms_entries * 16) bits <<= 1;
    bloom.reset(new std::atomic<uint64_t>[bits / 64]);
    for (uint64_t i = 0; i < bits / 64; ++i) bloom[i].store(0, std::memory_order_relaxed);
    bloom_mask = bits - 1;
    MDB_cursor* cursor = nullptr;
    if (int rc = mdb_cursor_open(txn, hold_index, &cursor)) return rc;
    MDB_val k, v;
    int rc;
    for (rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT))
      bloom_add(k.mv_data, k.mv_size);
    mdb_cursor_close(cursor);
    return rc == MDB_NOTFOUND ? 0 : rc;
  }
  MDB_dbi meta_db = 0;
  size_t map_size_bytes = 0;
  directory_meta meta;  // the store thread updates its clock mark
  int64_t clock_high_water_at_open_ms = 0;

  // EIO from a commit is often a short write on a full disk: say so when it is.
  store_status classify(int rc) const {
    auto s = from_mdb(rc);
    if (s != store_status::io_error) return s;
    struct statvfs v;
    if (statvfs(directory->path().c_str(), &v) == 0 &&
        static_cast<uint64_t>(v.f_bavail) * v.f_frsize < (uint64_t{64} << 20))
      return store_status::disk_full;
    return s;
  }

  ~impl() {
    if (env) mdb_env_close(env);
  }

  // Replays `sku`'s hold-log blocks from its last checkpoint: later blocks overrule
  // earlier ones, the last state of each hold id wins. `out` gets the active holds (or,
  // with `all`, every hold the blocks name); `entries` the number of entries read.
  store_status replay_holds(MDB_txn* txn, const std::string& sku, std::vector<hold_record>& out,
                            size_t* entries = nullptr, bool all = false) const {
    MDB_cursor* cursor = nullptr;
    int rc = mdb_cursor_open(txn, hold_log, &cursor);
    if (rc != 0) return from_mdb(rc);
    auto st = replay_holds(cursor, sku, out, entries, all);
    mdb_cursor_close(cursor);
    return st;
  }
  // The same with a cursor on hold_log that the caller keeps: SKUs read in key order
  // through one cursor find each next range on the page the cursor is on.
  store_status replay_holds(MDB_cursor* cursor, const std::string& sku, std::vector<hold_record>& out,
                            size_t* entries = nullptr, bool all = false) const {
    std::vector<hold_record> entries_read;
    auto st = walk_blocks(cursor, sku, [&](const MDB_val& v) {
      return decode_block(v.mv_data, v.mv_size, sku, entries_read);
    });
    if (st != store_status::ok) return st;
    // Newest first: the first entry seen of each hold id is its latest state.
    first_seen_index seen(entries_read.size());
    auto id_at = [&](size_t p) -> const std::string& { return entries_read[p].hold.hold_id; };
    out.reserve(out.size() + entries_read.size());
    for (size_t n = entries_read.size(); n-- > 0;) {
      auto& h = entries_read[n];
      if (seen.find_or_add(h.hold.hold_id, n, id_at) != first_seen_index::npos) continue;
      if (all || h.hold.state == hold_state::active) out.push_back(h);
    }
    if (entries) *entries = entries_read.size();
    return st;
  }
  // The same for the ids of the active holds only, as views into `arena`.
  store_status replay_active_ids(MDB_cursor* cursor, const std::string& sku, std::string& arena,
                                 std::vector<block_id>& entries_read, std::vector<std::string_view>& out) const {
    arena.clear();
    entries_read.clear();
    out.clear();
    auto st = walk_blocks(cursor, sku, [&](const MDB_val& v) {
      return decode_block_ids(v.mv_data, v.mv_size, arena, entries_read);
    });
    if (st != store_status::ok) return st;
    auto id_of = [&](size_t p) {
      return std::string_view(arena).substr(entries_read[p].offset, entries_read[p].size);
    };
    first_seen_index seen(entries_read.size());
    for (size_t n = entries_read.size(); n-- > 0;) {
      auto id = id_of(n);
      if (seen.find_or_add(id, n, id_of) != first_seen_index::npos) continue;
      if (entries_read[n].state == hold_state::active) out.push_back(id);
    }
    return st;
  }
  // Hands each of `sku`'s hold-log blocks, oldest first, to `block` (false: corrupt).
  template <class Block>
  store_status walk_blocks(MDB_cursor* cursor, const std::string& sku, Block&& block) const {
    int rc = 0;
    std::string prefix = sku;
    prefix.push_back('\0');
    MDB_val k = val(prefix), v;
    for (rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
      if (k.mv_size != prefix.size() + 8 || memcmp(k.mv_data, prefix.data(), prefix.size()) != 0)
        break;
      if (!block(v)) return store_status::corrupt;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return from_mdb(rc);
    return store_status::ok;
  }

  // A directory without holdfast.format whose data.mdb holds nothing was left by a first
  // start that died before marking it (LMDB had written its meta pages, perhaps Holdfast
  // its databases and directory record): it is new. Empty when so, else what it holds.
  // Nothing is created.
  std::string first_start_leftover(MDB_txn* txn, int& rc) const {
    static const std::vector<std::string> ours = {"skus", "hold_log", "finished_holds",
                                                  "hold_index", "meta", "records"};
    MDB_dbi main = 0;
    MDB_cursor* cursor = nullptr;
    if ((rc = mdb_dbi_open(txn, nullptr, 0, &main)) != 0 ||
        (rc = mdb_cursor_open(txn, main, &cursor)) != 0)
      return {};
    std::vector<std::string> names;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT))
      names.emplace_back(static_cast<const char*>(k.mv_data), k.mv_size);
    mdb_cursor_close(cursor);
    if (rc != MDB_NOTFOUND) return {};
    rc = 0;
    size_t skus = 0, records = 0;
    for (auto& name : names) {
      if (std::find(ours.begin(), ours.end(), name) == ours.end())
        return " is not Holdfast's (it holds '" + name +
               "') and the directory has no holdfast.format: not a Holdfast data directory";
      if (name == "meta") continue;  // the directory record: written with the databases
      MDB_dbi dbi = 0;
      MDB_stat st;
      if ((rc = mdb_dbi_open(txn, name.c_str(), 0, &dbi)) != 0 || (rc = mdb_stat(txn, dbi, &st)) != 0)
        return {};
      (name == "skus" ? skus : records) += st.ms_entries;
    }
    if (skus + records == 0) return {};
    return " holds " + std::to_string(skus) + " SKUs and " + std::to_string(records) +
           " other records but the directory has no holdfast.format: it lost its directory "
           "record; restore it from a backup";
  }

  template <class Record>
  store_status get(MDB_dbi dbi, const std::string& key, Record& out) const {
    read_txn t(env);
    if (t.rc != 0) return from_mdb(t.rc);
    MDB_val k = val(key), v;
    int rc = mdb_get(t.txn, dbi, &k, &v);
    if (rc != 0) return from_mdb(rc);
    return decode(v.mv_data, v.mv_size, out) ? store_status::ok : store_status::corrupt;
  }
};

lmdb_env::lmdb_env(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
lmdb_env::~lmdb_env() = default;

std::unique_ptr<lmdb_env> lmdb_env::open(const lmdb_options& options, std::string& error) {
  auto p = std::make_unique<impl>();
  const bool read_only = options.read_only;
  p->directory = data_directory::open(
    options.path, read_only ? data_directory::mode::read_only : data_directory::mode::write, error);
  if (!p->directory) return nullptr;
  auto fail = [&](const std::string& what, int rc) -> std::unique_ptr<lmdb_env> {
    error = what + ": " + mdb_strerror(rc);
    return nullptr;
  };
  const auto data_file = p->directory->file("data.mdb");
  // LMDB's own open() and read() would block on a FIFO: its files are looked at first,
  // data.mdb through a descriptor of its own.
  struct stat st {};
  int data_fd = open_regular(data_file, O_RDONLY, error);
  bool missing = data_fd < 0 && errno == ENOENT;
  if (data_fd < 0 && !missing) return nullptr;
  if (data_fd >= 0) {
    fstat(data_fd, &st);
    close(data_fd);
  }
  error.clear();
  if (auto problem = regular_or_absent(p->directory->file("lock.mdb")); !problem.empty()) {
    error = problem;
    return nullptr;
  }
  bool has_data = !missing && st.st_size > 0;
  const auto& marked = p->directory->marked_id();
  if (!marked.empty() && !has_data) {
    error = options.path + " was a Holdfast data directory (id " + marked + ") but data.mdb is " +
            (missing ? "missing" : "empty") +
            ": refusing to serve an empty catalogue; restore the directory from a backup";
    return nullptr;
  }
  // Unmarked, the directory is new or what a first start left (data_directory::open
  // refused anything else); a reader gets here only in the second case.
  const auto not_yet = options.path +
                       " is not a Holdfast data directory yet (no holdfast.format): a first "
                       "start stopped before it marked it, and its LMDB files hold nothing; a "
                       "node started on it begins empty";
  if (marked.empty() && read_only && !has_data) {
    error = not_yet;
    return nullptr;
  }
  int rc = mdb_env_create(&p->env);
  if (rc != 0) return fail("mdb_env_create", rc);
  if ((rc = mdb_env_set_maxdbs(p->env, 8)) != 0) return fail("set_maxdbs", rc);
  if ((rc = mdb_env_set_maxreaders(p->env, options.readers_max)) != 0)
    return fail("set_maxreaders", rc);
  if (!read_only && (rc = mdb_env_set_mapsize(p->env, options.map_size_bytes)) != 0)
    return fail("set_mapsize", rc);
  // MDB_NOTLS: read transactions are opened by CAF workers and the network thread alike.
  unsigned flags = MDB_NOTLS | (read_only ? MDB_RDONLY : 0) | (options.sync ? 0 : MDB_NOSYNC);
  if ((rc = mdb_env_open(p->env, options.path.c_str(), flags, 0644)) != 0)
    return fail("mdb_env_open " + data_file, rc);
  MDB_envinfo info;
  MDB_stat env_stat;
  mdb_env_info(p->env, &info);
  mdb_env_stat(p->env, &env_stat);
  p->map_size_bytes = info.me_mapsize;
  // A file cut short still opens (LMDB reads only its meta pages) and then faults on the
  // first read past its end: compare it with the last page the last commit wrote.
  if (has_data) {
    stat(data_file.c_str(), &st);
    auto needed = (info.me_last_pgno + 1) * uint64_t{env_stat.ms_psize};
    if (static_cast<uint64_t>(st.st_size) < needed) {
      error = data_file + " is truncated: " + std::to_string(st.st_size) +
              " bytes, but its last committed page ends at byte " + std::to_string(needed) +
              "; restore the directory from a backup";
      return nullptr;
    }
  }
  MDB_txn* txn = nullptr;
  if ((rc = mdb_txn_begin(p->env, nullptr, read_only ? MDB_RDONLY : 0, &txn)) != 0)
    return fail("txn_begin", rc);
  if (marked.empty()) {
    auto held = p->first_start_leftover(txn, rc);
    if (rc != 0 || !held.empty() || read_only) {
      mdb_txn_abort(txn);
      if (rc != 0) return fail("read " + data_file, rc);
      error = held.empty() ? not_yet : data_file + held;
      return nullptr;
    }
  }
  unsigned create = read_only ? 0 : MDB_CREATE;
  if ((rc = mdb_dbi_open(txn, "skus", create, &p->skus)) != 0 ||
      (rc = mdb_dbi_open(txn, "hold_log", create, &p->hold_log)) != 0 ||
      (rc = mdb_dbi_open(txn, "finished_holds", create, &p->finished_holds)) != 0 ||
      (rc = mdb_dbi_open(txn, "hold_index", create, &p->hold_index)) != 0 ||
      (rc = mdb_dbi_open(txn, "meta", create, &p->meta_db)) != 0) {
    mdb_txn_abort(txn);
    if (read_only && rc == MDB_NOTFOUND) {
      error = data_file + " has no Holdfast databases";
      return nullptr;
    }
    return fail("open databases", rc);
  }
  rc = mdb_dbi_open(txn, "records", create, &p->records);
  if (rc != 0 && !(read_only && rc == MDB_NOTFOUND)) {
    mdb_txn_abort(txn);
    return fail("open the records database", rc);
  }
  p->has_records = rc == 0;
  std::string meta_key = "directory";
  MDB_val mk = val(meta_key), mv;
  rc = mdb_get(txn, p->meta_db, &mk, &mv);
  if (rc == 0 && !decode(mv.mv_data, mv.mv_size, p->meta)) {
    mdb_txn_abort(txn);
    error = data_file + ": the directory record fails its checksum";
    return nullptr;
  }
  if (rc == MDB_NOTFOUND) {
    if (!marked.empty() || read_only) {
      mdb_txn_abort(txn);
      error = data_file + " has no directory record: not Holdfast data of format " +
              std::to_string(data_directory::format);
      return nullptr;
    }
    p->meta.format = data_directory::format;
    p->meta.directory_id = data_directory::new_id();
    p->meta.created_ms = system_wall_clock{}.now_ms();
    auto bytes = encode(p->meta);
    MDB_val v = val(bytes);
    rc = mdb_put(txn, p->meta_db, &mk, &v, 0);
  } else if (rc != 0) {
    mdb_txn_abort(txn);
    return fail("read directory record", rc);
  }
  if (rc == 0 && !marked.empty() && marked != p->meta.directory_id) {
    mdb_txn_abort(txn);
    error = data_file + " belongs to another data directory (id " + p->meta.directory_id +
            ", this one is " + marked + ")";
    return nullptr;
  }
  p->clock_high_water_at_open_ms = p->meta.clock_high_water_ms;
  // The clock as of this start, so even a node that ran for less than a second leaves
  // a mark the next start can compare with.
  auto now = system_wall_clock{}.now_ms();
  if (rc == 0 && !read_only && now > p->meta.clock_high_water_ms) {
    p->meta.clock_high_water_ms = now;
    auto bytes = encode(p->meta);
    MDB_val v = val(bytes);
    rc = mdb_put(txn, p->meta_db, &mk, &v, 0);
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    return fail("write directory record", rc);
  }
  if (rc == 0 && (rc = p->build_bloom(txn)) != 0) {
    mdb_txn_abort(txn);
    return fail("read the hold-id index", rc);
  }
  if ((rc = mdb_txn_commit(txn)) != 0) return fail("commit databases", rc);
  if (!marked.empty() && marked != p->meta.directory_id) {
    error = data_file + " belongs to another data directory (id " + p->meta.directory_id +
            ", this one is " + marked + ")";
    return nullptr;
  }
  // A directory created by a node that died before marking it is marked now.
  if (marked.empty() && !read_only && !p->directory->mark(p->meta.directory_id, error))
    return nullptr;
  return std::unique_ptr<lmdb_env>(new lmdb_env(std::move(p)));
}

const directory_meta& lmdb_env::meta() const { return impl_->meta; }
data_directory& lmdb_env::directory() const { return *impl_->directory; }

bool lmdb_env::read_snapshot_position(const std::string& directory, uint64_t& position,
                                      std::string& error) {
  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_maxdbs(env, 8);
  if (rc == 0) rc = mdb_env_open(env, directory.c_str(), MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0644);
  MDB_txn* txn = nullptr;
  MDB_dbi dbi = 0;
  if (rc == 0) rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
  if (rc == 0) rc = mdb_dbi_open(txn, "meta", 0, &dbi);
  std::string key = "directory";
  MDB_val k = val(key), v;
  if (rc == 0) rc = mdb_get(txn, dbi, &k, &v);
  directory_meta meta;
  if (rc == 0 && !decode(v.mv_data, v.mv_size, meta)) rc = MDB_CORRUPTED;
  if (txn) mdb_txn_abort(txn);
  if (env) mdb_env_close(env);
  if (rc != 0) {
    error = directory + "/data.mdb: " + mdb_strerror(rc);
    return false;
  }
  position = meta.snapshot_position;
  return true;
}
int64_t lmdb_env::clock_high_water_at_open_ms() const { return impl_->clock_high_water_at_open_ms; }
const std::string& lmdb_env::path() const { return impl_->directory->path(); }

store_status lmdb_env::read_sku(const std::string& sku, sku_record& out) const {
  return impl_->get(impl_->skus, sku, out);
}

namespace {

// What a walk's visitor says after one key.
enum class walk_step { next, stop, corrupt };

// `dbi` in key order from the first key at or after `from` (from the first key when
// empty) while `f(key, value)` says next; corrupt when `f` says so, else ok or LMDB's error.
template <class F>
store_status walk_keys(MDB_txn* txn, MDB_dbi dbi, const std::string& from, F&& f) {
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(txn, dbi, &cursor);
  if (rc != 0) return from_mdb(rc);
  MDB_val k = val(from), v;
  store_status st = store_status::ok;
  for (rc = mdb_cursor_get(cursor, &k, &v, from.empty() ? MDB_FIRST : MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    auto step = f(std::string_view(static_cast<const char*>(k.mv_data), k.mv_size), v);
    if (step == walk_step::corrupt) st = store_status::corrupt;
    if (step != walk_step::next) break;
  }
  mdb_cursor_close(cursor);
  if (st == store_status::ok && rc != 0 && rc != MDB_NOTFOUND) st = from_mdb(rc);
  return st;
}

// Every entity record from `space` on (all of them when `only` is false), each checked
// against its checksum and its key; corrupt with `problem` at the first that fails.
template <class F>
store_status walk_records(MDB_txn* txn, MDB_dbi dbi, record_space space, bool only, F&& f,
                          std::string& problem, const std::string& from_key = {}, size_t max = SIZE_MAX) {
  std::string from = only ? record_key(space, from_key) : std::string();
  size_t seen = 0;
  return walk_keys(txn, dbi, from, [&](std::string_view key, const MDB_val& v) {
    if (only && (key.empty() || key[0] != from[0])) return walk_step::stop;
    entity_record r;
    if (!decode(v.mv_data, v.mv_size, r) || record_key(r.space, r.key) != key) {
      problem = "entity record " + std::to_string(key.empty() ? 0 : uint8_t(key[0])) + " '" +
                std::string(key.empty() ? key : key.substr(1)) + "': fails its checksum or names another key";
      return walk_step::corrupt;
    }
    f(r);
    return ++seen >= max ? walk_step::stop : walk_step::next;
  });
}

}  // namespace

store_status lmdb_env::verify_records(std::string& problem, int64_t* count) const {
  if (!impl_->has_records) return store_status::ok;
  read_txn t(impl_->env);
  if (t.rc != 0) return from_mdb(t.rc);
  return walk_records(t.txn, impl_->records, record_space::buyer, false,
                      [&](const entity_record&) {
                        if (count) ++*count;
                      },
                      problem);
}

store_status lmdb_env::scan_records(record_space space, const std::function<void(const entity_record&)>& f,
                                    const std::string& from_key, size_t max) const {
  if (!impl_->has_records) return store_status::ok;
  read_txn t(impl_->env);
  if (t.rc != 0) return from_mdb(t.rc);
  std::string problem;
  return walk_records(t.txn, impl_->records, space, true, f, problem, from_key, max);
}

store_status lmdb_env::read_record(const std::string& key, entity_record& out) const {
  if (!impl_->has_records) return store_status::not_found;
  return impl_->get(impl_->records, key, out);
}

std::unique_ptr<lmdb_env::read_view> lmdb_env::read() const {
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(impl_->env, nullptr, MDB_RDONLY, &txn);
  return std::unique_ptr<read_view>(new read_view(impl_.get(), txn, rc));
}

lmdb_env::read_view::~read_view() {
  if (txn_) mdb_txn_abort(static_cast<MDB_txn*>(txn_));
}

store_status lmdb_env::read_view::lookup_hold_sku(const std::string& hold_id, std::string& sku) {
  if (!env_->bloom_may_hold(hold_id)) return store_status::not_found;
  if (rc_ != 0) return from_mdb(rc_);
  MDB_val k = val(hold_id), v;
  int rc = mdb_get(static_cast<MDB_txn*>(txn_), env_->hold_index, &k, &v);
  if (rc != 0) return from_mdb(rc);
  sku.assign(static_cast<const char*>(v.mv_data), v.mv_size);
  return store_status::ok;
}

store_status lmdb_env::read_view::read_finished_hold(const std::string& sku,
                                                     const std::string& hold_id,
                                                     hold_record& out) {
  if (rc_ != 0) return from_mdb(rc_);
  auto key = hold_key(sku, hold_id);
  MDB_val k = val(key), v;
  int rc = mdb_get(static_cast<MDB_txn*>(txn_), env_->finished_holds, &k, &v);
  if (rc != 0) return from_mdb(rc);
  return decode(v.mv_data, v.mv_size, out) ? store_status::ok : store_status::corrupt;
}

void lmdb_env::read_view::refresh() {
  if (!txn_) return;
  mdb_txn_reset(static_cast<MDB_txn*>(txn_));
  rc_ = mdb_txn_renew(static_cast<MDB_txn*>(txn_));
}

store_status lmdb_env::read_view::has_sku(const std::string& sku) {
  if (rc_ != 0) return from_mdb(rc_);
  MDB_val k = val(sku), v;
  return from_mdb(mdb_get(static_cast<MDB_txn*>(txn_), env_->skus, &k, &v));
}

store_status lmdb_env::lookup_hold_sku(const std::string& hold_id, std::string& sku) const {
  return read()->lookup_hold_sku(hold_id, sku);
}

store_status lmdb_env::read_active_holds(const std::string& sku, std::vector<hold_record>& out) const {
  read_txn t(impl_->env);
  if (t.rc != 0) return from_mdb(t.rc);
  return impl_->replay_holds(t.txn, sku, out);
}

store_status lmdb_env::read_active_hold_ids_of(
  const std::vector<std::string>& skus,
  const std::function<bool(const std::string&, store_status, const std::vector<std::string_view>&)>& f) const {
  read_txn t(impl_->env);
  if (t.rc != 0) return from_mdb(t.rc);
  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(t.txn, impl_->hold_log, &cursor); rc != 0) return from_mdb(rc);
  std::string arena;
  std::vector<block_id> entries;
  std::vector<std::string_view> ids;
  for (auto& sku : skus) {
    auto st = impl_->replay_active_ids(cursor, sku, arena, entries, ids);
    if (!f(sku, st, ids)) break;
  }
  mdb_cursor_close(cursor);
  return store_status::ok;
}

store_status lmdb_env::scan_finished_holds(const std::string& sku, const std::string& after,
                                           const std::function<bool(const hold_record&)>& f) const {
  read_txn t(impl_->env);
  if (t.rc != 0) return from_mdb(t.rc);
  auto prefix = hold_key(sku, {});
  // The least key greater than (sku, after): `after` followed by a NUL.
  auto from = hold_key(sku, after);
  if (!after.empty()) from.push_back('\0');
  return walk_keys(t.txn, impl_->finished_holds, from, [&](std::string_view key, const MDB_val& v) {
    if (key.substr(0, prefix.size()) != prefix) return walk_step::stop;
    hold_record r;
    if (!decode(v.mv_data, v.mv_size, r) || r.hold.sku != sku || r.hold.hold_id != key.substr(prefix.size()))
      return walk_step::corrupt;
    return f(r) ? walk_step::next : walk_step::stop;
  });
}

store_status lmdb_env::scan_skus(const std::function<void(const sku_record&)>& f,
                                 std::string& problem) const {
  return scan_skus_from({}, [&f](const sku_record& r) {
    f(r);
    return true;
  }, problem);
}

store_status lmdb_env::scan_skus_from(const std::string& from,
                                      const std::function<bool(const sku_record&)>& f,
                                      std::string& problem) const {
  read_txn t(impl_->env);
  if (t.rc != 0) return from_mdb(t.rc);
  return walk_keys(t.txn, impl_->skus, from, [&](std::string_view key, const MDB_val& v) {
    sku_record r;
    std::string name(key);
    if (!decode(v.mv_data, v.mv_size, r)) {
      problem = "sku '" + name + "': record fails its checksum";
      return walk_step::corrupt;
    }
    if (auto broken = check_invariants(r.sku); !broken.empty() || r.sku.sku != name) {
      problem = "sku '" + name + "': " + (broken.empty() ? "record names another sku" : broken);
      return walk_step::corrupt;
    }
    return f(r) ? walk_step::next : walk_step::stop;
  });
}

store_status lmdb_env::write_snapshot(const snapshot_contents& c, uint64_t position,
                                      int64_t now_ms) {
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(impl_->env, nullptr, 0, &txn);
  if (rc != 0) return impl_->classify(rc);
  auto fail = [&](int r) {
    mdb_txn_abort(txn);
    return impl_->classify(r);
  };
  // Sorted keys: each B-tree page is visited once per snapshot, in order. An SKU's
  // changed holds become one hold-log block (appended at the end of its range); when the
  // blocks since its checkpoint hold several times more entries than it has active
  // holds, a checkpoint block restates them and the older blocks go.
  std::vector<hold_record> restated;
  for (auto& sku_changes : c.skus) {
    auto r = *sku_changes.record;
    const auto& name = r.sku.sku;
    const auto& changed = sku_changes.holds;
    sku_record before;
    MDB_val k = val(name), v;
    rc = mdb_get(txn, impl_->skus, &k, &v);
    if (rc == 0 && !decode(v.mv_data, v.mv_size, before)) {
      // Every snapshot stops here until it is repaired: say which record.
      static rate_limit limit;
      uint64_t held = 0;
      if (limit.allow(held))
        spdlog::critical("snapshot: sku '{}' in data.mdb fails its checksum; snapshots cannot "
                         "proceed (the log keeps every change); `holdfast check` on a backup "
                         "lists the damage ({} more not logged)",
                         name, held);
      rc = MDB_CORRUPTED;
    }
    if (rc == MDB_NOTFOUND) rc = 0;
    if (rc != 0) return fail(rc);
    r.log_block = before.log_block;
    r.checkpoint_block = before.checkpoint_block;
    r.log_entries = before.log_entries;
    // `holds` as blocks of at most hold_block_max (one, empty, when there are none),
    // each encoded straight into the value LMDB reserves for it.
    auto put_blocks = [&](const std::vector<const hold_record*>& holds) {
      int put = 0;
      size_t at = 0;
      do {
        size_t n = std::min(hold_block_max, holds.size() - at);
        auto key = block_key(name, ++r.log_block);
        MDB_val bk = val(key);
        encode_block_into(holds.data() + at, n, [&](size_t size) -> void* {
          MDB_val bv{size, nullptr};
          put = mdb_put(txn, impl_->hold_log, &bk, &bv, MDB_RESERVE);
          return put == 0 ? bv.mv_data : nullptr;
        });
        at += n;
      } while (put == 0 && at < holds.size());
      return put;
    };
    if (!changed.empty()) {
      r.log_entries += changed.size();
      if (r.log_entries > 4 * static_cast<uint64_t>(r.sku.active_holds) + 4096) {
        restated.clear();
        if (auto st = impl_->replay_holds(txn, name, restated); st != store_status::ok) {
          mdb_txn_abort(txn);
          return st;
        }
        first_seen_index at(restated.size() + changed.size());
        auto id_at = [&](size_t p) -> const std::string& { return restated[p].hold.hold_id; };
        for (size_t i = 0; i < restated.size(); ++i) at.find_or_add(restated[i].hold.hold_id, i, id_at);
        for (auto* h : changed) {
          // A new id is recorded at the position it is pushed to, active or not (the
          // ones that ended are left out below).
          auto p = at.find_or_add(h->hold.hold_id, restated.size(), id_at);
          if (p != first_seen_index::npos) restated[p] = *h;
          else restated.push_back(*h);
        }
        std::vector<const hold_record*> active;
        for (auto& h : restated)
          if (h.hold.state == hold_state::active) active.push_back(&h);
        // The blocks before the checkpoint are garbage.
        MDB_cursor* cursor = nullptr;
        if ((rc = mdb_cursor_open(txn, impl_->hold_log, &cursor)) != 0) return fail(rc);
        auto first = block_key(name, 0);
        MDB_val bk = val(first), bv;
        for (rc = mdb_cursor_get(cursor, &bk, &bv, MDB_SET_RANGE); rc == 0;
             rc = mdb_cursor_get(cursor, &bk, &bv, MDB_NEXT)) {
          if (bk.mv_size != first.size() || memcmp(bk.mv_data, first.data(), name.size() + 1) != 0)
            break;
          if ((rc = mdb_cursor_del(cursor, 0)) != 0) break;
        }
        mdb_cursor_close(cursor);
        if (rc != 0 && rc != MDB_NOTFOUND) return fail(rc);
        r.checkpoint_block = r.log_block + 1;
        r.log_entries = active.size();
        if ((rc = put_blocks(active)) != 0) return fail(rc);
      } else if ((rc = put_blocks(changed)) != 0) {
        return fail(rc);
      }
    }
    auto bytes = encode(r);
    MDB_val rv = val(bytes);
    if ((rc = mdb_put(txn, impl_->skus, &k, &rv, 0)) != 0) return fail(rc);
  }
  for (auto* h : c.ended) {
    auto key = hold_key(h->hold.sku, h->hold.hold_id);
    auto bytes = encode(*h);
    MDB_val hk = val(key), hv = val(bytes);
    if ((rc = mdb_put(txn, impl_->finished_holds, &hk, &hv, 0)) != 0) return fail(rc);
  }
  for (auto& [id, sku] : c.index) {
    // The ids of holds that ended (active ids are indexed in memory). The id was claimed
    // node-wide: an entry naming another SKU cannot be here; if one is, the older entry
    // stands and `holdfast check` reports it.
    MDB_val k = val(*id), v = val(*sku);
    impl_->bloom_add(id->data(), id->size());  // before readers can miss it in the overlay
    rc = mdb_put(txn, impl_->hold_index, &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) rc = 0;
    if (rc != 0) return fail(rc);
  }
  for (auto& [key, r] : c.records) {
    MDB_val k = val(*key);
    if (r->deleted) {
      rc = mdb_del(txn, impl_->records, &k, nullptr);
      if (rc == MDB_NOTFOUND) rc = 0;
    } else {
      auto bytes = encode(*r);
      MDB_val v = val(bytes);
      rc = mdb_put(txn, impl_->records, &k, &v, 0);
    }
    if (rc != 0) return fail(rc);
  }
  auto meta = impl_->meta;
  meta.snapshot_position = position;
  meta.clock_high_water_ms = std::max(meta.clock_high_water_ms, now_ms);
  std::string meta_key = "directory";
  auto bytes = encode(meta);
  MDB_val mk = val(meta_key), mv = val(bytes);
  if ((rc = mdb_put(txn, impl_->meta_db, &mk, &mv, 0)) != 0) return fail(rc);
  // mdb_txn_commit fsyncs (unless the environment was opened with MDB_NOSYNC).
  rc = mdb_txn_commit(txn);
  if (rc == 0) impl_->meta = meta;
  return impl_->classify(rc);
}

collect_result lmdb_env::collect_finished(int64_t ended_before_ms, size_t scan_max,
                                          std::string& cursor_key, int64_t now_ms) {
  collect_result result;
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(impl_->env, nullptr, 0, &txn);
  if (rc != 0) {
    result.status = impl_->classify(rc);
    return result;
  }
  MDB_cursor* cursor = nullptr;
  if ((rc = mdb_cursor_open(txn, impl_->finished_holds, &cursor)) != 0) {
    mdb_txn_abort(txn);
    result.status = from_mdb(rc);
    return result;
  }
  MDB_val k = val(cursor_key), v;
  rc = mdb_cursor_get(cursor, &k, &v, cursor_key.empty() ? MDB_FIRST : MDB_SET_RANGE);
  for (; rc == 0 && result.scanned < scan_max; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    ++result.scanned;
    hold_record h;
    // A record that cannot be read is left for `holdfast check` to report.
    if (!decode(v.mv_data, v.mv_size, h) || h.finished_ms == 0 || h.finished_ms > ended_before_ms)
      continue;
    // The index entry goes with it: the id may be used again, as with any expired
    // idempotency key.
    MDB_val ik = val(h.hold.hold_id), iv;
    if (mdb_get(txn, impl_->hold_index, &ik, &iv) == 0 && iv.mv_size == h.hold.sku.size() &&
        memcmp(iv.mv_data, h.hold.sku.data(), iv.mv_size) == 0 &&
        (rc = mdb_del(txn, impl_->hold_index, &ik, nullptr)) != 0)
      break;
    if ((rc = mdb_cursor_del(cursor, 0)) != 0) break;
    ++result.deleted;
  }
  if (rc == 0) {
    cursor_key.assign(static_cast<const char*>(k.mv_data), k.mv_size);
  } else if (rc == MDB_NOTFOUND) {
    cursor_key.clear();
    result.wrapped = true;
    rc = 0;
  }
  mdb_cursor_close(cursor);
  if (rc == 0 && now_ms > impl_->meta.clock_high_water_ms) {
    auto meta = impl_->meta;
    meta.clock_high_water_ms = now_ms;
    std::string key = "directory";
    auto bytes = encode(meta);
    MDB_val k = val(key), v = val(bytes);
    rc = mdb_put(txn, impl_->meta_db, &k, &v, 0);
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    result.status = impl_->classify(rc);
    return result;
  }
  rc = mdb_txn_commit(txn);
  if (rc == 0 && now_ms > impl_->meta.clock_high_water_ms) impl_->meta.clock_high_water_ms = now_ms;
  result.status = impl_->classify(rc);
  return result;
}

// The state's framing: "HFSTATE1", the position and the clock's high-water mark (u64 LE
// each), then records [database u8][key length u32][value length u32][key][value], a 0
// byte, and the CRC32C of everything before it (u32 LE).
namespace {
constexpr std::string_view state_magic = "HFSTATE1";
enum state_db : uint8_t { state_end = 0, state_skus, state_hold_log, state_finished, state_index, state_records };

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}
}  // namespace

store_status lmdb_env::export_state(std::string& out, uint64_t& position) const {
  read_txn t(impl_->env);
  if (t.rc != 0) return from_mdb(t.rc);
  MDB_val mk{9, const_cast<char*>("directory")}, mv;
  directory_meta meta;
  int rc = mdb_get(t.txn, impl_->meta_db, &mk, &mv);
  if (rc != 0) return from_mdb(rc);
  if (!decode(mv.mv_data, mv.mv_size, meta)) return store_status::corrupt;
  out.clear();
  out.append(state_magic);
  put_le(out, meta.snapshot_position, 8);
  put_le(out, static_cast<uint64_t>(meta.clock_high_water_ms), 8);
  const std::pair<state_db, MDB_dbi> dbs[] = {{state_skus, impl_->skus},
                                              {state_hold_log, impl_->hold_log},
                                              {state_finished, impl_->finished_holds},
                                              {state_index, impl_->hold_index},
                                              {state_records, impl_->records}};
  for (auto [tag, dbi] : dbs) {
    if (tag == state_records && !impl_->has_records) continue;
    auto st = walk_keys(t.txn, dbi, {}, [&](std::string_view key, const MDB_val& v) {
      out.push_back(static_cast<char>(tag));
      put_le(out, key.size(), 4);
      put_le(out, v.mv_size, 4);
      out.append(key);
      out.append(static_cast<const char*>(v.mv_data), v.mv_size);
      return walk_step::next;
    });
    if (st != store_status::ok) return st;
  }
  out.push_back(static_cast<char>(state_end));
  put_le(out, crc32c(out.data(), out.size()), 4);
  position = meta.snapshot_position;
  return store_status::ok;
}

constexpr std::string_view reference_magic = "HFSTREF1";  // [magic][position u64][CRC32C u32]

std::string lmdb_env::state_reference(uint64_t position) {
  std::string out(reference_magic);
  put_le(out, position, 8);
  put_le(out, crc32c(out.data(), out.size()), 4);
  return out;
}

bool lmdb_env::is_state_reference(std::string_view state) {
  return state.substr(0, reference_magic.size()) == reference_magic;
}

bool lmdb_env::state_position(std::string_view state, uint64_t& position) {
  if (is_state_reference(state)) {
    if (state.size() != reference_magic.size() + 12 ||
        crc32c(state.data(), state.size() - 4) != static_cast<uint32_t>(get_le(state.data() + state.size() - 4, 4)))
      return false;
    position = get_le(state.data() + reference_magic.size(), 8);
    return true;
  }
  if (state.size() < state_magic.size() + 16 || state.substr(0, state_magic.size()) != state_magic) return false;
  position = get_le(state.data() + state_magic.size(), 8);
  return true;
}

store_status lmdb_env::import_state(std::string_view state, int64_t now_ms, uint64_t& position,
                                    std::string& problem) {
  const size_t head = state_magic.size() + 16;
  if (state.size() < head + 1 + 4 || state.substr(0, state_magic.size()) != state_magic) {
    problem = "not a Holdfast state (its header)";
    return store_status::corrupt;
  }
  size_t body = state.size() - 4;
  if (crc32c(state.data(), body) != static_cast<uint32_t>(get_le(state.data() + body, 4))) {
    problem = "the state fails its checksum";
    return store_status::corrupt;
  }
  uint64_t at = get_le(state.data() + state_magic.size(), 8);
  auto clock_mark = static_cast<int64_t>(get_le(state.data() + state_magic.size() + 8, 8));
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(impl_->env, nullptr, 0, &txn);
  if (rc != 0) return impl_->classify(rc);
  auto fail = [&](store_status st, std::string why) {
    mdb_txn_abort(txn);
    problem = std::move(why);
    return st;
  };
  const MDB_dbi dbis[] = {0, impl_->skus, impl_->hold_log, impl_->finished_holds, impl_->hold_index,
                          impl_->records};
  for (int tag = state_skus; tag <= state_records; ++tag)
    if ((rc = mdb_drop(txn, dbis[tag], 0)) != 0) return fail(impl_->classify(rc), mdb_strerror(rc));
  size_t p = head;
  uint64_t count = 0;
  while (true) {
    if (p >= body) return fail(store_status::corrupt, "the state has no end");
    auto tag = static_cast<uint8_t>(state[p++]);
    if (tag == state_end) break;
    if (tag > state_records || body - p < 8) return fail(store_status::corrupt, "a record's framing");
    size_t klen = get_le(state.data() + p, 4), vlen = get_le(state.data() + p + 4, 4);
    p += 8;
    if (klen == 0 || klen > lmdb_key_bytes_max || body - p < klen || body - p - klen < vlen)
      return fail(store_status::corrupt, "a record's lengths");
    std::string_view key = state.substr(p, klen), value = state.substr(p + klen, vlen);
    p += klen + vlen;
    // Each record's own check, where it has one (the hold log's blocks are read per SKU).
    bool sound = true;
    if (tag == state_skus) {
      sku_record r;
      sound = decode(value.data(), value.size(), r) && r.sku.sku == key;
    } else if (tag == state_finished) {
      hold_record h;
      sound = decode(value.data(), value.size(), h);
    } else if (tag == state_records) {
      entity_record r;
      sound = decode(value.data(), value.size(), r);
    }
    if (!sound) return fail(store_status::corrupt, "record " + std::to_string(count) + " fails its check");
    MDB_val k{klen, const_cast<char*>(key.data())}, v{vlen, const_cast<char*>(value.data())};
    // In key order, as exported: anything else is not an export.
    rc = mdb_put(txn, dbis[tag], &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST) return fail(store_status::corrupt, "records out of key order");
    if (rc != 0) return fail(impl_->classify(rc), mdb_strerror(rc));
    if (tag == state_index) impl_->bloom_add(key.data(), key.size());
    ++count;
  }
  if (p != body) return fail(store_status::corrupt, "bytes after the state's end");
  auto meta = impl_->meta;
  meta.snapshot_position = at;
  meta.clock_high_water_ms = std::max({meta.clock_high_water_ms, clock_mark, now_ms});
  std::string meta_key = "directory";
  auto bytes = encode(meta);
  MDB_val mk = val(meta_key), mv = val(bytes);
  if ((rc = mdb_put(txn, impl_->meta_db, &mk, &mv, 0)) != 0) return fail(impl_->classify(rc), mdb_strerror(rc));
  rc = mdb_txn_commit(txn);
  if (rc != 0) {
    problem = mdb_strerror(rc);
    return impl_->classify(rc);
  }
  impl_->meta = meta;
  position = at;
  return store_status::ok;
}

store_status lmdb_env::copy_to(const std::string& directory, std::string& error) const {
  int rc = mdb_env_copy2(impl_->env, directory.c_str(), MDB_CP_COMPACT);
  if (rc != 0) {
    error = mdb_strerror(rc);
    return from_mdb(rc);
  }
  // mdb_env_copy2 does not sync what it wrote.
  int fd = ::open((directory + "/data.mdb").c_str(), O_RDONLY | O_CLOEXEC);
  bool synced = fd >= 0 && fsync(fd) == 0;
  if (fd >= 0) close(fd);
  if (!synced) {
    error = "cannot sync " + directory + "/data.mdb: " + strerror(errno);
    return store_status::io_error;
  }
  return store_status::ok;
}

check_report lmdb_env::check() const {
  check_report report;
  auto problem = [&](std::string p) {
    if (report.problems.size() < 1000) report.problems.push_back(std::move(p));
  };
  std::unordered_map<std::string, std::string> active_ids;  // hold id -> sku
  std::string scan_problem;
  std::vector<sku_record> skus;
  auto st = scan_skus([&](const sku_record& r) { skus.push_back(r); }, scan_problem);
  if (st != store_status::ok) problem(scan_problem.empty() ? to_string(st) : scan_problem);
  for (auto& r : skus) {
    ++report.skus;
    std::vector<hold_record> holds;
    const auto& name = r.sku.sku;
    if (auto hs = read_active_holds(name, holds); hs != store_status::ok) {
      problem("sku '" + name + "': active holds: " + to_string(hs));
      continue;
    }
    int64_t reserved = 0;
    for (auto& h : holds) {
      reserved += h.hold.qty;
      active_ids.emplace(h.hold.hold_id, name);
    }
    report.active_holds += static_cast<int64_t>(holds.size());
    if (reserved != r.sku.reserved || static_cast<int64_t>(holds.size()) != r.sku.active_holds)
      problem("sku '" + name + "': record says reserved " + std::to_string(r.sku.reserved) +
              " in " + std::to_string(r.sku.active_holds) + " holds, its active holds are " +
              std::to_string(reserved) + " in " + std::to_string(holds.size()));
  }
  read_txn t(impl_->env);
  if (t.rc != 0) {
    problem(std::string("read transaction: ") + mdb_strerror(t.rc));
    return report;
  }
  auto each = [&](MDB_dbi dbi, const std::function<void(MDB_val&, MDB_val&)>& f) {
    MDB_cursor* cursor = nullptr;
    if (mdb_cursor_open(t.txn, dbi, &cursor) != 0) return;
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT))
      f(k, v);
    mdb_cursor_close(cursor);
  };
  each(impl_->finished_holds, [&](MDB_val& k, MDB_val& v) {
    ++report.finished_holds;
    hold_record h;
    if (!decode(v.mv_data, v.mv_size, h))
      problem("finished hold '" + std::string(static_cast<const char*>(k.mv_data), k.mv_size) +
              "': record fails its checksum");
  });
  each(impl_->hold_index, [&](MDB_val& k, MDB_val& v) {
    ++report.index_entries;
    std::string id(static_cast<const char*>(k.mv_data), k.mv_size);
    std::string sku(static_cast<const char*>(v.mv_data), v.mv_size);
    auto it = active_ids.find(id);
    if (it != active_ids.end() && it->second != sku)
      problem("hold '" + id + "' is active on sku '" + it->second + "' but indexed on '" + sku + "'");
  });
  std::string records_problem;
  if (verify_records(records_problem, &report.records) != store_status::ok)
    problem(records_problem.empty() ? std::string("entity records cannot be read") : records_problem);
  return report;
}

lmdb_env::usage lmdb_env::space() const {
  MDB_envinfo info;
  MDB_stat stat;
  mdb_env_info(impl_->env, &info);
  mdb_env_stat(impl_->env, &stat);
  return {info.me_mapsize, (info.me_last_pgno + 1) * size_t{stat.ms_psize}};
}

}  // namespace holdfast
