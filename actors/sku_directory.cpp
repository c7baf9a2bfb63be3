#include "actors/sku_directory.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <malloc.h>

#include <algorithm>
#include <functional>

#include "protocol/log.hpp"

namespace holdfast {
namespace {

using self_ptr = directory_actor::stateful_pointer<directory_state>;
using actor_fn = std::function<void(const sku_actor&)>;
// Answers the caller when no actor takes the operation: unknown SKU, or too busy.
using refuse_fn = std::function<void(code, const std::string&)>;

// Runs `f` with the SKU's actor, spawning one when the SKU has a record (or when
// `may_create`); otherwise `refuse` answers. Nothing is spawned for names that do
// not exist.
void with_actor(self_ptr self, const std::string& sku, bool may_create, actor_fn f,
                refuse_fn refuse) {
  auto& st = self->state;
  auto it = st.actors.find(sku);
  if (it == st.actors.end()) {
    // The record is read here once, to decide, and handed to the actor's load. One that
    // fails its checksum is left for the actor to read and report (it answers why).
    std::shared_ptr<sku_record> known;
    if (!may_create) {
      known = std::make_shared<sku_record>();
      auto status = st.ctx.env->read_sku(sku, *known);
      if (status == store_status::corrupt) {
        known.reset();
      } else if (status != store_status::ok) {
        refuse(status == store_status::not_found ? code::unknown_sku : code::unavailable,
               status == store_status::not_found ? std::string() : to_string(status));
        return;
      }
    }
    auto actor = self->spawn(sku_behavior, sku, st.ctx, std::shared_ptr<const sku_record>(std::move(known)));
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
    if (it->second.deferred.size() >= st.config.deferred_max) {
      refuse(code::unavailable, "sku '" + sku + "' has too many operations waiting");
      return;
    }
    it->second.deferred.push_back(
      [self, sku, may_create, f, refuse] { with_actor(self, sku, may_create, f, refuse); });
    return;
  }
  f(it->second.actor);
}

// Forgets the actor of `sku` and replays what waited for it. (What it never answered is
// answered by the sinks its dropped messages carried.)
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

// Asks the actor to quit; it answers with passivated_atom (an actor that dies first is
// retired by its down message).
void passivate(self_ptr self, directory_state::entry& e) {
  e.passivating = true;
  self->send(e.actor, passivate_atom_v);
}

void passivated(self_ptr self, const std::string& sku, bool quit, int64_t earliest_deadline_ms) {
  auto& st = self->state;
  auto it = st.actors.find(sku);
  if (it == st.actors.end() || !it->second.passivating) return;
  if (quit) {
    st.stats.passivations++;
    retire(self, sku);
    if (earliest_deadline_ms > 0) schedule_wakeup(self, earliest_deadline_ms, sku);
    return;
  }
  it->second.passivating = false;
  auto deferred = std::move(it->second.deferred);
  for (auto& f : deferred) f();
}

// Batch create: SKUs with an actor (they exist) take their op as usual; names with a
// record answer sku_exists; the rest are written as the directory's own batches.
caf::result<std::vector<sku_result>> create_batch(self_ptr self, std::vector<sku_op>& ops) {
  auto& st = self->state;
  struct gather {
    caf::typed_response_promise<std::vector<sku_result>> rp;
    std::vector<sku_result> results;
    size_t open;
    void done() {
      if (--open == 0) rp.deliver(std::move(results));
    }
  };
  auto g = std::make_shared<gather>();
  g->rp = self->make_response_promise<std::vector<sku_result>>();
  g->results.resize(ops.size());
  g->open = ops.size() + 1;
  auto view = st.ctx.env->read();
  for (size_t i = 0; i < ops.size(); ++i) {
    auto& op = ops[i];
    auto answer = [g, i](sku_result r) {
      g->results[i] = std::move(r);
      g->done();
    };
    if (op.kind != sku_op_kind::create) {
      answer(make_sku_error(code::invalid, "a batch create holds creates only"));
      continue;
    }
    if (auto why = validate(op, st.config.limits); !why.empty()) {
      answer(make_sku_error(code::invalid, why));
      continue;
    }
    if (st.creating.count(op.sku)) {
      answer(make_sku_error(code::unavailable, "sku '" + op.sku + "' is being created; retry"));
      continue;
    }
    if (st.actors.count(op.sku)) {
      with_actor(
        self, op.sku, true,
        [self, op, answer](const sku_actor& a) {
          self->request(a, caf::infinite, sku_op_atom_v, op)
            .then([answer](sku_result& r) { answer(std::move(r)); },
                  [answer](caf::error&) {
                    answer(make_sku_error(code::unavailable, "sku actor failed"));
                  });
        },
        [answer](code c, const std::string& why) { answer(make_sku_error(c, why)); });
      continue;
    }
    auto exists = view->has_sku(op.sku);
    if (exists == store_status::ok) {
      sku_record r;
      if (auto read = st.ctx.env->read_sku(op.sku, r); read != store_status::ok) {
        answer(make_sku_error(code::unavailable, to_string(read)));
        continue;
      }
      sku_result out;
      out.status = code::sku_exists;
      out.sku = r.sku;
      answer(std::move(out));
      continue;
    }
    if (exists != store_status::not_found) {
      answer(make_sku_error(code::unavailable, to_string(exists)));
      continue;
    }
    sku_record rec;
    rec.sku.sku = op.sku;
    rec.sku.on_hand = rec.sku.stocked = op.amount;
    rec.sku.price_cents = op.price_cents;
    rec.sku.title = op.title;
    rec.sku.limit_per_user = op.limit_per_user;
    write_batch batch;
    batch.tenure = st.ctx.tenure;
    batch.epoch = st.create_epoch;
    batch.seq = ++st.create_seq;
    batch.mutations.push_back(mutation{mutation::put_sku, rec, {}, {}});
    st.creating.insert(op.sku);
    st.creates[batch.seq] = {op.sku, [answer, info = rec.sku](const store_status* why) {
                               if (!why) {
                                 sku_result out;
                                 out.sku = info;
                                 answer(std::move(out));
                               } else {
                                 answer(make_sku_error(*why == store_status::map_full ||
                                                           *why == store_status::disk_full
                                                         ? code::storage_full
                                                         : *why == store_status::outcome_unknown
                                                         ? code::outcome_unknown
                                                         : code::unavailable,
                                                       to_string(*why)));
                               }
                             }};
    self->send(st.ctx.store, write_atom_v,
               caf::actor_cast<store_listener>(self), std::move(batch));
  }
  g->done();
  return g->rp;
}

using hold_done = std::function<void(hold_result)>;
void route_one(self_ptr self, hold_op op, int attempt, hold_done done);

// A reserve refused because another SKU holds its id: answer with that hold as its owner
// reports it. If the owner no longer has it (its reserve was refused after claiming the
// id), the reserve is tried again, a few times at most.
void resolve_conflict(self_ptr self, hold_op op, hold_result conflict, int attempt,
                      hold_done done) {
  hold_op query{hold_op_kind::query, conflict.hold.sku, op.hold_id, 0, 0, {}};
  auto owner = query.sku;
  with_actor(
    self, owner, false,
    [self, op, conflict, attempt, done, query](const sku_actor& a) {
      self->request(a, caf::infinite, hold_ops_atom_v, std::vector<hold_op>{query})
        .then(
          [self, op, conflict, attempt, done](std::vector<hold_result>& rs) {
            if (!rs.empty() && rs[0].status == code::ok) {
              auto r = conflict;
              r.hold = rs[0].hold;
              done(std::move(r));
            } else if (attempt < 3) {
              route_one(self, op, attempt + 1, done);
            } else {
              done(conflict);
            }
          },
          [conflict, done](caf::error&) { done(conflict); });
    },
    [conflict, done](code, const std::string&) { done(conflict); });
}

void route_one(self_ptr self, hold_op op, int attempt, hold_done done) {
  auto sku = op.sku;
  with_actor(
    self, sku, false,
    [self, op, attempt, done](const sku_actor& a) {
      self->request(a, caf::infinite, hold_ops_atom_v, std::vector<hold_op>{op})
        .then(
          [self, op, attempt, done](std::vector<hold_result>& rs) {
            auto r = rs.empty() ? make_hold_error(code::unavailable, "no answer") : rs[0];
            if (needs_owner(op, r)) resolve_conflict(self, op, std::move(r), attempt, done);
            else done(std::move(r));
          },
          [done](caf::error&) { done(make_hold_error(code::unavailable, "sku actor failed")); });
    },
    [done](code c, const std::string& why) { done(make_hold_error(c, why)); });
}

// One SKU's share of a batch to its actor, which answers `sink` itself once durable.
void send_group(self_ptr self, const std::string& sku, std::vector<hold_op> ops, hold_sink_ptr sink) {
  auto n = ops.size();
  auto sub = std::make_shared<std::vector<hold_op>>(std::move(ops));
  with_actor(
    self, sku, false, [self, sub, sink](const sku_actor& a) { self->send(a, hold_ops_atom_v, std::move(*sub), sink); },
    [sink, n](code c, const std::string& why) { sink->deliver(std::vector<hold_result>(n, make_hold_error(c, why))); });
}

// Routes each op to its SKU's actor; `sink` hears every answer, in the callers' order.
// A batch for one SKU (the hot path) hands its sink to that actor whole; a mixed one is
// gathered from a part per SKU. The answers never pass through here again, except the
// rare conflict that needs another SKU's hold (conflicts_atom).
void dispatch(self_ptr self, std::vector<hold_op>& ops, hold_sink_ptr sink) {
  auto& st = self->state;
  if (ops.size() > st.config.limits.batch_size_max) {
    sink->deliver(std::vector<hold_result>(
      ops.size(),
      make_hold_error(code::invalid, "batch larger than " + std::to_string(st.config.limits.batch_size_max))));
    return;
  }
  std::vector<hold_result> results(ops.size());
  struct group {
    std::vector<hold_op> ops;
    std::vector<size_t> slots;
  };
  std::unordered_map<std::string, group> groups;
  std::unique_ptr<storage::read_view> view;
  size_t routed = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    auto& op = ops[i];
    if (auto why = validate(op, st.config.limits); !why.empty()) {
      results[i] = make_hold_error(code::invalid, why);
      continue;
    }
    if (op.sku.empty()) {
      if (!view) view = st.ctx.env->read();
      auto status = view->lookup_hold_sku(op.hold_id, op.sku);
      if (status != store_status::ok) {
        results[i] = status == store_status::not_found ? make_hold_error(code::unknown_hold)
                                                       : make_hold_error(code::unavailable, to_string(status));
        continue;
      }
    }
    auto& g = groups[op.sku];
    g.ops.push_back(std::move(op));
    g.slots.push_back(i);
    ++routed;
  }
  if (groups.empty()) {
    sink->deliver(std::move(results));
    return;
  }
  if (groups.size() == 1 && routed == ops.size()) {
    auto& [sku, g] = *groups.begin();
    send_group(self, sku, std::move(g.ops), std::move(sink));
    return;
  }
  auto gather = std::make_shared<hold_gather>(std::move(sink), std::move(results), groups.size());
  for (auto& [sku, g] : groups) send_group(self, sku, std::move(g.ops), hold_gather::part(gather, std::move(g.slots)));
}

// An SKU actor's answers of which some are conflicts with a hold on another SKU: each is
// answered with that hold as its owner reports it, then the sink hears them all.
void resolve_conflicts(self_ptr self, std::vector<hold_op>& ops, std::vector<hold_result>& rs, hold_sink_ptr sink) {
  auto results = std::make_shared<std::vector<hold_result>>(std::move(rs));
  auto remaining = std::make_shared<size_t>(1);
  auto finish_one = [results, remaining, sink] {
    if (--*remaining == 0) sink->deliver(std::move(*results));
  };
  for (size_t j = 0; j < ops.size() && j < results->size(); ++j) {
    if (!needs_owner(ops[j], (*results)[j])) continue;
    ++*remaining;
    resolve_conflict(self, ops[j], (*results)[j], 1, [results, j, finish_one](hold_result r) {
      (*results)[j] = std::move(r);
      finish_one();
    });
  }
  finish_one();
}

// The wall clock went back: deadlines of passivated SKUs move back with it, so their
// actors wake (and cut their holds to now + ttl) when they would have.
void notice_clock(self_ptr self, int64_t now_ms) {
  auto& st = self->state;
  if (now_ms + st.config.clock_step_tolerance_ms < st.last_now_ms) {
    auto step = st.last_now_ms - now_ms;
    for (auto& w : st.wakeups) w.deadline_ms -= step;
    st.wake_armed_ms = 0;
    st.last_now_ms = now_ms;
    arm_wakeup(self);
  }
  st.last_now_ms = std::max(st.last_now_ms, now_ms);
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
  // the actor, so the next message for its SKU spawns a fresh one from storage.
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
    [self](hold_ops_atom, std::vector<hold_op>& ops, hold_sink_ptr& sink) { dispatch(self, ops, std::move(sink)); },
    [self](hold_ops_atom, std::vector<hold_op>& ops) -> caf::result<std::vector<hold_result>> {
      // A request (tests, in-process callers): the answers come back here as a message
      // and answer the request, so the promise is only ever touched by its own actor.
      auto& st = self->state;
      auto token = ++st.next_token;
      auto rp = self->make_response_promise<std::vector<hold_result>>();
      st.requests.emplace(token, rp);
      auto me = caf::actor_cast<caf::actor>(self);
      dispatch(self, ops, make_hold_sink(ops.size(), [me, token](std::vector<hold_result> rs) {
                 caf::anon_send(me, routed_results_atom_v, token, std::move(rs));
               }));
      return rp;
    },
    [self](conflicts_atom, std::vector<hold_op>& ops, std::vector<hold_result>& rs, hold_sink_ptr& sink) {
      resolve_conflicts(self, ops, rs, std::move(sink));
    },
    [self](sku_op_atom, sku_op& op) -> caf::result<sku_result> {
      if (auto why = validate(op, self->state.config.limits); !why.empty())
        return make_sku_error(code::invalid, why);
      if (self->state.creating.count(op.sku))
        return make_sku_error(code::unavailable, "sku '" + op.sku + "' is being created; retry");
      auto rp = self->make_response_promise<sku_result>();
      with_actor(
        self, op.sku, op.kind == sku_op_kind::create,
        [self, rp, op](const sku_actor& a) mutable {
          self->request(a, caf::infinite, sku_op_atom_v, op)
            .then([rp](sku_result& r) mutable { rp.deliver(std::move(r)); },
                  [rp](caf::error&) mutable {
                    rp.deliver(make_sku_error(code::unavailable, "sku actor failed"));
                  });
        },
        [rp](code c, const std::string& why) mutable { rp.deliver(make_sku_error(c, why)); });
      return rp;
    },
    [self](create_batch_atom, std::vector<sku_op>& ops) -> caf::result<std::vector<sku_result>> {
      return create_batch(self, ops);
    },
    [self](passivated_atom, std::string& sku, bool quit, int64_t earliest_deadline_ms) {
      passivated(self, sku, quit, earliest_deadline_ms);
    },
    [self](routed_results_atom, uint64_t token, std::vector<hold_result>& rs) {
      auto& st = self->state;
      auto it = st.requests.find(token);
      if (it == st.requests.end()) return;
      auto rp = std::move(it->second);
      st.requests.erase(it);
      rp.deliver(std::move(rs));
    },
    [self](durable_atom, uint64_t seq) {
      auto& st = self->state;
      while (!st.creates.empty() && st.creates.begin()->first <= seq) {
        auto p = std::move(st.creates.begin()->second);
        st.creates.erase(st.creates.begin());
        st.creating.erase(p.sku);
        p.answer(nullptr);
      }
    },
    [self](write_failed_atom, uint64_t epoch, uint64_t seq, store_status why) {
      auto& st = self->state;
      if (epoch != st.create_epoch) return;
      // This batch and every later one of the epoch failed; the next writes start a
      // new epoch (the store refuses the rest of this one).
      st.create_epoch++;
      for (auto it = st.creates.lower_bound(seq); it != st.creates.end();) {
        st.creating.erase(it->second.sku);
        it->second.answer(&why);
        it = st.creates.erase(it);
      }
    },
    [self](recover_atom) -> caf::result<int64_t> {
      auto& st = self->state;
      auto now = st.ctx.clock->now_ms();
      st.last_now_ms = now;
      // Set back while the node was down (below the clock it last recorded): stored
      // deadlines are ahead by the step. Every SKU with holds is loaded now, and cuts its
      // deadlines to now + ttl before anything is served. Otherwise SKUs wake at their
      // earliest deadline as usual.
      auto high_water = st.ctx.env->clock_high_water_at_open_ms();
      bool set_back = now + st.config.clock_step_tolerance_ms < high_water;
      if (set_back)
        spdlog::warn("the wall clock is {} ms behind the latest time this node recorded: "
                     "every SKU with holds is loaded to cut their deadlines to now + ttl",
                     high_water - now);
      std::vector<std::string> due;
      std::string problem;
      // Every SKU record has been checked (checksum, invariants) before anything is
      // served: the snapshot's by the storage's open, the log's here.
      auto status = st.ctx.env->scan_skus_with_holds(
        [&](const std::string& sku, int64_t earliest_deadline_ms) {
          if (set_back || earliest_deadline_ms <= now)
            due.push_back(sku);
          else
            st.wakeups.push_back({earliest_deadline_ms, sku});
        },
        problem);
      if (status != store_status::ok)
        return caf::make_error(caf::sec::runtime_error,
                               problem.empty() ? std::string(to_string(status)) : problem);
      // One heap of every later wake-up (a push per SKU was a tenth of a restart with a
      // million holds outstanding).
      std::make_heap(st.wakeups.begin(), st.wakeups.end(), std::greater<>{});
      arm_wakeup(self);
      if (due.empty()) return int64_t{0};
      auto rp = self->make_response_promise<int64_t>();
      auto remaining = std::make_shared<size_t>(due.size());
      auto count = static_cast<int64_t>(due.size());
      for (auto& sku : due) {
        // A query is answered only once the actor's start-up expiry is durable.
        sku_op query{sku_op_kind::query, sku, 0, 0, {}};
        auto done = [rp, remaining, count]() mutable {
          if (--*remaining == 0) rp.deliver(count);
        };
        with_actor(
          self, sku, false,
          [self, done, query](const sku_actor& a) mutable {
            self->request(a, caf::infinite, sku_op_atom_v, query)
              .then([done](sku_result&) mutable { done(); },
                    [done](caf::error&) mutable { done(); });
          },
          [done](code, const std::string&) mutable { done(); });
      }
      return rp;
    },
    [self](idle_check_atom) {
      auto& st = self->state;
      auto now = st.ctx.clock->now_ms();
      notice_clock(self, now);
      std::vector<std::string> idle;
      for (auto& [sku, e] : st.actors)
        if (!e.passivating && now - e.last_used_ms >= st.config.idle_ms) idle.push_back(sku);
      for (auto& sku : idle) passivate(self, st.actors.at(sku));
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
      notice_clock(self, now);
      while (!st.wakeups.empty() && st.wakeups.front().deadline_ms <= now) {
        std::pop_heap(st.wakeups.begin(), st.wakeups.end(), std::greater<>{});
        auto sku = std::move(st.wakeups.back().sku);
        st.wakeups.pop_back();
        // Spawning is enough: an sku actor ends its overdue holds when it starts.
        with_actor(
          self, sku, false, [](const sku_actor&) {}, [](code, const std::string&) {});
      }
      if (st.wakeups.capacity() > 2 * st.wakeups.size() + 1024) st.wakeups.shrink_to_fit();
      arm_wakeup(self);
    },
    [self](list_skus_atom, const sku_list_query& query) {
      sku_page page;
      std::string problem;
      auto st = self->state.ctx.env->list_skus(query, page, problem);
      if (st != store_status::ok) {
        page = sku_page{};
        page.partial = "the catalog cannot be read: " + std::string(to_string(st)) +
                       (problem.empty() ? "" : " (" + problem + ")");
      }
      return page;
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
