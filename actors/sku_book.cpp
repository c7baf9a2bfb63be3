#include "actors/sku_book.hpp"

#include "persistence/least_n.hpp"
#include "protocol/assert.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <limits>

namespace holdfast {
namespace {

hold_result ok(const hold_info& h) {
  hold_result r;
  r.hold = h;
  return r;
}

hold_result with_hold(code status, const hold_info& h) {
  hold_result r;
  r.status = status;
  r.hold = h;
  return r;
}

bool same_arguments(const hold_record& h, const hold_op& op) {
  return h.hold.qty == op.qty && h.ttl_ms == op.ttl_ms && h.user == op.user;
}

std::string buyer_key(const std::string& sku, const std::string& user) {
  std::string key = sku;
  key.push_back('\0');
  key += user;
  return key;
}

}  // namespace

sku_book::sku_book(std::string sku, sku_book_policy policy, hold_claims* claims)
  : sku_(std::move(sku)), policy_(policy), claims_(claims) {
  record_.sku.sku = sku_;
}

// Claims still pending stay: their batches may yet become durable at the store (an
// actor stops with writes in flight only when the node stops or an invariant broke),
// and a durable hold's claim is its id's index entry.
sku_book::~sku_book() = default;

void sku_book::release_claims(uint64_t from) {
  while (!claimed_.empty() && claimed_.back().first >= from) {
    if (claims_) claims_->release(claimed_.back().second, number_);
    claimed_.pop_back();
  }
}

std::string sku_book::load(const storage& env, const sku_record* known) {
  // Claims of batches that failed are void: those batches never become durable.
  release_claims();
  exists_ = false;
  record_ = sku_record{};
  record_.sku.sku = sku_;
  active_.clear();
  deadlines_.clear();
  finishing_.clear();
  finishing_order_.clear();
  hold_users_.clear();
  buyers_.clear();
  auto status = store_status::ok;
  if (known) record_ = *known;
  else status = env.read_sku(sku_, record_);
  if (status == store_status::not_found) {
    record_ = sku_record{};
    record_.sku.sku = sku_;
    return {};
  }
  if (status == store_status::corrupt) return "its record fails its checksum";
  if (status != store_status::ok) return std::string("storage: ") + to_string(status);
  if (record_.sku.sku != sku_) return "its record names sku '" + record_.sku.sku + "'";
  if (auto broken = check_invariants(record_.sku); !broken.empty()) return broken;
  exists_ = true;
  std::vector<hold_record> holds;
  if (auto st = env.read_active_holds(sku_, holds); st != store_status::ok)
    return std::string("hold log: ") + to_string(st);
  int64_t reserved = 0;
  active_.reserve(holds.size());
  deadlines_.reserve(holds.size());
  for (auto& h : holds) {
    reserved += h.hold.qty;
    deadlines_.push_back({h.hold.deadline_ms, active_map::hash(h.hold.hold_id)});
    active_[h.hold.hold_id] = active_hold{h.hold.qty, h.hold.deadline_ms, h.ttl_ms, h.lease()};
    if (h.user.empty()) continue;
    hold_users_[h.hold.hold_id] = h.user;
    if (record_.sku.limit_per_user == 0) continue;
    buyer* b = nullptr;
    if (auto st = find_buyer(h.user, env, b); st != store_status::ok)
      return "the buyer record of user '" + h.user + "': " + to_string(st);
    b->held += h.hold.qty;
  }
  std::make_heap(deadlines_.begin(), deadlines_.end(), std::greater<>{});
  // Snapshot and holds are written in one transaction: they agree, or the data is bad.
  if (reserved != record_.sku.reserved ||
      static_cast<int64_t>(active_.size()) != record_.sku.active_holds ||
      active_.size() != holds.size())
    return "its record says reserved " + std::to_string(record_.sku.reserved) + " in " +
           std::to_string(record_.sku.active_holds) + " holds, its hold log has " +
           std::to_string(reserved) + " in " + std::to_string(holds.size());
  return {};
}

void sku_book::clamp_deadlines(sku_change& c) {
  last_now_ms_ = c.now_ms;
  bool cut = false;
  active_.each([&](const std::string& id, active_hold& h) {
    if (h.deadline_ms <= c.now_ms + h.lease_ms) return;
    h.deadline_ms = c.now_ms + h.lease_ms;
    c.mutations.push_back(mutation{mutation::put_hold, {}, to_record(id, h, hold_state::active), {}});
    c.dirty = true;
    cut = true;
  });
  if (!cut) return;
  rebuild_deadlines();
}

std::string sku_book::broken_invariant() const {
  const auto& s = record_.sku;
  if (auto broken = check_invariants(s); !broken.empty()) return broken;
  if (s.active_holds != static_cast<int64_t>(active_.size()))
    return "active_holds " + std::to_string(s.active_holds) + " but " +
           std::to_string(active_.size()) + " holds in memory";
  return {};
}

hold_record sku_book::to_record(const std::string& hold_id, const active_hold& h,
                                hold_state state) const {
  hold_record r;
  r.hold = {hold_id, sku_, h.qty, state, h.deadline_ms};
  r.ttl_ms = h.ttl_ms;
  if (h.lease_ms > h.ttl_ms) r.lease_ms = h.lease_ms;
  if (!hold_users_.empty())
    if (auto* user = hold_users_.find(hold_id)) r.user = *user;
  return r;
}

store_status sku_book::find_buyer(const std::string& user, const storage& env, buyer*& out) {
  if ((out = buyers_.find(user))) return store_status::ok;
  // Users with nothing held whose count is durable can be read again: drop them when
  // they outnumber the holders, so a hot SKU's memory follows its holds, not its crowd.
  if (buyers_.size() >= 1024 + 2 * hold_users_.size()) {
    std::vector<std::string> idle;
    buyers_.each([&](const std::string& name, const buyer& b) {
      if (b.held == 0 && b.written_seq <= durable_seq_) idle.push_back(name);
    });
    for (auto& name : idle) buyers_.erase(name);
  }
  std::string value;
  buyer fresh;
  auto st = env.read_record(record_space::buyer, buyer_key(sku_, user), value);
  if (st == store_status::ok) {
    char* end = nullptr;
    errno = 0;
    fresh.bought = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || errno != 0 || *end != '\0' || fresh.bought < 0) return store_status::corrupt;
  } else if (st != store_status::not_found) {
    return st;
  }
  out = &(buyers_[user] = fresh);
  return store_status::ok;
}

