#include "actors/sku_directory.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <malloc.h>

#include <algorithm>
#include <functional>

namespace holdfast {
namespace {

using self_ptr = directory_actor::stateful_pointer<directory_state>;
using actor_fn = std::function<void(const sku_actor&)>;

void with_actor(self_ptr self, const std::string& sku, actor_fn f) {
  auto& st = self->state;
  auto it = st.actors.find(sku);
  if (it == st.actors.end()) {
    auto actor = self->spawn(sku_behavior, sku, st.ctx);
    // The attachable lives on the sku actor, so it costs the directory nothing.
    actor->attach_functor([directory = caf::actor_cast<caf::actor>(self),
                           source = actor.address()](const caf::error& reason) {
      caf::anon_send(directory, caf::down_msg{source, reason});
    });
    st.stats.spawns++;
    st.sku_of[actor.id()] = sku;
    directory_state::entry e;
    e.actor = actor;
    it = st.actors.emplace(sku, std::move(e)).first;
  }
  it->second.last_used_ms = st.ctx.clock->now_ms();
  if (it->second.passivating) {
    it->second.deferred.push_back([self, sku, f] { with_actor(self, sku, f); });
    return;
  }
  f(it->second.actor);
}

// Forgets the actor of `sku` and replays what waited for it.
void retire(self_ptr self, const std::string& sku) {
  auto& st = self->state;
  auto it = st.actors.find(sku);
  if (it == st.actors.end()) return;
  st.sku_of.erase(it->second.actor.id());
  auto deferred = std::move(it->second.deferred);
  st.actors.erase(it);
  for (auto& f : deferred) f();
}

void arm_wakeup(self_ptr self) {
  auto& st = self->state;
  if (st.wakeups.empty()) return;
  auto deadline_ms = st.wakeups.front().deadline_ms;
  if (st.wake_armed_ms != 0 && st.wake_armed_ms <= deadline_ms) return;
  auto delay_ms = std::max<int64_t>(1, deadline_ms - st.ctx.clock->now_ms());
  self->delayed_send(self, std::chrono::milliseconds(delay_ms), wake_atom_v);
  st.wake_armed_ms = deadline_ms;
}

void schedule_wakeup(self_ptr self, int64_t deadline_ms, const std::string& sku) {
  auto& st = self->state;
  st.wakeups.push_back({deadline_ms, sku});
  std::push_heap(st.wakeups.begin(), st.wakeups.end(), std::greater<>{});
  arm_wakeup(self);
}

void passivate(self_ptr self, const std::string& sku, directory_state::entry& e) {
  e.passivating = true;
  self->request(e.actor, caf::infinite, passivate_atom_v)
    .then(
      [self, sku](bool quit, int64_t earliest_deadline_ms) {
        auto& st = self->state;
        auto it = st.actors.find(sku);
        if (it == st.actors.end()) return;
        if (quit) {
          st.stats.passivations++;
          retire(self, sku);
          if (earliest_deadline_ms > 0) schedule_wakeup(self, earliest_deadline_ms, sku);
          return;
        }
        it->second.passivating = false;
        auto deferred = std::move(it->second.deferred);
        for (auto& f : deferred) f();
      },
      [self, sku](caf::error&) { retire(self, sku); });
}

// Routes each op to its SKU's actor; results come back in the callers' order.
caf::result<std::vector<hold_result>> dispatch(self_ptr self, std::vector<hold_op>& ops) {
  auto& st = self->state;
  auto results = std::make_shared<std::vector<hold_result>>(ops.size());
  if (ops.size() > st.config.limits.batch_size_max) {
    std::fill(results->begin(), results->end(),
              make_hold_error(code::invalid, "batch larger than " +
                                               std::to_string(st.config.limits.batch_size_max)));
    return *results;
  }
  struct group {
    std::vector<hold_op> ops;
    std::vector<size_t> slots;
  };
  std::unordered_map<std::string, group> groups;
  for (size_t i = 0; i < ops.size(); ++i) {
    auto& op = ops[i];
    if (auto why = validate(op, st.config.limits); !why.empty()) {
      (*results)[i] = make_hold_error(code::invalid, why);
      continue;
    }
    if (op.sku.empty()) {
      auto status = st.ctx.env->lookup_hold_sku(op.hold_id, op.sku);
      if (status != store_status::ok) {
        (*results)[i] = status == store_status::not_found
                          ? make_hold_error(code::unknown_hold)
                          : make_hold_error(code::unavailable, to_string(status));
        continue;
      }
    }
    auto& g = groups[op.sku];
    g.ops.push_back(std::move(op));
    g.slots.push_back(i);
  }
  if (groups.empty()) return *results;
  auto rp = self->make_response_promise<std::vector<hold_result>>();
  auto remaining = std::make_shared<size_t>(groups.size());
  for (auto& [sku, g] : groups) {
    auto slots = std::make_shared<std::vector<size_t>>(std::move(g.slots));
    auto sub = std::make_shared<std::vector<hold_op>>(std::move(g.ops));
    with_actor(self, sku, [self, rp, results, remaining, slots, sub](const sku_actor& a) mutable {
      self->request(a, caf::infinite, hold_ops_atom_v, *sub)
        .then(
          [rp, results, remaining, slots](std::vector<hold_result>& rs) mutable {
            for (size_t j = 0; j < slots->size() && j < rs.size(); ++j)
              (*results)[(*slots)[j]] = std::move(rs[j]);
            if (--*remaining == 0) rp.deliver(std::move(*results));
          },
          [rp, results, remaining, slots](caf::error&) mutable {
            for (auto slot : *slots)
              (*results)[slot] = make_hold_error(code::unavailable, "sku actor failed");
            if (--*remaining == 0) rp.deliver(std::move(*results));
          });
    });
  }
  return rp;
}

}  // namespace

directory_state::~directory_state() {
  for (auto& [sku, e] : actors) caf::anon_send_exit(e.actor, caf::exit_reason::user_shutdown);
}

directory_actor::behavior_type directory_behavior(self_ptr self, sku_context ctx,
                                                  directory_config config) {
  self->state.ctx = std::move(ctx);
  self->state.ctx.timer_horizon_ms = config.idle_ms;
  self->state.config = config;
  // An sku actor that stops (passivated or failed) reports a down message; it retires
  // the actor, so the next message for its SKU spawns a fresh one from LMDB.
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    auto it = st.sku_of.find(msg.source.id());
    if (it != st.sku_of.end()) {
      auto sku = it->second;
      retire(self, sku);
    }
  });
  self->delayed_send(self, std::chrono::milliseconds(config.idle_check_interval_ms),
                     idle_check_atom_v);
  return {
    [self](hold_ops_atom, std::vector<hold_op>& ops) { return dispatch(self, ops); },
    [self](sku_op_atom, sku_op& op) -> caf::result<sku_result> {
      if (auto why = validate(op, self->state.config.limits); !why.empty())
        return make_sku_error(code::invalid, why);
      auto rp = self->make_response_promise<sku_result>();
      with_actor(self, op.sku, [self, rp, op](const sku_actor& a) mutable {
        self->request(a, caf::infinite, sku_op_atom_v, op)
          .then([rp](sku_result& r) mutable { rp.deliver(std::move(r)); },
                [rp](caf::error&) mutable {
                  rp.deliver(make_sku_error(code::unavailable, "sku actor failed"));
                });
      });
      return rp;
    },
    [self](recover_atom) -> caf::result<int64_t> {
      auto& st = self->state;
      auto now = st.ctx.clock->now_ms();
      std::vector<std::string> due;
      auto status = st.ctx.env->scan_skus([&](const sku_record& r) {
        if (r.sku.active_holds == 0) return;
        if (r.earliest_deadline_ms <= now)
          due.push_back(r.sku.sku);
        else
          schedule_wakeup(self, r.earliest_deadline_ms, r.sku.sku);
      });
      if (status != store_status::ok)
        return caf::make_error(caf::sec::runtime_error, to_string(status));
      if (due.empty()) return int64_t{0};
      auto rp = self->make_response_promise<int64_t>();
      auto remaining = std::make_shared<size_t>(due.size());
      auto count = static_cast<int64_t>(due.size());
      for (auto& sku : due) {
        // A query is answered only once the actor's start-up expiry is durable.
        sku_op query{sku_op_kind::query, sku, 0, 0};
        with_actor(self, sku, [self, rp, remaining, count, query](const sku_actor& a) mutable {
          auto done = [rp, remaining, count]() mutable {
            if (--*remaining == 0) rp.deliver(count);
          };
          self->request(a, caf::infinite, sku_op_atom_v, query)
            .then([done](sku_result&) mutable { done(); },
                  [done](caf::error&) mutable { done(); });
        });
      }
      return rp;
    },
    [self](idle_check_atom) {
      auto& st = self->state;
      auto now = st.ctx.clock->now_ms();
      std::vector<std::string> idle;
      for (auto& [sku, e] : st.actors)
        if (!e.passivating && now - e.last_used_ms >= st.config.idle_ms) idle.push_back(sku);
      for (auto& sku : idle) passivate(self, sku, st.actors.at(sku));
      // Passivated actors free their memory; hand it back to the OS once a sweep is
      // over (or every 100k passivations of a long one), so an idle catalog costs what
      // its directory entries cost. malloc_trim walks the heap: not on every check.
      if (st.stats.passivations > st.passivations_at_trim &&
          (idle.empty() || st.stats.passivations > st.passivations_at_trim + 100'000)) {
        st.passivations_at_trim = st.stats.passivations;
        malloc_trim(0);
      }
      self->delayed_send(self, std::chrono::milliseconds(st.config.idle_check_interval_ms),
                         idle_check_atom_v);
    },
    [self](wake_atom) {
      auto& st = self->state;
      st.wake_armed_ms = 0;
      auto now = st.ctx.clock->now_ms();
      while (!st.wakeups.empty() && st.wakeups.front().deadline_ms <= now) {
        std::pop_heap(st.wakeups.begin(), st.wakeups.end(), std::greater<>{});
        auto sku = std::move(st.wakeups.back().sku);
        st.wakeups.pop_back();
        // Spawning is enough: an sku actor ends its overdue holds when it starts.
        with_actor(self, sku, [](const sku_actor&) {});
      }
      if (st.wakeups.capacity() > 2 * st.wakeups.size() + 1024) st.wakeups.shrink_to_fit();
      arm_wakeup(self);
    },
    [self](stats_atom) {
      auto s = self->state.stats;
      s.active_actors = static_cast<int64_t>(self->state.actors.size());
      s.scheduled_wakeups = static_cast<int64_t>(self->state.wakeups.size());
      return s;
    },
  };
}

}  // namespace holdfast
