#include "persistence/lmdb_env.hpp"

#include <lmdb.h>
#include <sys/stat.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <unordered_map>

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
  }
  return "?";
}

namespace {

store_status from_mdb(int rc) {
  switch (rc) {
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

// Finished holds are keyed by SKU then hold id.
std::string hold_key(const std::string& sku, const std::string& hold_id) {
  std::string k;
  k.reserve(sku.size() + 1 + hold_id.size());
  k.append(sku).push_back('\0');
  k.append(hold_id);
  return k;
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
  MDB_env* env = nullptr;
  MDB_dbi skus = 0;
  MDB_dbi hold_log = 0;
  MDB_dbi finished_holds = 0;
  MDB_dbi hold_index = 0;
  size_t map_size_bytes = 0;

  ~impl() {
    if (env) mdb_env_close(env);
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
  auto fail = [&](const char* what, int rc) -> std::unique_ptr<lmdb_env> {
    error = std::string(what) + ": " + mdb_strerror(rc);
    return nullptr;
  };
  if (mkdir(options.path.c_str(), 0755) != 0 && errno != EEXIST)
    return fail("create data directory", errno);
  int rc = mdb_env_create(&p->env);
  if (rc != 0) return fail("mdb_env_create", rc);
  if ((rc = mdb_env_set_maxdbs(p->env, 8)) != 0) return fail("set_maxdbs", rc);
  if ((rc = mdb_env_set_maxreaders(p->env, options.readers_max)) != 0)
    return fail("set_maxreaders", rc);
  if ((rc = mdb_env_set_mapsize(p->env, options.map_size_bytes)) != 0)
    return fail("set_mapsize", rc);
  // MDB_NOTLS: read transactions are opened by CAF workers and the network thread alike.
  if ((rc = mdb_env_open(p->env, options.path.c_str(), MDB_NOTLS, 0644)) != 0)
    return fail("mdb_env_open", rc);
  p->map_size_bytes = options.map_size_bytes;
  MDB_txn* txn = nullptr;
  if ((rc = mdb_txn_begin(p->env, nullptr, 0, &txn)) != 0) return fail("txn_begin", rc);
  if ((rc = mdb_dbi_open(txn, "skus", MDB_CREATE, &p->skus)) != 0 ||
      (rc = mdb_dbi_open(txn, "hold_log", MDB_CREATE, &p->hold_log)) != 0 ||
      (rc = mdb_dbi_open(txn, "finished_holds", MDB_CREATE, &p->finished_holds)) != 0 ||
      (rc = mdb_dbi_open(txn, "hold_index", MDB_CREATE, &p->hold_index)) != 0) {
    mdb_txn_abort(txn);
    return fail("open databases", rc);
  }
  if ((rc = mdb_txn_commit(txn)) != 0) return fail("commit databases", rc);
  return std::unique_ptr<lmdb_env>(new lmdb_env(std::move(p)));
}

store_status lmdb_env::read_sku(const std::string& sku, sku_record& out) const {
  return impl_->get(impl_->skus, sku, out);
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

store_status lmdb_env::lookup_hold_sku(const std::string& hold_id, std::string& sku) const {
  return read()->lookup_hold_sku(hold_id, sku);
}

store_status lmdb_env::read_active_holds(const std::string& sku, std::vector<hold_record>& out,
                                         size_t* entries) const {
  read_txn t(impl_->env);
  if (t.rc != 0) return from_mdb(t.rc);
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(t.txn, impl_->hold_log, &cursor);
  if (rc != 0) return from_mdb(rc);
  std::string prefix = sku;
  prefix.push_back('\0');
  MDB_val k = val(prefix), v;
  store_status st = store_status::ok;
  // Later blocks overrule earlier ones: the last state of each hold id wins.
  std::unordered_map<std::string, size_t> slot;  // hold id -> index in `live`
  std::vector<hold_record> live, block;
  size_t read = 0;
  for (rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    if (k.mv_size != prefix.size() + 8 || memcmp(k.mv_data, prefix.data(), prefix.size()) != 0)
      break;
    block.clear();
    if (!decode_block(v.mv_data, v.mv_size, sku, block)) {
      st = store_status::corrupt;
      break;
    }
    read += block.size();
    for (auto& h : block) {
      auto [it, fresh] = slot.try_emplace(h.hold.hold_id, live.size());
      if (fresh) live.push_back(std::move(h));
      else live[it->second] = std::move(h);
    }
  }
  mdb_cursor_close(cursor);
  if (st == store_status::ok && rc != 0 && rc != MDB_NOTFOUND) st = from_mdb(rc);
  if (st != store_status::ok) return st;
  for (auto& h : live)
    if (h.hold.state == hold_state::active) out.push_back(std::move(h));
  if (entries) *entries = read;
  return st;
}

store_status lmdb_env::scan_skus(const std::function<void(const sku_record&)>& f) const {
  read_txn t(impl_->env);
  if (t.rc != 0) return from_mdb(t.rc);
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(t.txn, impl_->skus, &cursor);
  if (rc != 0) return from_mdb(rc);
  MDB_val k, v;
  store_status st = store_status::ok;
  for (rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    sku_record r;
    if (!decode(v.mv_data, v.mv_size, r)) {
      st = store_status::corrupt;
      break;
    }
    f(r);
  }
  mdb_cursor_close(cursor);
  if (st == store_status::ok && rc != 0 && rc != MDB_NOTFOUND) st = from_mdb(rc);
  return st;
}

store_status lmdb_env::commit(const std::vector<const std::vector<mutation>*>& batches) {
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(impl_->env, nullptr, 0, &txn);
  if (rc != 0) return from_mdb(rc);
  std::vector<const hold_record*> holds;
  // One batch: its SKU snapshot numbers the hold-log block that carries its holds.
  auto apply = [&](const std::vector<mutation>& batch) -> int {
    const sku_record* sku = nullptr;
    holds.clear();
    for (const auto& m : batch) {
      if (m.kind == mutation::put_sku) sku = &m.sku;
      else holds.push_back(&m.hold);
    }
    if (!sku) return holds.empty() ? 0 : EINVAL;  // a writer bug: holds without a block
    const auto& name = sku->sku.sku;
    int r = 0;
    if (!holds.empty()) {
      bool checkpoint = sku->checkpoint_block == sku->log_block;
      if (checkpoint) {
        // The checkpoint restates every active hold: the blocks before it are garbage.
        MDB_cursor* cursor = nullptr;
        if ((r = mdb_cursor_open(txn, impl_->hold_log, &cursor)) != 0) return r;
        auto first = block_key(name, 0), end = block_key(name, sku->log_block);
        MDB_val k = val(first), v;
        for (r = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE); r == 0;
             r = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
          if (k.mv_size != end.size() || memcmp(k.mv_data, end.data(), end.size()) >= 0 ||
              memcmp(k.mv_data, first.data(), name.size() + 1) != 0)
            break;
          if ((r = mdb_cursor_del(cursor, 0)) != 0) break;
        }
        mdb_cursor_close(cursor);
        if (r != 0 && r != MDB_NOTFOUND) return r;
      }
      auto key = block_key(name, sku->log_block);
      auto bytes = encode_block(holds);
      MDB_val k = val(key), v = val(bytes);
      if ((r = mdb_put(txn, impl_->hold_log, &k, &v, 0)) != 0) return r;
      for (auto* h : holds) {
        if (h->hold.state == hold_state::active) {
          // The index remembers the first SKU a hold id was used on. A checkpoint
          // restates old holds (already indexed) and may carry new ones.
          MDB_val ik = val(h->hold.hold_id), iv = val(name);
          r = mdb_put(txn, impl_->hold_index, &ik, &iv, MDB_NOOVERWRITE);
          if (r != 0 && r != MDB_KEYEXIST) return r;
        } else {
          auto fkey = hold_key(name, h->hold.hold_id);
          auto fbytes = encode(*h);
          MDB_val fk = val(fkey), fv = val(fbytes);
          if ((r = mdb_put(txn, impl_->finished_holds, &fk, &fv, 0)) != 0) return r;
        }
      }
    }
    auto bytes = encode(*sku);
    MDB_val k = val(name), v = val(bytes);
    return mdb_put(txn, impl_->skus, &k, &v, 0);
  };
  for (auto* batch : batches)
    if ((rc = apply(*batch)) != 0) {
      mdb_txn_abort(txn);
      return from_mdb(rc);
    }
  // mdb_txn_commit fsyncs (the environment is opened without MDB_NOSYNC).
  rc = mdb_txn_commit(txn);
  return from_mdb(rc);
}

store_status lmdb_env::backup(const std::string& directory, std::string& error) const {
  if (mkdir(directory.c_str(), 0755) != 0 && errno != EEXIST) {
    error = std::string("create backup directory: ") + strerror(errno);
    return store_status::io_error;
  }
  int rc = mdb_env_copy2(impl_->env, directory.c_str(), MDB_CP_COMPACT);
  if (rc != 0) error = mdb_strerror(rc);
  return from_mdb(rc);
}

lmdb_env::usage lmdb_env::space() const {
  MDB_envinfo info;
  MDB_stat stat;
  mdb_env_info(impl_->env, &info);
  mdb_env_stat(impl_->env, &stat);
  return {info.me_mapsize, (info.me_last_pgno + 1) * size_t{stat.ms_psize}};
}

}  // namespace holdfast