hold_result sku_book::over_limit(const std::string& user, const buyer& b, int64_t qty) const {
  const auto limit = record_.sku.limit_per_user;
  hold_result r;
  r.status = code::limit_reached;
  r.available = std::max<int64_t>(0, limit - b.held - b.bought);
  r.message = "sku '" + sku_ + "' sells at most " + std::to_string(limit) + " per user; user '" +
              user + "' holds " + std::to_string(b.held) + " and bought " +
              std::to_string(b.bought) + ", asked for " + std::to_string(qty);
  return r;
}

void sku_book::push_deadline(int64_t deadline_ms, uint32_t hash) {
  deadlines_.push_back({deadline_ms, hash});
  std::push_heap(deadlines_.begin(), deadlines_.end(), std::greater<>{});
}

const std::string* sku_book::deadline_holder(const deadline_entry& e) const {
  return active_.find_key(e.hash, [&](const active_hold& h) { return h.deadline_ms == e.deadline_ms; });
}

void sku_book::drop_stale_deadlines() {
  while (!deadlines_.empty()) {
    if (deadline_holder(deadlines_.front())) return;
    std::pop_heap(deadlines_.begin(), deadlines_.end(), std::greater<>{});
    deadlines_.pop_back();
  }
}

int64_t sku_book::earliest_deadline_ms() {
  drop_stale_deadlines();
  return deadlines_.empty() ? 0 : deadlines_.front().deadline_ms;
}

void sku_book::rebuild_deadlines() {
  deadlines_.clear();
  active_.each([&](const std::string& id, const active_hold& h) {
    deadlines_.push_back({h.deadline_ms, active_map::hash(id)});
  });
  std::make_heap(deadlines_.begin(), deadlines_.end(), std::greater<>{});
}

