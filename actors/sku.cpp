#include "actors/sku.hpp"

#include <caf/actor_cast.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <iostream>
#include <limits>

namespace holdfast {
namespace {

using self_ptr = sku_actor::stateful_pointer<sku_state>;

// The changes one handled message makes; becomes one write batch.
struct change {
  uint64_t seq;  // the seq this batch gets if it writes anything
  std::vector<mutation> mutations;
  bool dirty = false;  // the SKU snapshot changed
  const lmdb_env* env = nullptr;
  std::unique_ptr<lmdb_env::read_view> view;  // one read transaction for the whole message
  lmdb_env::read_view& reads() {
    if (!view) view = env->read();
    return *view;
  }
};

change begin_change(self_ptr self) {
  return change{self->state.next_seq, {}, false, self->state.ctx.env.get(), nullptr};
}

code code_for(store_status s) {
  return s == store_status::map_full || s == store_status::disk_full ? code::storage_full
                                                                     : code::unavailable;
}

std::vector<hold_result> failed(const std::vector<hold_result>& rs, store_status s) {
  return std::vector<hold_result>(rs.size(), make_hold_error(code_for(s), to_string(s)));
}

sku_result failed(const sku_result&, store_status s) {
  return make_sku_error(code_for(s), to_string(s));
}

// Rebuilds memory from the last committed state. False on a storage error.
bool load(self_ptr self, const std::string& sku) {
  auto& st = self->state;
  st.exists = false;
  st.record = sku_record{};
  st.record.sku.sku = sku;
  st.active.clear();
  st.deadlines.clear();
  st.finishing.clear();
  st.finishing_order.clear();
  st.log_entries = 0;
  auto status = st.ctx.env->read_sku(sku, st.record);
  if (status == store_status::not_found) return true;
  if (status != store_status::ok) return false;
  st.exists = true;
  std::vector<hold_record> holds;
  if (st.ctx.env->read_active_holds(sku, holds, &st.log_entries) != store_status::ok) return false;
  int64_t reserved = 0;
  for (auto& h : holds) {
    reserved += h.hold.qty;
    st.deadlines.emplace(h.hold.deadline_ms, h.hold.hold_id);
    st.active.emplace(h.hold.hold_id, std::move(h));
  }
  // Snapshot and holds are written in one transaction: they agree, or the data is bad.
  return reserved == st.record.sku.reserved &&
         static_cast<int64_t>(st.active.size()) == st.record.sku.active_holds;
}

bool invariants_hold(const sku_state& st) {
  const auto& s = st.record.sku;
  return 0 <= s.reserved && s.reserved <= s.on_hand && s.sold <= s.stocked &&
         s.active_holds == static_cast<int64_t>(st.active.size());
}

hold_record finish(self_ptr self, const std::string& hold_id, hold_state to, change& c) {
  auto& st = self->state;
  auto it = st.active.find(hold_id);
  hold_record rec = std::move(it->second);
  st.active.erase(it);
  st.deadlines.erase({rec.hold.deadline_ms, hold_id});
  auto& s = st.record.sku;
  s.reserved -= rec.hold.qty;
  s.active_holds -= 1;
  if (to == hold_state::confirmed) {
    s.on_hand -= rec.hold.qty;
    s.sold += rec.hold.qty;
  }
  rec.hold.state = to;
  c.mutations.push_back(mutation{mutation::put_hold, {}, rec});
  c.dirty = true;
  st.finishing[hold_id] = {c.seq, rec};
  st.finishing_order.emplace_back(c.seq, hold_id);
  return rec;
}

void expire_due(self_ptr self, int64_t now_ms, change& c) {
  auto& st = self->state;
  while (!st.deadlines.empty() && st.deadlines.begin()->first <= now_ms) {
    auto id = st.deadlines.begin()->second;
    finish(self, id, hold_state::expired, c);
  }
}

// A hold of this SKU that has ended, in memory or on disk.
bool find_finished(self_ptr self, const std::string& hold_id, hold_record& out, change& c) {
  auto& st = self->state;
  if (auto it = st.finishing.find(hold_id); it != st.finishing.end()) {
    out = it->second.second;
    return true;
  }
  return c.reads().read_finished_hold(st.record.sku.sku, hold_id, out) == store_status::ok;
}

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
  return h.hold.qty == op.qty && h.ttl_ms == op.ttl_ms;
}

hold_result reserve(self_ptr self, const hold_op& op, int64_t now_ms, change& c) {
  auto& st = self->state;
  if (auto it = st.active.find(op.hold_id); it != st.active.end())
    return same_arguments(it->second, op) ? ok(it->second.hold)
                                          : with_hold(code::hold_conflict, it->second.hold);
  hold_record done;
  if (auto it = st.finishing.find(op.hold_id); it != st.finishing.end()) {
    done = it->second.second;
    return same_arguments(done, op) ? ok(done.hold) : with_hold(code::hold_conflict, done.hold);
  }
  // The index knows every hold id ever durably reserved; most reserves are new ids and
  // stop at this one lookup.
  std::string other_sku;
  auto indexed = c.reads().lookup_hold_sku(op.hold_id, other_sku) == store_status::ok;
  if (indexed && other_sku == st.record.sku.sku && find_finished(self, op.hold_id, done, c))
    return same_arguments(done, op) ? ok(done.hold) : with_hold(code::hold_conflict, done.hold);
  if (indexed && other_sku != st.record.sku.sku) {
    hold_info theirs;
    theirs.hold_id = op.hold_id;
    theirs.sku = other_sku;
    return with_hold(code::hold_conflict, theirs);
  }
  auto& s = st.record.sku;
  if (s.available() < op.qty) {
    hold_result r;
    r.status = code::out_of_stock;
    r.available = s.available();
    return r;
  }
  hold_record rec;
  rec.hold = {op.hold_id, s.sku, op.qty, hold_state::active, now_ms + op.ttl_ms};
  rec.ttl_ms = op.ttl_ms;
  s.reserved += op.qty;
  s.active_holds += 1;
  st.deadlines.emplace(rec.hold.deadline_ms, op.hold_id);
  st.active.emplace(op.hold_id, rec);
  c.mutations.push_back(mutation{mutation::put_hold, {}, rec});
  c.dirty = true;
  return ok(rec.hold);
}

hold_result end_hold(self_ptr self, const hold_op& op, change& c) {
  auto& st = self->state;
  const bool confirming = op.kind == hold_op_kind::confirm;
  if (st.active.count(op.hold_id)) {
    if (op.kind == hold_op_kind::query) return ok(st.active.at(op.hold_id).hold);
    return ok(finish(self, op.hold_id, confirming ? hold_state::confirmed : hold_state::released,
                     c)
                .hold);
  }
  hold_record done;
  if (!find_finished(self, op.hold_id, done, c)) return make_hold_error(code::unknown_hold);
  const auto state = done.hold.state;
  if (op.kind == hold_op_kind::query) return ok(done.hold);
  if (confirming) {
    if (state == hold_state::confirmed) return ok(done.hold);
    return with_hold(state == hold_state::expired ? code::hold_expired : code::wrong_state,
                     done.hold);
  }
  // Release of an expired hold already has what release wants: the units are back.
  return state == hold_state::confirmed ? with_hold(code::wrong_state, done.hold) : ok(done.hold);
}

void arm_timer(self_ptr self, int64_t now_ms) {
  auto& st = self->state;
  if (st.deadlines.empty()) return;
  auto earliest = st.deadlines.begin()->first;
  if (st.timer_armed_ms != 0 && st.timer_armed_ms <= earliest) return;
  auto delay_ms = std::max<int64_t>(1, earliest - now_ms + st.ctx.timer_slack_ms);
  self->delayed_send(self, std::chrono::milliseconds(delay_ms), expire_atom_v);
  st.timer_armed_ms = earliest;
}

// Sends the change to the store; returns the seq a reply must wait for.
uint64_t issue(self_ptr self, change& c) {
  auto& st = self->state;
  if (!c.dirty) return st.next_seq - 1;
  st.record.earliest_deadline_ms = st.deadlines.empty() ? 0 : st.deadlines.begin()->first;
  if (!c.mutations.empty()) {
    st.record.log_block++;
    st.log_entries += c.mutations.size();
    // When the log holds several times more entries than there are active holds, this
    // block restates them all and the store drops the older blocks: replay on load
    // stays proportional to the active holds, and the log to a bounded multiple.
    if (st.log_entries > st.ctx.log_checkpoint_factor * st.active.size() + st.ctx.log_checkpoint_slack) {
      std::vector<mutation> restated;
      restated.reserve(st.active.size() + c.mutations.size());
      for (auto& m : c.mutations)
        if (m.hold.hold.state != hold_state::active) restated.push_back(std::move(m));
      for (auto& [id, h] : st.active) restated.push_back(mutation{mutation::put_hold, {}, h});
      c.mutations = std::move(restated);
      st.record.checkpoint_block = st.record.log_block;
      st.log_entries = c.mutations.size();
    }
  }
  c.mutations.push_back(mutation{mutation::put_sku, st.record, {}});
  write_batch batch{st.epoch, c.seq, std::move(c.mutations)};
  self->send(st.ctx.store, write_atom_v, caf::actor_cast<store_listener>(self), std::move(batch));
  return st.next_seq++;
}

template <class T>
caf::result<T> reply_when_durable(self_ptr self, change& c, int64_t now_ms, T value) {
  auto& st = self->state;
  auto seq = issue(self, c);
  arm_timer(self, now_ms);
  if (!invariants_hold(st)) {
    std::cerr << "holdfast: invariant broken on sku " << st.record.sku.sku << ", actor stops\n";
    self->quit(caf::make_error(caf::sec::runtime_error, "sku invariant broken"));
    return caf::make_error(caf::sec::runtime_error, "sku invariant broken");
  }
  if (seq <= st.durable_seq) return value;
  auto rp = self->template make_response_promise<T>();
  st.replies.push_back({seq, [rp, value](const store_status* why) mutable {
                          if (why)
                            rp.deliver(failed(value, *why));
                          else
                            rp.deliver(std::move(value));
                        }});
  return rp;
}

sku_result sku_reply(const sku_state& st, code status = code::ok) {
  sku_result r;
  r.status = status;
  r.sku = st.record.sku;
  return r;
}

sku_result apply(self_ptr self, const sku_op& op, change& c) {
  auto& st = self->state;
  auto& s = st.record.sku;
  if (op.kind == sku_op_kind::create) {
    if (st.exists) return sku_reply(st, code::sku_exists);
    st.exists = true;
    s.on_hand = s.stocked = op.amount;
    s.price_cents = op.price_cents;
    c.dirty = true;
    return sku_reply(st);
  }
  if (!st.exists) return make_sku_error(code::unknown_sku);
  switch (op.kind) {
    case sku_op_kind::restock:
      if (s.stocked > std::numeric_limits<int64_t>::max() / 2 - op.amount)
        return make_sku_error(code::invalid, "restock would overflow the stock counters");
      s.on_hand += op.amount;
      s.stocked += op.amount;
      c.dirty = true;
      break;
    case sku_op_kind::adjust:
      if (op.amount < s.reserved) return sku_reply(st, code::insufficient);
      if (op.amount > s.on_hand) s.stocked += op.amount - s.on_hand;
      s.on_hand = op.amount;
      c.dirty = true;
      break;
    default:
      break;
  }
  return sku_reply(st);
}

void on_durable(self_ptr self, uint64_t seq) {
  auto& st = self->state;
  st.durable_seq = std::max(st.durable_seq, seq);
  while (!st.replies.empty() && st.replies.front().seq <= st.durable_seq) {
    st.replies.front().deliver(nullptr);
    st.replies.pop_front();
  }
  // Only durable entries leave; LMDB answers for them from now on.
  while (!st.finishing_order.empty() && st.finishing_order.front().first <= st.durable_seq) {
    auto it = st.finishing.find(st.finishing_order.front().second);
    if (it != st.finishing.end() && it->second.first <= st.durable_seq) st.finishing.erase(it);
    st.finishing_order.pop_front();
  }
}

}  // namespace

