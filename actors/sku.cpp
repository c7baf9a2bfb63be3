#include "actors/sku.hpp"

#include <caf/actor_cast.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>

#include "protocol/assert.hpp"
#include "protocol/log.hpp"

namespace holdfast {
namespace {

using self_ptr = sku_actor::stateful_pointer<sku_state>;

sku_change begin_change(self_ptr self, int64_t now_ms) {
  return sku_change(self->state.next_seq, now_ms, self->state.ctx.env.get());
}

hold_result storage_error(store_status s) { return make_hold_error(code_for(s), to_string(s)); }

std::vector<hold_result> failed(const std::vector<hold_result>& rs, store_status s) {
  return std::vector<hold_result>(rs.size(), storage_error(s));
}

sku_result failed(const sku_result&, store_status s) {
  return make_sku_error(code_for(s), to_string(s));
}

// After a failed write, writes are refused without trying until the backoff ends.
bool writes_refused(self_ptr self, int64_t now_ms) {
  auto& st = self->state;
  return st.storage_failure != store_status::ok && now_ms < st.storage_retry_ms;
}

void arm_timer(self_ptr self, int64_t now_ms) {
  auto& st = self->state;
  auto earliest = st.book->earliest_deadline_ms();
  if (earliest == 0) return;
  auto due_ms = std::max(earliest + st.ctx.timer_slack_ms,
                         writes_refused(self, now_ms) ? st.storage_retry_ms : 0);
  if (st.timer_armed_ms != 0 && st.timer_armed_ms <= due_ms) return;
  // Beyond the horizon no timer: an idle actor is passivated within it and its deadline
  // goes to the directory's wake-ups, and a busy one arms the timer at the message that
  // finds the deadline inside the horizon. (A timer per cold SKU cost the cold path
  // about a tenth of the node's CPU in CAF's clock.)
  if (due_ms - now_ms > std::max<int64_t>(1, st.ctx.timer_horizon_ms)) return;
  auto delay_ms = std::max<int64_t>(1, due_ms - now_ms);
  self->delayed_send(self, std::chrono::milliseconds(delay_ms), expire_atom_v);
  st.timer_armed_ms = now_ms + delay_ms;
}

// Sends the change to the store with `done` (may be empty), which the store calls once
// the batch is durable or has failed. A change that wrote nothing still waits behind the
// batches in flight (its answers may have read their changes): it goes as an empty
// batch, unless none is in flight. Returns the seq a reply must wait for.
uint64_t issue(self_ptr self, sku_change& c, std::function<void(const store_status*)> done = {}) {
  auto& st = self->state;
  auto mutations = st.book->seal(c);
  if (mutations.empty() && (!done || st.durable_seq + 1 >= st.next_seq)) {
    if (done) done(nullptr);
    return st.next_seq - 1;
  }
  bool writes = !mutations.empty();
  write_batch batch{st.epoch, writes ? c.seq : st.next_seq - 1, std::move(mutations), std::move(done),
                    st.ctx.tenure};
  self->send(st.ctx.store, write_atom_v, caf::actor_cast<store_listener>(self), std::move(batch));
  return writes ? st.next_seq++ : st.next_seq - 1;
}

// The answer to the directory's passivate_atom: whether the actor quits and, if so, the
// earliest deadline the directory must wake it for (0: none).
void passivated(self_ptr self, bool quit, int64_t earliest_deadline_ms) {
  caf::anon_send(caf::actor_cast<caf::actor>(self->current_sender()), passivated_atom_v,
                 self->state.book->record().sku.sku, quit, earliest_deadline_ms);
}

sku_actor::behavior_type broken_behavior(self_ptr self);

// A broken SKU's actor stops once every batch it sent the store has landed or failed.
bool quit_if_drained(self_ptr self) {
  auto& st = self->state;
  if (st.durable_seq + 1 < st.next_seq) return false;
  self->quit(caf::make_error(caf::sec::runtime_error, "sku cannot be served"));
  return true;
}

// An assertion failed in this actor (HF_ASSERT in the book, or here): the change in hand
// is never written (the book asserts what it writes before it goes to the store), the
// actor stops (its callers hear unavailable), never the node.
caf::error break_actor(self_ptr self, const assertion_failed& e) {
  auto& st = self->state;
  spdlog::critical("sku '{}': assertion failed ({}); its actor stops", st.book->record().sku.sku,
                   e.what());
  // Earlier batches whose writes are with the store may still become durable: callers
  // waiting here hear outcome_unknown (retry with the same ids), never "not applied";
  // the store answers the sinks of its batches itself, with their real outcome.
  auto unknown = store_status::outcome_unknown;
  for (auto& r : st.replies) r.deliver(&unknown);
  st.replies.clear();
  // The change in hand (seq next_seq, never sent) is never written: its reserves' claims
  // go now. Those of batches at the store go if they fail: the actor stops once every
  // one has landed or failed.
  st.book->release_claims(st.next_seq);
  st.broken = std::string("assertion failed: ") + e.what();
  self->become(broken_behavior(self));
  quit_if_drained(self);
  return caf::make_error(caf::sec::runtime_error, "sku assertion failed");
}

// Sends the change to the store; `deliver(nullptr)` runs once it is durable (at once
// if it wrote nothing new), `deliver(&why)` if it failed.
void when_durable(self_ptr self, sku_change& c, std::function<void(const store_status*)> deliver) {
  auto& st = self->state;
  auto seq = issue(self, c);
  arm_timer(self, c.now_ms);
  if (seq <= st.durable_seq) {
    deliver(nullptr);
    return;
  }
  st.replies.push_back({seq, std::move(deliver)});
}

template <class T>
caf::result<T> reply_when_durable(self_ptr self, sku_change& c, T value) {
  auto rp = self->template make_response_promise<T>();
  try {
    when_durable(self, c, [rp, value](const store_status* why) mutable {
      if (why)
        rp.deliver(failed(value, *why));
      else
        rp.deliver(std::move(value));
    });
  } catch (const assertion_failed& e) {
    // The promise owns the request now: it answers, or the caller would wait for ever.
    rp.deliver(break_actor(self, e));
  }
  return rp;
}

// One handled batch of hold operations: what the callers will hear once it is durable.
std::vector<hold_result> apply_ops(self_ptr self, std::vector<hold_op>& ops, sku_change& c) {
  auto& st = self->state;
  c.mutations.reserve(ops.size() + 1);  // a hold each at most, and the snapshot
  bool refused = writes_refused(self, c.now_ms);
  if (!refused) st.book->expire_due(c.now_ms, c, st.expire_batch);
  std::vector<hold_result> results;
  results.reserve(ops.size());
  for (auto& op : ops)
    results.push_back(refused && op.kind != hold_op_kind::query ? storage_error(st.storage_failure)
                                                                 : st.book->apply(op, c.now_ms, c));
  return results;
}

// A batch from the directory: the answers go to the caller's sink from the store's
// thread once the batch is durable.
void apply_and_answer(self_ptr self, std::vector<hold_op>& ops, hold_sink_ptr& sink) {
  auto c = begin_change(self, self->state.ctx.clock->now_ms());
  auto results = apply_ops(self, ops, c);
  // A reserve whose id is held on another SKU: the directory fills in that hold.
  std::shared_ptr<std::vector<hold_op>> conflicts;
  for (size_t j = 0; j < ops.size() && !conflicts; ++j)
    if (needs_owner(ops[j], results[j])) conflicts = std::make_shared<std::vector<hold_op>>(std::move(ops));
  auto directory = conflicts ? caf::actor_cast<caf::actor>(self->current_sender()) : caf::actor{};
  // The store answers, on its thread, once the batch is durable: no hop back through
  // this actor's mailbox, where the answer would wait behind the next batch.
  issue(self, c, [sink = std::move(sink), results = std::move(results), conflicts,
                  directory](const store_status* why) mutable {
    if (why) sink->deliver(failed(results, *why));
    // Without a directory to ask (a sender other than the directory) the conflict is
    // answered as it stands: it names the SKU that holds the id.
    else if (conflicts && directory) caf::anon_send(directory, conflicts_atom_v, std::move(*conflicts), std::move(results), sink);
    else sink->deliver(std::move(results));
  });
  arm_timer(self, c.now_ms);
}

void on_durable(self_ptr self, uint64_t seq) {
  auto& st = self->state;
  // The pair of issue()'s seq: the store reports durable only a seq this actor sent.
  HF_ASSERT(seq < st.next_seq, "sku '{}': the store reports seq {} durable, the last sent is {}",
            st.book->record().sku.sku, seq, st.next_seq - 1);
  st.durable_seq = std::max(st.durable_seq, seq);
  st.storage_failure = store_status::ok;
  st.storage_backoff_ms = 0;
  st.expire_batch = std::min(st.expire_batch * 2, st.ctx.book.expire_batch_max);
  while (!st.replies.empty() && st.replies.front().seq <= st.durable_seq) {
    st.replies.front().deliver(nullptr);
    st.replies.pop_front();
  }
  st.book->durable(st.durable_seq);
}

// Answers everything with why the SKU cannot be served (it failed its load checks, or
// an invariant broke); changes nothing. It stops once every batch it sent the store has
// landed or failed: a durable one keeps its claims (they are its holds' index entries),
// a failed one gives them back.
sku_actor::behavior_type broken_behavior(self_ptr self) {
  auto why = [self] {
    return "sku '" + self->state.book->record().sku.sku + "' cannot be served: " + self->state.broken;
  };
  auto drained = [self] { return quit_if_drained(self); };
  return {
    [why](hold_ops_atom, std::vector<hold_op>& ops) {
      return std::vector<hold_result>(ops.size(), make_hold_error(code::unavailable, why()));
    },
    [why](hold_ops_atom, std::vector<hold_op>& ops, hold_sink_ptr& sink) {
      sink->deliver(std::vector<hold_result>(ops.size(), make_hold_error(code::unavailable, why())));
    },
    [why](sku_op_atom, sku_op&) { return make_sku_error(code::unavailable, why()); },
    [self, drained](durable_atom, uint64_t seq) {
      auto& st = self->state;
      st.durable_seq = std::max(st.durable_seq, seq);
      st.book->durable(st.durable_seq);
      drained();
    },
    [self, drained](write_failed_atom, uint64_t, uint64_t, store_status) {
      // The failed batch and every later one (the store refuses them) never land.
      auto& st = self->state;
      st.book->release_claims();
      st.durable_seq = st.next_seq - 1;
      drained();
    },
    [](expire_atom) {},
    [self, drained](passivate_atom) { passivated(self, drained(), 0); },
  };
}

}  // namespace

sku_actor::behavior_type sku_behavior(self_ptr self, std::string sku, sku_context ctx,
                                      std::shared_ptr<const sku_record> known) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.book = std::make_unique<sku_book>(sku, st.ctx.book, st.ctx.claims.get());
  st.expire_batch = st.ctx.book.expire_batch_max;
  st.broken = st.book->load(*st.ctx.env, known.get());
  if (!st.broken.empty()) {
    static rate_limit limit;
    uint64_t suppressed = 0;
    if (limit.allow(suppressed))
      spdlog::error("sku '{}' fails its load checks and is not served: {} ({} more suppressed)",
                    sku, st.broken, suppressed);
    return broken_behavior(self);
  }
  // Holds that expired while the node was down end before anything else is served, and
  // no hold outlives now + its ttl (the wall clock may have been set back meanwhile).
  try {
    auto now = st.ctx.clock->now_ms();
    auto c = begin_change(self, now);
    st.book->clamp_deadlines(c);
    st.book->expire_due(now, c, st.expire_batch);
    issue(self, c);
    arm_timer(self, now);
  } catch (const assertion_failed& e) {
    spdlog::critical("sku '{}': assertion failed at load ({}); not served", sku, e.what());
    st.broken = std::string("assertion failed: ") + e.what();
    return broken_behavior(self);
  }
  return {
    [self](hold_ops_atom, std::vector<hold_op>& ops) -> caf::result<std::vector<hold_result>> {
      try {
        auto c = begin_change(self, self->state.ctx.clock->now_ms());
        auto results = apply_ops(self, ops, c);
        return reply_when_durable(self, c, std::move(results));
      } catch (const assertion_failed& e) {
        return break_actor(self, e);
      }
    },
    [self](hold_ops_atom, std::vector<hold_op>& ops, hold_sink_ptr& sink) {
      auto n = ops.size();  // the ops may be moved on by the time an assertion fails
      try {
        apply_and_answer(self, ops, sink);
      } catch (const assertion_failed& e) {
        break_actor(self, e);
        // A sink already handed to the batch answers unavailable as it is destroyed.
        if (sink) sink->deliver(std::vector<hold_result>(n, make_hold_error(code::unavailable, "sku assertion failed")));
      }
    },
    [self](sku_op_atom, sku_op& op) -> caf::result<sku_result> {
      auto& st = self->state;
      auto c = begin_change(self, st.ctx.clock->now_ms());
      if (writes_refused(self, c.now_ms)) {
        if (!reads_only(op.kind)) return failed(sku_result{}, st.storage_failure);
      } else {
        st.book->expire_due(c.now_ms, c, st.expire_batch);
      }
      try {
        auto result = st.book->apply(op, c);
        return reply_when_durable(self, c, std::move(result));
      } catch (const assertion_failed& e) {
        return break_actor(self, e);
      }
    },
    [self](durable_atom, uint64_t seq) {
      try {
        on_durable(self, seq);
      } catch (const assertion_failed& e) {
        break_actor(self, e);
      }
    },
    [self](write_failed_atom, uint64_t epoch, uint64_t, store_status why) {
      auto& st = self->state;
      if (epoch != st.epoch) return;  // a later batch of an epoch already failed
      // Everything not yet durable failed with it: answer it and start over from disk,
      // once; later writes are refused at once until the backoff ends.
      for (auto& r : st.replies) r.deliver(&why);
      st.replies.clear();
      st.epoch++;
      st.durable_seq = st.next_seq - 1;
      st.timer_armed_ms = 0;
      auto now = st.ctx.clock->now_ms();
      // Writes refused later were never tried: they are not of unknown outcome.
      st.storage_failure = why == store_status::outcome_unknown ? store_status::io_error : why;
      // Smaller expiry batches until writes succeed again: when storage is tight, a
      // small batch may fit where a large one did not.
      st.expire_batch = std::max<size_t>(1, st.expire_batch / 4);
      st.storage_backoff_ms = std::clamp(st.storage_backoff_ms * 2, st.ctx.storage_backoff_min_ms,
                                         st.ctx.storage_backoff_max_ms);
      st.broken = st.book->load(*st.ctx.env);
      if (!st.broken.empty()) {
        self->become(broken_behavior(self));
        return;
      }
      // Refused for at least four times what the reload took: an SKU with millions of
      // holds reloads for seconds, on a worker other actors share, and a backoff shorter
      // than that kept the worker reloading while storage stayed full.
      auto loaded = st.ctx.clock->now_ms();
      st.storage_backoff_ms = std::max(st.storage_backoff_ms, 4 * (loaded - now));
      st.storage_retry_ms = loaded + st.storage_backoff_ms;
      static rate_limit limit;
      uint64_t suppressed = 0;
      if (limit.allow(suppressed))
        spdlog::warn("sku '{}': write failed ({}); reloaded in {} ms; writes refused for {} ms ({} more suppressed)",
                     st.book->record().sku.sku, to_string(why), loaded - now, st.storage_backoff_ms, suppressed);
      arm_timer(self, now);
    },
    [self](expire_atom) {
      auto& st = self->state;
      st.timer_armed_ms = 0;
      auto now = st.ctx.clock->now_ms();
      if (!writes_refused(self, now)) {
        try {
          auto c = begin_change(self, now);
          st.book->expire_due(now, c, st.expire_batch);
          issue(self, c);
        } catch (const assertion_failed& e) {
          break_actor(self, e);
          return;
        }
      }
      arm_timer(self, now);
    },
    [self](passivate_atom) {
      auto& st = self->state;
      if (!st.replies.empty() || st.durable_seq + 1 < st.next_seq) {
        passivated(self, false, 0);
        return;
      }
      passivated(self, true, st.book->earliest_deadline_ms());
      self->quit();
    },
  };
}

}  // namespace holdfast