hold_record sku_book::finish(const std::string& hold_id, hold_state to, sku_change& c) {
  auto* active = active_.find(hold_id);
  HF_ASSERT(active, "sku '{}': finish of hold '{}', which is not active", sku_, hold_id);
  auto rec = to_record(hold_id, *active, to);
  rec.finished_ms = c.now_ms;
  active_.erase(rec.hold.hold_id);
  auto& s = record_.sku;
  s.reserved -= rec.hold.qty;
  s.active_holds -= 1;
  if (to == hold_state::confirmed) {
    s.on_hand -= rec.hold.qty;
    s.sold += rec.hold.qty;
  }
  if (!rec.user.empty()) {
    hold_users_.erase(hold_id);
    if (auto* b = s.limit_per_user > 0 ? buyers_.find(rec.user) : nullptr) {
      b->held -= rec.hold.qty;
      if (to == hold_state::confirmed) {
        b->bought += rec.hold.qty;
        b->written_seq = c.seq;
        // In the same batch as the confirm: the count and the sale land together.
        mutation m;
        m.kind = mutation::put_record;
        m.record = {record_space::buyer, buyer_key(sku_, rec.user), std::to_string(b->bought), false};
        c.mutations.push_back(std::move(m));
      }
    }
  }
  HF_ASSERT(s.reserved >= 0 && s.active_holds == static_cast<int64_t>(active_.size()),
            "sku '{}': finishing hold '{}' left reserved {} in {} holds, {} in memory", sku_,
            hold_id, s.reserved, s.active_holds, active_.size());
  c.mutations.push_back(mutation{mutation::put_hold, {}, rec, {}});
  c.dirty = true;
  finishing_[rec.hold.hold_id] = {c.seq, rec};
  finishing_order_.emplace_back(c.seq, rec.hold.hold_id);
  // Holds that ended early left their heap entries behind; keep them a minority.
  if (deadlines_.size() > 2 * active_.size() + 1024) rebuild_deadlines();
  return rec;
}

void sku_book::expire_due(int64_t now_ms, sku_change& c, size_t max) {
  if (max == 0) max = policy_.expire_batch_max;
  if (now_ms + policy_.clock_step_tolerance_ms < last_now_ms_) clamp_deadlines(c);
  last_now_ms_ = std::max(last_now_ms_, now_ms);
  size_t ended = 0;
  while (!deadlines_.empty() && deadlines_.front().deadline_ms <= now_ms &&
         ended < max) {
    std::pop_heap(deadlines_.begin(), deadlines_.end(), std::greater<>{});
    auto entry = deadlines_.back();
    deadlines_.pop_back();
    if (auto* id = deadline_holder(entry)) {
      finish(std::string(*id), hold_state::expired, c);  // a copy: finish erases the entry
      ++ended;
    }
  }
}

store_status sku_book::find_finished(const std::string& hold_id, hold_record& out,
                                     sku_change& c) {
  if (auto it = finishing_.find(hold_id); it != finishing_.end()) {
    out = it->second.second;
    return store_status::ok;
  }
  return c.reads().read_finished_hold(sku_, hold_id, out);
}

namespace {

// A record that cannot be read is not a hold that does not exist: answering as if it
// were would grant a used id again.
hold_result unreadable(const std::string& sku, const std::string& hold_id, store_status s) {
  return make_hold_error(code::unavailable, "hold '" + hold_id + "' on sku '" + sku +
                                              "' cannot be read: " + to_string(s));
}

}  // namespace

hold_result sku_book::apply(const hold_op& op, int64_t now_ms, sku_change& c) {
  if (!exists_) return make_hold_error(code::unknown_sku);
  return op.kind == hold_op_kind::reserve ? reserve(op, now_ms, c) : end_hold(op, c);
}

// A reserve repeated with a hold id this SKU already used: the first answer when the
// hold is still active, and never "ok" for a hold that has ended, so a retry cannot
// mistake an expired or released hold for a reservation.
hold_result sku_book::repeated(const hold_record& done, const hold_op& op) const {
  if (!same_arguments(done, op)) return with_hold(code::hold_conflict, done.hold);
  switch (done.hold.state) {
    case hold_state::active: return ok(done.hold);
    case hold_state::expired: return with_hold(code::hold_expired, done.hold);
    default: return with_hold(code::wrong_state, done.hold);
  }
}