sku_actor::behavior_type sku_behavior(self_ptr self, std::string sku, sku_context ctx) {
  self->state.ctx = std::move(ctx);
  if (!load(self, sku)) {
    std::cerr << "holdfast: cannot load sku " << sku << " from storage\n";
    self->quit(caf::make_error(caf::sec::runtime_error, "sku load failed"));
    return sku_actor::behavior_type::make_empty_behavior();
  }
  // Holds that expired while the node was down end before anything else is served.
  {
    auto now = self->state.ctx.clock->now_ms();
    auto c = begin_change(self);
    expire_due(self, now, c);
    issue(self, c);
    arm_timer(self, now);
  }
  return {
    [self](hold_ops_atom, std::vector<hold_op>& ops) -> caf::result<std::vector<hold_result>> {
      auto& st = self->state;
      auto now = st.ctx.clock->now_ms();
      auto c = begin_change(self);
      expire_due(self, now, c);
      std::vector<hold_result> results;
      results.reserve(ops.size());
      for (auto& op : ops) {
        if (!st.exists) {
          results.push_back(make_hold_error(code::unknown_sku));
          continue;
        }
        results.push_back(op.kind == hold_op_kind::reserve ? reserve(self, op, now, c)
                                                           : end_hold(self, op, c));
      }
      return reply_when_durable(self, c, now, std::move(results));
    },
    [self](sku_op_atom, sku_op& op) -> caf::result<sku_result> {
      auto now = self->state.ctx.clock->now_ms();
      auto c = begin_change(self);
      expire_due(self, now, c);
      auto result = apply(self, op, c);
      return reply_when_durable(self, c, now, std::move(result));
    },
    [self](durable_atom, uint64_t seq) { on_durable(self, seq); },
    [self](write_failed_atom, uint64_t epoch, uint64_t, store_status why) {
      auto& st = self->state;
      if (epoch != st.epoch) return;  // a later batch of an epoch already failed
      // Everything not yet durable failed with it: answer it and start over from disk.
      for (auto& r : st.replies) r.deliver(&why);
      st.replies.clear();
      st.epoch++;
      st.durable_seq = st.next_seq - 1;
      st.timer_armed_ms = 0;
      if (!load(self, st.record.sku.sku)) {
        self->quit(caf::make_error(caf::sec::runtime_error, "sku reload failed"));
        return;
      }
      arm_timer(self, st.ctx.clock->now_ms());
    },
    [self](expire_atom) {
      auto& st = self->state;
      st.timer_armed_ms = 0;
      auto now = st.ctx.clock->now_ms();
      auto c = begin_change(self);
      expire_due(self, now, c);
      issue(self, c);
      arm_timer(self, now);
    },
    [self](passivate_atom) -> caf::result<bool, int64_t> {
      auto& st = self->state;
      if (!st.replies.empty() || st.durable_seq + 1 < st.next_seq)
        return {false, int64_t{0}};
      int64_t earliest = st.deadlines.empty() ? 0 : st.deadlines.begin()->first;
      auto rp = self->make_response_promise<bool, int64_t>();
      rp.deliver(true, earliest);
      self->quit();
      return rp;
    },
  };
}

}  // namespace holdfast
