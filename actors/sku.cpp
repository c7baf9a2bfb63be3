#include "actors/sku.hpp"

#include <caf/actor_cast.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <iostream>

namespace holdfast {
namespace {

using self_ptr = sku_actor::stateful_pointer<sku_state>;

sku_change begin_change(self_ptr self) {
  return sku_change(self->state.next_seq, self->state.ctx.env.get());
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

void arm_timer(self_ptr self, int64_t now_ms) {
  auto& st = self->state;
  auto earliest = st.book->earliest_deadline_ms();
  if (earliest == 0) return;
  auto due_ms = earliest + st.ctx.timer_slack_ms;
  if (st.timer_armed_ms != 0 && st.timer_armed_ms <= due_ms) return;
  auto delay_ms = std::clamp<int64_t>(due_ms - now_ms, 1, std::max<int64_t>(1, st.ctx.timer_horizon_ms));
  self->delayed_send(self, std::chrono::milliseconds(delay_ms), expire_atom_v);
  st.timer_armed_ms = now_ms + delay_ms;
}

// Sends the change to the store; returns the seq a reply must wait for.
uint64_t issue(self_ptr self, sku_change& c) {
  auto& st = self->state;
  auto mutations = st.book->seal(c);
  if (mutations.empty()) return st.next_seq - 1;
  write_batch batch{st.epoch, c.seq, std::move(mutations)};
  self->send(st.ctx.store, write_atom_v, caf::actor_cast<store_listener>(self), std::move(batch));
  return st.next_seq++;
}

template <class T>
caf::result<T> reply_when_durable(self_ptr self, sku_change& c, int64_t now_ms, T value) {
  auto& st = self->state;
  auto seq = issue(self, c);
  arm_timer(self, now_ms);
  if (!st.book->invariants_hold()) {
    std::cerr << "holdfast: invariant broken on sku " << st.book->record().sku.sku
              << ", actor stops\n";
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

void on_durable(self_ptr self, uint64_t seq) {
  auto& st = self->state;
  st.durable_seq = std::max(st.durable_seq, seq);
  while (!st.replies.empty() && st.replies.front().seq <= st.durable_seq) {
    st.replies.front().deliver(nullptr);
    st.replies.pop_front();
  }
  st.book->durable(st.durable_seq);
}

}  // namespace

sku_actor::behavior_type sku_behavior(self_ptr self, std::string sku, sku_context ctx) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.book = std::make_unique<sku_book>(sku, st.ctx.book);
  if (!st.book->load(*st.ctx.env)) {
    std::cerr << "holdfast: cannot load sku " << sku << " from storage\n";
    self->quit(caf::make_error(caf::sec::runtime_error, "sku load failed"));
    return sku_actor::behavior_type::make_empty_behavior();
  }
  // Holds that expired while the node was down end before anything else is served.
  {
    auto now = st.ctx.clock->now_ms();
    auto c = begin_change(self);
    st.book->expire_due(now, c);
    issue(self, c);
    arm_timer(self, now);
  }
  return {
    [self](hold_ops_atom, std::vector<hold_op>& ops) -> caf::result<std::vector<hold_result>> {
      auto& st = self->state;
      auto now = st.ctx.clock->now_ms();
      auto c = begin_change(self);
      c.mutations.reserve(ops.size() + 1);  // a hold each at most, and the snapshot
      st.book->expire_due(now, c);
      std::vector<hold_result> results;
      results.reserve(ops.size());
      for (auto& op : ops) results.push_back(st.book->apply(op, now, c));
      return reply_when_durable(self, c, now, std::move(results));
    },
    [self](sku_op_atom, sku_op& op) -> caf::result<sku_result> {
      auto& st = self->state;
      auto now = st.ctx.clock->now_ms();
      auto c = begin_change(self);
      st.book->expire_due(now, c);
      auto result = st.book->apply(op, c);
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
      if (!st.book->load(*st.ctx.env)) {
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
      st.book->expire_due(now, c);
      issue(self, c);
      arm_timer(self, now);
    },
    [self](passivate_atom) -> caf::result<bool, int64_t> {
      auto& st = self->state;
      if (!st.replies.empty() || st.durable_seq + 1 < st.next_seq)
        return {false, int64_t{0}};
      int64_t earliest = st.book->earliest_deadline_ms();
      auto rp = self->make_response_promise<bool, int64_t>();
      rp.deliver(true, earliest);
      self->quit();
      return rp;
    },
  };
}

}  // namespace holdfast