hold_result sku_book::reserve(const hold_op& op, int64_t now_ms, sku_change& c) {
  hold_record done;
  const hashed_key id(op.hold_id);  // hashed once for the book's and the claims' tables
  if (auto* h = active_.find(id)) {
    // Overdue but not yet reached by a bounded expiry batch: it has ended all the same.
    if (h->deadline_ms <= c.now_ms) return repeated(finish(op.hold_id, hold_state::expired, c), op);
    return repeated(to_record(op.hold_id, *h, hold_state::active), op);
  }
  if (auto it = finishing_.find(op.hold_id); it != finishing_.end())
    return repeated(it->second.second, op);
  // The id is claimed node-wide before anything else, so a concurrent reserve of the
  // same id on another SKU cannot also win; then the index (ids already durable) and
  // this SKU's finished holds decide. Most reserves are new ids: one claim, one lookup.
  auto conflict = [&](const std::string& owner) {
    hold_info theirs;  // the directory fills in the hold from its owner
    theirs.hold_id = op.hold_id;
    theirs.sku = owner;
    return with_hold(code::hold_conflict, theirs);
  };
  std::string owner;
  if (claims_ && number_ == UINT32_MAX) number_ = claims_->number(sku_);
  auto claim = claims_ ? claims_->claim(id, sku_, number_, owner) : hold_claims::outcome::fresh;
  if (claim == hold_claims::outcome::theirs) return conflict(owner);
  // Claimed now: a fresh id, or one that ended here since the last snapshot (claimed
  // again, so that a grant after its finished record was collected is indexed too).
  bool claimed = claim == hold_claims::outcome::fresh || claim == hold_claims::outcome::ended_ours;
  auto give_back = [&] {
    if (claims_ && claimed) claims_->release(id.hash, number_);
  };
  // A fresh claim looked in memory's index; ids that ended before the last snapshot are
  // in LMDB's (a bloom filter answers most misses without a read). Without claims (a
  // book alone) both are asked here.
  bool indexed = claim == hold_claims::outcome::ours || claim == hold_claims::outcome::ended_ours;
  if (!indexed) {
    auto index = claims_ ? c.reads().lookup_snapshot_hold_sku(op.hold_id, owner)
                         : c.reads().lookup_hold_sku(op.hold_id, owner);
    if (index != store_status::ok && index != store_status::not_found) {
      give_back();
      return unreadable(sku_, op.hold_id, index);
    }
    indexed = index == store_status::ok;
    if (indexed && owner != sku_) {
      give_back();
      return conflict(owner);
    }
  }
  if (indexed) {
    auto found = find_finished(op.hold_id, done, c);
    if (found == store_status::ok) {
      give_back();
      return repeated(done, op);
    }
    if (found != store_status::not_found) {
      give_back();
      return unreadable(sku_, op.hold_id, found);
    }
  }
  auto& s = record_.sku;
  if (s.limit_per_user > 0 && op.user.empty()) {
    give_back();
    return make_hold_error(code::invalid, "sku '" + sku_ + "' sells at most " +
                                            std::to_string(s.limit_per_user) +
                                            " per user: a reserve must name its user");
  }
  if (s.available() < op.qty) {
    give_back();
    hold_result r;
    r.status = code::out_of_stock;
    r.available = s.available();
    return r;
  }
  // After the stock check: a sold-out SKU remembers no buyer it refused.
  buyer* b = nullptr;
  if (s.limit_per_user > 0) {
    if (auto st = find_buyer(op.user, *c.env, b); st != store_status::ok) {
      give_back();
      return make_hold_error(code::unavailable, "the buyer record of user '" + op.user +
                                                  "' on sku '" + sku_ + "' cannot be read: " +
                                                  to_string(st));
    }
    if (b->held + b->bought + op.qty > s.limit_per_user) {
      give_back();
      return over_limit(op.user, *b, op.qty);
    }
  }
  if (claims_ && claimed) claimed_.emplace_back(c.seq, id.hash);
  HF_ASSERT(op.qty > 0 && op.qty <= s.available(), "sku '{}': reserve of {} with {} available",
            sku_, op.qty, s.available());
  active_hold h{op.qty, now_ms + op.ttl_ms, op.ttl_ms, op.ttl_ms};
  s.reserved += op.qty + (fault_armed(fault_point::sku_book_miscount) ? 1 : 0);
  s.active_holds += 1;
  if (!op.user.empty()) hold_users_[op.hold_id] = op.user;
  if (b) b->held += op.qty;
  auto rec = to_record(op.hold_id, h, hold_state::active);
  active_[id] = h;
  push_deadline(h.deadline_ms, active_map::hash(id));
  HF_ASSERT(s.available() >= 0 && s.active_holds == static_cast<int64_t>(active_.size()),
            "sku '{}': reserving hold '{}' left reserved {} of {} in {} holds, {} in memory", sku_,
            op.hold_id, s.reserved, s.on_hand, s.active_holds, active_.size());
  auto r = ok(rec.hold);
  c.mutations.push_back(mutation{mutation::put_hold, {}, std::move(rec), {}});
  c.dirty = true;
  return r;
}

hold_result sku_book::end_hold(const hold_op& op, sku_change& c) {
  const bool confirming = op.kind == hold_op_kind::confirm;
  const bool extending = op.kind == hold_op_kind::extend;
  hold_record done;
  if (auto* h = active_.find(op.hold_id); h && extending && h->deadline_ms > c.now_ms)
    return ok(extend(op.hold_id, *h, op.ttl_ms, c).hold);
  if (auto* h = active_.find(op.hold_id); h && op.kind == hold_op_kind::return_hold &&
                                          h->deadline_ms > c.now_ms)
    return with_hold(code::wrong_state, to_record(op.hold_id, *h, hold_state::active).hold);
  if (auto* h = active_.find(op.hold_id)) {
    // A hold past its deadline has expired, whether or not an expiry batch (bounded)
    // has reached it yet: it is never confirmed late.
    if (h->deadline_ms > c.now_ms) {
      if (op.kind == hold_op_kind::query) return ok(to_record(op.hold_id, *h, hold_state::active).hold);
      return ok(finish(op.hold_id, confirming ? hold_state::confirmed : hold_state::released, c).hold);
    }
    done = finish(op.hold_id, hold_state::expired, c);
    if (op.kind == hold_op_kind::query) return ok(done.hold);
    if (op.kind == hold_op_kind::return_hold) return with_hold(code::wrong_state, done.hold);
    return confirming || extending ? with_hold(code::hold_expired, done.hold) : ok(done.hold);
  }
  if (auto found = find_finished(op.hold_id, done, c); found != store_status::ok) {
    if (found != store_status::not_found) return unreadable(sku_, op.hold_id, found);
    // Named with the wrong SKU: say where the hold is (nothing changes either way).
    std::string owner;
    if (c.reads().lookup_hold_sku(op.hold_id, owner) == store_status::ok && owner != sku_)
      return make_hold_error(code::unknown_hold, "hold '" + op.hold_id + "' is on sku '" + owner +
                                                   "', not '" + sku_ + "'");
    return make_hold_error(code::unknown_hold);
  }
  const auto state = done.hold.state;
  if (op.kind == hold_op_kind::query) return ok(done.hold);
  if (op.kind == hold_op_kind::return_hold) {
    if (state == hold_state::returned) return ok(done.hold);
    if (state != hold_state::confirmed) return with_hold(code::wrong_state, done.hold);
    return give_back(std::move(done), c);
  }
  if (extending)
    return with_hold(state == hold_state::expired ? code::hold_expired : code::wrong_state, done.hold);
  if (confirming) {
    if (state == hold_state::confirmed) return ok(done.hold);
    return with_hold(state == hold_state::expired ? code::hold_expired : code::wrong_state,
                     done.hold);
  }
  // Release of an expired hold already has what release wants: the units are back.
  return state == hold_state::confirmed ? with_hold(code::wrong_state, done.hold) : ok(done.hold);
}

// A sale undone: the units go back on hand, once (the hold's state says so).
hold_result sku_book::give_back(hold_record done, sku_change& c) {
  auto& s = record_.sku;
  if (done.hold.qty > on_hand_max - s.on_hand)
    return make_hold_error(code::invalid, "returning " + std::to_string(done.hold.qty) +
                                            " would take on_hand past " + std::to_string(on_hand_max));
  // A returned purchase no longer counts against the user's limit.
  if (s.limit_per_user > 0 && !done.user.empty()) {
    buyer* b = nullptr;
    if (auto st = find_buyer(done.user, *c.env, b); st != store_status::ok)
      return make_hold_error(code::unavailable, "the buyer record of user '" + done.user + "' cannot be read: " +
                                                  to_string(st));
    b->bought = std::max<int64_t>(0, b->bought - done.hold.qty);
    b->written_seq = c.seq;
    mutation m;
    m.kind = mutation::put_record;
    m.record = {record_space::buyer, buyer_key(sku_, done.user), std::to_string(b->bought), false};
    c.mutations.push_back(std::move(m));
  }
  s.on_hand += done.hold.qty;
  s.sold -= done.hold.qty;
  done.hold.state = hold_state::returned;
  done.finished_ms = c.now_ms;
  c.mutations.push_back(mutation{mutation::put_hold, {}, done, {}});
  c.dirty = true;
  finishing_[done.hold.hold_id] = {c.seq, done};
  finishing_order_.emplace_back(c.seq, done.hold.hold_id);
  return ok(done.hold);
}

// Never shortens: a repeated or late extend leaves a later deadline alone.
hold_record sku_book::extend(const std::string& hold_id, active_hold& h, int64_t ttl_ms,
                             sku_change& c) {
  auto deadline = c.now_ms + ttl_ms;
  if (deadline > h.deadline_ms) {
    h.deadline_ms = deadline;
    h.lease_ms = std::max(h.lease_ms, ttl_ms);
    push_deadline(deadline, active_map::hash(hold_id));
    c.mutations.push_back(mutation{mutation::put_hold, {}, to_record(hold_id, h, hold_state::active), {}});
    c.dirty = true;
  }
  return to_record(hold_id, h, hold_state::active);
}

sku_result sku_book::snapshot(code status) const {
  sku_result r;
  r.status = status;
  r.sku = record_.sku;
  return r;
}

namespace {

// `stocked` only grows (every unit ever added, by restock or by an adjust upwards). Kept
// at half the int64 range, so that the sums of the counters that make it up cannot
// overflow either.
bool overflows_stocked(const sku_info& s, int64_t added) {
  return s.stocked > std::numeric_limits<int64_t>::max() / 2 - added;
}

sku_result stocked_overflow() {
  return make_sku_error(code::invalid, "the change would overflow the stock counters");
}

}  // namespace

sku_result sku_book::apply(const sku_op& op, sku_change& c) {
  auto& s = record_.sku;
  if (op.kind == sku_op_kind::create) {
    if (exists_) return snapshot(code::sku_exists);
    exists_ = true;
    s.on_hand = s.stocked = op.amount;
    s.price_cents = op.price_cents;
    s.title = op.title;
    s.limit_per_user = op.limit_per_user;
    c.dirty = true;
    return snapshot();
  }
  if (!exists_) return make_sku_error(code::unknown_sku);
  switch (op.kind) {
    case sku_op_kind::list_holds:
      return c.env ? list_holds(op, *c.env) : make_sku_error(code::unavailable, "no storage to list holds from");
    case sku_op_kind::restock:
      // The edge checks the amount; only here is on_hand known.
      if (op.amount > on_hand_max - s.on_hand)
        return make_sku_error(code::invalid, "restock of " + std::to_string(op.amount) +
                                               " would take on_hand from " +
                                               std::to_string(s.on_hand) + " past " +
                                               std::to_string(on_hand_max));
      if (overflows_stocked(s, op.amount)) return stocked_overflow();
      s.on_hand += op.amount;
      s.stocked += op.amount;
      c.dirty = true;
      break;
    case sku_op_kind::set_price:
      if (s.price_cents != op.price_cents) {
        s.price_cents = op.price_cents;
        c.dirty = true;
      }
      break;
    case sku_op_kind::adjust:
      if (op.amount < s.reserved) return snapshot(code::insufficient);
      if (op.amount > s.on_hand && overflows_stocked(s, op.amount - s.on_hand))
        return stocked_overflow();
      // A count above what is on hand adds stock; below it writes units off.
      if (op.amount > s.on_hand) s.stocked += op.amount - s.on_hand;
      else s.written_off += s.on_hand - op.amount;
      s.on_hand = op.amount;
      c.dirty = true;
      break;
    default:
      break;
  }
  return snapshot();
}

sku_result sku_book::list_holds(const sku_op& op, const storage& env) const {
  size_t limit = op.limit ? op.limit : hold_list_limit_default;
  // The book's own holds are newer than storage's: storage lists the others.
  auto in_memory = [this](const std::string& id) { return active_.find(id) || finishing_.count(id); };
  std::vector<hold_record> stored;
  std::string next;
  if (op.state != "active") {  // every active hold is in the book
    auto st = env.hold_page(
      sku_, op.after,
      [&](const hold_record& r) { return !in_memory(r.hold.hold_id) && hold_state_wanted(op.state, r.hold.state); },
      limit, policy_.hold_list_scan_max, stored, next);
    if (st != store_status::ok)
      return make_sku_error(code::unavailable, "sku '" + sku_ + "': its finished holds cannot be read: " + to_string(st));
  }
  // The book's first `limit` in range, chosen by pointer (persistence/least_n.hpp): a hot
  // SKU's million active holds cost one comparison each, not a copy or a sort. Storage's
  // page covers ids up to `next` only.
  struct mine {
    const std::string* id;
    const active_hold* active;  // or
    const hold_record* ended;
  };
  auto by_id = [](const mine& a, const mine& b) { return *a.id < *b.id; };
  least_n<mine, decltype(by_id)> first(limit, by_id);
  auto in_page = [&](const std::string& id) { return id > op.after && (next.empty() || id <= next); };
  if (hold_state_wanted(op.state, hold_state::active))
    active_.each([&](const std::string& id, const active_hold& h) {
      if (in_page(id)) first.offer({&id, &h, nullptr});
    });
  for (auto& [id, entry] : finishing_)
    if (in_page(id) && hold_state_wanted(op.state, entry.second.hold.state)) first.offer({&id, nullptr, &entry.second});
  bool more = first.more();  // some of the book's own wait for a later page
  auto found = std::move(first).sorted();
  std::vector<hold_info> page;
  page.reserve(stored.size() + found.size());
  for (auto& r : stored) page.push_back(std::move(r.hold));
  for (auto& m : found)
    page.push_back(m.active ? hold_info{*m.id, sku_, m.active->qty, hold_state::active, m.active->deadline_ms}
                            : m.ended->hold);
  std::sort(page.begin(), page.end(), [](const hold_info& a, const hold_info& b) { return a.hold_id < b.hold_id; });
  if (page.size() > limit || more) {
    page.resize(std::min(page.size(), limit));
    next = page.back().hold_id;
  }
  auto out = snapshot();
  out.holds = std::move(page);
  out.next = std::move(next);
  return out;
}

std::vector<mutation> sku_book::seal(sku_change& c) {
  if (!c.dirty) return {};
  // What is written obeys the invariants that load() checks where it is read back.
  if (auto broken = broken_invariant(); !broken.empty())
    HF_ASSERT(false, "sku '{}' would write a record that breaks its invariants: {}", sku_, broken);
  record_.earliest_deadline_ms = earliest_deadline_ms();
  auto mutations = std::move(c.mutations);
  mutations.push_back(mutation{mutation::put_sku, record_, {}, {}});
  return mutations;
}

void sku_book::durable(uint64_t seq) {
  durable_seq_ = std::max(durable_seq_, seq);
  // Durable: the claims are now the index entries of active holds.
  while (!claimed_.empty() && claimed_.front().first <= seq) claimed_.pop_front();
  while (!finishing_order_.empty() && finishing_order_.front().first <= seq) {
    auto it = finishing_.find(finishing_order_.front().second);
    if (it != finishing_.end() && it->second.first <= seq) finishing_.erase(it);
    finishing_order_.pop_front();
  }
}

}  // namespace holdfast
