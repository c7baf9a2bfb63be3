#include "actors/order.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "protocol/codec.hpp"
#include "protocol/storage.capnp.h"

namespace holdfast {

namespace {

std::vector<uint8_t> flags_of(capnp::Data::Reader d) { return std::vector<uint8_t>(d.begin(), d.end()); }
capnp::Data::Reader data_of(const std::vector<uint8_t>& v) { return capnp::Data::Reader(v.data(), v.size()); }

}  // namespace

std::string encode_order(const order_record& r) {
  capnp::MallocMessageBuilder message(static_cast<unsigned>(64 + r.lines.size() * 8));
  auto b = message.initRoot<stored::StoredOrder>();
  b.setOrderId(r.order_id);
  b.setUser(r.user);
  b.setCard(r.card);
  auto lines = b.initLines(static_cast<unsigned>(r.lines.size()));
  for (unsigned i = 0; i < lines.size(); ++i) {
    lines[i].setSku(r.lines[i].sku);
    lines[i].setQty(r.lines[i].qty);
    lines[i].setPriceCents(r.lines[i].price_cents);
  }
  b.setTotalCents(r.total_cents);
  b.setState(static_cast<uint8_t>(r.state));
  b.setPhase(static_cast<uint8_t>(r.phase));
  b.setDone(data_of(r.done));
  b.setReserved(data_of(r.reserved));
  b.setSold(data_of(r.sold));
  b.setIntentId(r.intent_id);
  b.setAuthorized(r.authorized);
  b.setAuthUnsure(r.auth_unsure);
  b.setCaptured(r.captured);
  b.setRefunded(r.refunded);
  b.setReleasedAll(r.released_all);
  b.setLookupPending(r.lookup_pending);
  b.setCancelRequested(r.cancel_requested);
  b.setReason(r.reason);
  b.setLastError(r.last_error);
  b.setAttempt(r.attempt);
  b.setRetryAtMs(r.retry_at_ms);
  b.setExtendedAtMs(r.extended_at_ms);
  b.setCreatedMs(r.created_ms);
  b.setUpdatedMs(r.updated_ms);
  b.setVersion(r.version);
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

bool decode_order(const std::string& order_id, const std::string& value, order_record& out) {
  if (value.empty() || value.size() % sizeof(capnp::word) != 0) return false;
  auto copy = kj::heapArray<capnp::word>(value.size() / sizeof(capnp::word));
  memcpy(copy.begin(), value.data(), value.size());
  try {
    capnp::FlatArrayMessageReader reader(copy);
    auto b = reader.getRoot<stored::StoredOrder>();
    out = order_record{};
    out.order_id = order_id.empty() ? codec::str(b.getOrderId()) : order_id;
    out.user = codec::str(b.getUser());
    out.card = codec::str(b.getCard());
    for (auto l : b.getLines()) out.lines.push_back({codec::str(l.getSku()), l.getQty(), l.getPriceCents()});
    out.total_cents = b.getTotalCents();
    if (b.getState() > static_cast<uint8_t>(order_state::refunded) ||
        b.getPhase() > static_cast<uint8_t>(saga_phase::refund))
      return false;
    out.state = static_cast<order_state>(b.getState());
    out.phase = static_cast<saga_phase>(b.getPhase());
    out.done = flags_of(b.getDone());
    out.reserved = flags_of(b.getReserved());
    out.sold = flags_of(b.getSold());
    if (out.done.size() != out.lines.size() || out.reserved.size() != out.lines.size() ||
        out.sold.size() != out.lines.size())
      return false;
    out.intent_id = codec::str(b.getIntentId());
    out.authorized = b.getAuthorized();
    out.auth_unsure = b.getAuthUnsure();
    out.captured = b.getCaptured();
    out.refunded = b.getRefunded();
    out.released_all = b.getReleasedAll();
    out.lookup_pending = b.getLookupPending();
    out.cancel_requested = b.getCancelRequested();
    out.reason = codec::str(b.getReason());
    out.last_error = codec::str(b.getLastError());
    out.attempt = b.getAttempt();
    out.retry_at_ms = b.getRetryAtMs();
    out.extended_at_ms = b.getExtendedAtMs();
    out.created_ms = b.getCreatedMs();
    out.updated_ms = b.getUpdatedMs();
    out.version = b.getVersion();
    return true;
  } catch (const kj::Exception&) {
    return false;
  }
}

std::string order_event_key(uint64_t seq) {
  char key[17];
  std::snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>(seq));
  return key;
}

uint64_t last_order_event(const storage& env) {
  // Events are numbered without holes from the oldest kept: the largest k with an event
  // at or after it, by doubling and then halving (a few dozen point reads).
  auto any_from = [&](uint64_t k) {
    bool any = false;
    env.scan_records_from(record_space::order_event, order_event_key(k), 1, [&](const entity_record&) { any = true; });
    return any;
  };
  if (!any_from(1)) return 0;
  uint64_t lo = 1, hi = 2;
  while (any_from(hi)) lo = hi, hi *= 2;
  while (hi - lo > 1) {
    auto mid = lo + (hi - lo) / 2;
    (any_from(mid) ? lo : hi) = mid;
  }
  return lo;
}

order_event_page read_order_events(const storage& env, const order_event_log& log, uint64_t from, size_t limit,
                                   int64_t now_ms, int64_t gap_wait_ms) {
  order_event_page page;
  from = std::max<uint64_t>(from, 1);
  page.next = from;
  auto next = log.next.load();
  uint64_t oldest = next > log.retention ? next - log.retention : 1;
  bool stopped = false;
  auto st = env.scan_records_from(record_space::order_event, order_event_key(from), limit, [&](const entity_record& e) {
    if (stopped) return;
    order_event ev;
    ev.seq = std::strtoull(e.key.c_str(), nullptr, 16);
    if (!decode_order({}, e.value, ev.order)) return;
    if (ev.seq != page.next && page.next >= oldest && ev.order.updated_ms > now_ms - gap_wait_ms) {
      stopped = true;  // the write of page.next may still land
      return;
    }
    page.next = ev.seq + 1;
    page.events.push_back(std::move(ev));
  });
  if (st != store_status::ok) page.error = std::string("storage: ") + to_string(st);
  return page;
}

std::string user_order_key(const std::string& user, const std::string& order_id) {
  char len[5];
  std::snprintf(len, sizeof len, "%04zx", user.size());
  return len + user + order_id;
}

namespace {

// Whether an order is in the state a query names: one of order_state's names, "active"
// (its saga still runs) or "" (any).
bool in_state(const order_record& o, const std::string& state) {
  if (state.empty()) return true;
  if (state == "active") return o.phase != saga_phase::done;
  return state == to_string(o.state);
}

}  // namespace

order_page list_orders(const storage& env, const order_list_query& q, size_t scan_max) {
  order_page page;
  size_t limit = q.limit == 0 ? order_list_limit_default : std::min<uint32_t>(q.limit, order_list_limit_max);
  auto space = q.user.empty() ? record_space::order : record_space::user_order;
  auto prefix = q.user.empty() ? std::string() : user_order_key(q.user, {});
  // Strictly after the cursor: its key with a NUL appended is the next possible one.
  auto from = prefix + q.after;
  if (!q.after.empty()) from.push_back('\0');
  size_t read = 0;
  bool end = false;  // nothing follows `last`
  std::string last;
  while (!end && page.orders.size() < limit && read < scan_max) {
    auto chunk = std::min(scan_max - read, std::max<size_t>(limit + 1, 256)) + 1;
    size_t got = 0;
    bool beyond = false;  // a key past the last one read: more follow
    auto st = env.scan_records_from(space, from, chunk, [&](const entity_record& e) {
      ++got;
      if (beyond || end) return;
      if (e.key.compare(0, prefix.size(), prefix) != 0) {
        end = true;  // past the user's keys
        return;
      }
      if (page.orders.size() >= limit || read >= scan_max) {
        beyond = true;
        return;
      }
      ++read;
      last = e.key.substr(prefix.size());
      order_record o;
      if (q.user.empty()) {
        if (!decode_order(e.key, e.value, o)) return;
      } else {
        std::string value;
        if (env.read_record(record_space::order, last, value) != store_status::ok || !decode_order(last, value, o))
          return;
      }
      if (in_state(o, q.state)) page.orders.push_back(std::move(o));
    });
    if (st != store_status::ok) {
      page.error = std::string("storage: ") + to_string(st);
      return page;
    }
    // Keys are never deleted from these spaces: a short chunk is the end.
    if (!beyond && got < chunk) end = true;
    from = prefix + last + '\0';
  }
  // Everything up to `last` was read: the next page goes on after it.
  if (!end && !last.empty()) page.next = last;
  return page;
}

namespace {

using self_ptr = order_actor::stateful_pointer<order_state_t>;

order_result current(self_ptr self) {
  order_result r;
  r.order = self->state.saga->record();
  return r;
}

void step(self_ptr self);
void settle(self_ptr self, bool changed_record);

void write(self_ptr self) {
  auto& st = self->state;
  st.writing = true;
  st.dirty = false;
  write_batch batch;
  batch.epoch = st.epoch;
  batch.seq = st.next_seq++;
  mutation m;
  m.kind = mutation::put_record;
  auto value = encode_order(st.saga->record());
  // An event per transition: a rewrite of the same version (a write asked for while one
  // was in flight, with nothing new) adds none.
  bool transition = st.saga->record().version != st.evented_version;
  st.evented_version = st.saga->record().version;
  if (auto& events = st.ctx.events; events && transition) {
    auto seq = events->next++;
    mutation e;
    e.kind = mutation::put_record;
    e.record = {record_space::order_event, order_event_key(seq), value, false};
    batch.mutations.push_back(std::move(e));
    if (seq > events->retention) {
      mutation old;
      old.kind = mutation::put_record;
      old.record = {record_space::order_event, order_event_key(seq - events->retention), {}, true};
      batch.mutations.push_back(std::move(old));
    }
  }
  if (st.unindexed) {
    mutation u;
    u.kind = mutation::put_record;
    u.record = {record_space::user_order, user_order_key(st.saga->record().user, st.saga->record().order_id), {}, false};
    batch.mutations.push_back(std::move(u));
    st.unindexed = false;
  }
  m.record = {record_space::order, st.saga->record().order_id, std::move(value), false};
  batch.mutations.push_back(std::move(m));
  st.written_seq = batch.seq;
  self->send(st.ctx.store, write_atom_v, caf::actor_cast<store_listener>(self), std::move(batch));
}

// The saga changed: it is written before anything else is sent. Returns the write that
// makes this change durable.
uint64_t changed(self_ptr self) {
  auto& st = self->state;
  if (st.writing) {
    st.dirty = true;
    return st.next_seq;  // the write that follows the one in flight
  }
  write(self);
  return st.written_seq;
}

void arm(self_ptr self, int64_t delay_ms) {
  self->delayed_send(self, std::chrono::milliseconds(std::max<int64_t>(delay_ms, 0)), order_step_atom_v,
                     self->state.token);
}

void crash_point(const order_state_t& st, const char* suffix) {
  if (st.ctx.crash_at.empty() || !st.saga) return;
  if (st.ctx.crash_at != std::string(to_string(st.saga->record().phase)) + suffix) return;
  std::fprintf(stderr, "holdfast node: --crash-at %s: order %s, dying\n", st.ctx.crash_at.c_str(),
               st.saga->record().order_id.c_str());
  std::fflush(stderr);
  std::_Exit(137);
}

void step(self_ptr self) {
  auto& st = self->state;
  if (st.saga && st.saga->terminal() && !st.writing && !st.in_flight) {
    // Finished and written: its actor stops when nothing asked for a while (the record
    // answers from disk after that).
    ++st.token;
    arm(self, st.ctx.idle_ms);
    return;
  }
  if (!st.saga || st.writing || st.in_flight || st.saga->terminal()) return;
  auto now = st.ctx.clock->now_ms();
  if (st.saga->apply_cancel(now)) {
    changed(self);
    return;
  }
  auto cmd = st.saga->next(now);
  st.pending = cmd;
  if (cmd.what == saga_command::kind::holds || cmd.what == saga_command::kind::payment)
    crash_point(st, "");
  auto me = caf::actor_cast<caf::actor>(self);
  switch (cmd.what) {
    case saga_command::kind::none:
      return;
    case saga_command::kind::wait:
      ++st.token;
      arm(self, cmd.wait_until_ms - now);
      return;
    case saga_command::kind::holds: {
      auto token = ++st.token;
      st.in_flight = true;
      auto ops = cmd.holds;
      st.ctx.inventory->holds(std::move(cmd.holds), [me, token, ops](std::vector<hold_result> rs) {
        caf::anon_send(me, order_holds_atom_v, token, ops, std::move(rs));
      });
      arm(self, st.ctx.step_timeout_ms);
      return;
    }
    case saga_command::kind::payment: {
      auto token = ++st.token;
      st.in_flight = true;
      auto request = cmd.payment;
      st.ctx.payments->call(std::move(cmd.payment), [me, token, request](payment_reply r) {
        caf::anon_send(me, order_payment_atom_v, token, request, std::move(r));
      });
      arm(self, st.ctx.step_timeout_ms);
      return;
    }
  }
}

// After the saga learned an answer: a transition is written before anything else is
// sent; a retry alone (the same command again later, with the same ids) is not: it
// needs no record to be safe, and a stuck step must not write, nor add an event, on
// every try. The next transition writes the retry count along.
void settle(self_ptr self, bool changed_record) {
  if (changed_record && self->state.saga->record().version != self->state.evented_version) changed(self);
  else step(self);
}

// A command's answer (or its timeout) arrived: the saga learns it, then the record is
// written or the next command goes out.
template <class Learn>
void learn(self_ptr self, uint64_t token, Learn f) {
  auto& st = self->state;
  if (token != st.token || !st.in_flight) return;  // stale: a timeout or a restart came first
  crash_point(st, ":answered");
  st.in_flight = false;
  ++st.token;  // the timeout of this command is void now
  settle(self, f(st.ctx.clock->now_ms()));
}

void deliver_durable(self_ptr self, uint64_t seq) {
  auto& st = self->state;
  while (!st.waiting.empty() && st.waiting.front().first <= seq) {
    st.waiting.front().second.deliver(current(self));
    st.waiting.pop_front();
  }
}

caf::result<order_result> after_change(self_ptr self, const std::string& refused) {
  if (!refused.empty()) {
    order_result r = current(self);
    r.status = code::wrong_state;
    r.message = refused;
    return r;
  }
  auto seq = changed(self);
  auto promise = self->make_response_promise<order_result>();
  self->state.waiting.emplace_back(seq, promise);
  return promise;
}

std::string load(self_ptr self, const std::string& order_id) {
  auto& st = self->state;
  std::string value;
  auto found = st.ctx.env->read_record(record_space::order, order_id, value);
  if (found == store_status::not_found) return {};
  if (found != store_status::ok) return std::string("storage: ") + to_string(found);
  order_record r;
  if (!decode_order(order_id, value, r)) return "its record cannot be decoded";
  st.evented_version = r.version;
  st.saga = std::make_unique<order_saga>(std::move(r), st.ctx.policy);
  st.exists = true;
  return {};
}

}  // namespace

order_actor::behavior_type order_behavior(self_ptr self, std::string order_id, order_context ctx) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.broken = load(self, order_id);
  // Resume: whatever it was waiting on is asked again (idempotent).
  if (st.exists) self->send(self, order_step_atom_v, st.token);
  return {
    [self, order_id](order_place_atom, order_record& r) -> caf::result<order_result> {
      auto& st = self->state;
      if (!st.broken.empty()) return order_result{code::unavailable, "order '" + order_id + "': " + st.broken, {}};
      if (st.exists) {
        // The same checkout again: the same order (its id comes from the user and key).
        if (!st.writing) return current(self);
        auto promise = self->make_response_promise<order_result>();
        st.waiting.emplace_back(st.dirty ? st.next_seq : st.written_seq, promise);
        return promise;
      }
      st.saga = std::make_unique<order_saga>(std::move(r), st.ctx.policy);
      st.exists = true;
      st.unindexed = true;
      return after_change(self, {});
    },
    [self, order_id](order_op_atom, order_op& op) -> caf::result<order_result> {
      auto& st = self->state;
      if (!st.broken.empty()) return order_result{code::unavailable, "order '" + order_id + "': " + st.broken, {}};
      if (!st.exists) {
        self->quit();  // nothing to keep: an actor per unknown id asked about would pile up
        return order_result{code::unknown_order, "no order '" + order_id + "'", {}};
      }
      if (st.saga->terminal() && !st.writing && !st.in_flight) {
        ++st.token;  // used: the idle period starts again
        arm(self, st.ctx.idle_ms);
      }
      auto now = st.ctx.clock->now_ms();
      switch (op.kind) {
        case order_op_kind::show:
          if (!st.writing) return current(self);
          return after_change(self, {});
        case order_op_kind::cancel: {
          auto refused = st.saga->cancel(now);
          if (refused.empty() && !st.in_flight) st.saga->apply_cancel(now);
          return after_change(self, refused);
        }
        case order_op_kind::ship: return after_change(self, st.saga->ship(now));
        case order_op_kind::deliver: return after_change(self, st.saga->deliver(now));
        case order_op_kind::shipping_failed:
          return after_change(self, st.saga->shipping_failed(op.detail.empty() ? "no reason given" : op.detail, now));
        case order_op_kind::payment_event: {
          // The event settles the step it is the outcome of; a command still in flight
          // for that step answers to a token that is void by then.
          if (!st.saga->on_payment_event(op.intent, now)) {
            if (!st.writing) return current(self);
            return after_change(self, {});
          }
          if (st.in_flight) {
            st.in_flight = false;
            ++st.token;
          }
          return after_change(self, {});
        }
        case order_op_kind::place:
          break;  // the directory turns a place into order_place_atom
      }
      return order_result{code::invalid, "unknown order operation", {}};
    },
    [self](order_step_atom, uint64_t token) {
      auto& st = self->state;
      if (token != st.token) return;
      if (st.saga && st.saga->terminal() && !st.writing && !st.in_flight && st.waiting.empty()) {
        self->quit();
        return;
      }
      if (st.in_flight) {
        // No answer in time: as if it said so.
        st.in_flight = false;
        ++st.token;
        auto now = st.ctx.clock->now_ms();
        auto& cmd = st.pending;
        bool change = false;
        if (cmd.what == saga_command::kind::holds) {
          change = st.saga->on_holds(cmd.holds,
                                     std::vector<hold_result>(cmd.holds.size(), make_hold_error(code::outcome_unknown, "no answer in time")),
                                     now);
        } else if (cmd.what == saga_command::kind::payment) {
          payment_reply unknown;
          unknown.result = payment_reply::outcome::unknown;
          unknown.error = "no answer in time";
          change = st.saga->on_payment(cmd.payment, unknown, now);
        }
        settle(self, change);
        return;
      }
      step(self);
    },
    [self](order_holds_atom, uint64_t token, std::vector<hold_op>& ops, std::vector<hold_result>& rs) {
      learn(self, token, [&](int64_t now) { return self->state.saga->on_holds(ops, rs, now); });
    },
    [self](order_payment_atom, uint64_t token, payment_request& request, payment_reply& reply) {
      learn(self, token, [&](int64_t now) { return self->state.saga->on_payment(request, reply, now); });
    },
    [self](durable_atom, uint64_t seq) {
      auto& st = self->state;
      deliver_durable(self, seq);
      if (seq < st.written_seq) return;
      st.writing = false;
      if (st.dirty) write(self);
      else step(self);
    },
    [self, order_id](write_failed_atom, uint64_t epoch, uint64_t seq, store_status why) {
      auto& st = self->state;
      if (epoch != st.epoch) return;
      ++st.epoch;
      st.writing = st.dirty = false;
      // Memory ran ahead of the failed write: back to the last durable record. Nothing
      // it led to was sent (commands wait for their record), so nothing is lost.
      st.saga.reset();
      st.exists = st.unindexed = false;
      st.broken = load(self, order_id);
      for (auto& [s, promise] : st.waiting)
        promise.deliver(order_result{code_for(why), "the order was not written: " + std::string(to_string(why)), {}});
      st.waiting.clear();
      ++st.token;
      arm(self, 1'000);  // and then carry on from the durable record
    },
  };
}

namespace {

using directory_ptr = order_directory_actor::stateful_pointer<order_directory_state>;

// Empty when the event is believed (signed, within the tolerance) and about this order;
// then op.intent holds its payment intent. Else why not.
std::string verify_payment_event(const order_context& ctx, order_op& op) {
  if (!ctx.verify_payment_event) return "this node takes no payment events";
  auto why = ctx.verify_payment_event(op.webhook_body, op.webhook_signature, ctx.clock->now_ms(), op.intent);
  if (!why.empty()) return "payment event refused: " + why;
  if (op.intent.order_id != op.order_id)
    return "payment event refused: it is about order '" + op.intent.order_id + "', not '" + op.order_id + "'";
  return {};
}

order_actor actor_for(directory_ptr self, const std::string& id) {
  auto& st = self->state;
  auto it = st.orders.find(id);
  if (it != st.orders.end()) return it->second;
  auto a = self->spawn<caf::linked>(order_behavior, id, st.ctx);
  // A finished order's actor stops by itself; its exit is normal and ends only its entry.
  self->monitor(a);
  st.orders.emplace(id, a);
  st.order_of.emplace(a.id(), id);
  return a;
}

// Sends to the order's actor; one that stopped meanwhile (finished and idle, or asked
// about an order that did not exist) is replaced once. Never two actors for one order:
// an entry is dropped only while it is still the stopped actor.
template <class Atom, class Msg>
caf::result<order_result> forward(directory_ptr self, const std::string& id, Atom atom, Msg msg) {
  auto promise = self->make_response_promise<order_result>();
  auto first = actor_for(self, id);
  self->request(first, caf::infinite, atom, msg)
    .then([promise](order_result& r) mutable { promise.deliver(std::move(r)); },
          [self, promise, id, atom, msg, first](caf::error&) mutable {
            auto it = self->state.orders.find(id);
            if (it != self->state.orders.end() && it->second == first) self->state.orders.erase(it);
            self->request(actor_for(self, id), caf::infinite, atom, msg)
              .then([promise](order_result& r) mutable { promise.deliver(std::move(r)); },
                    [promise](caf::error& e) mutable {
                      promise.deliver(order_result{code::outcome_unknown, "the order actor failed: " + caf::to_string(e), {}});
                    });
          });
  return promise;
}

}  // namespace

order_directory_actor::behavior_type order_directory_behavior(directory_ptr self, order_context ctx) {
  self->state.ctx = std::move(ctx);
  // Found by the checkout benchmark: a scan of every entry per down message made each
  // finished order cost O(orders) (11% of a node's CPU at 1,400 checkouts/s).
  self->set_down_handler([self](caf::down_msg& m) {
    auto& st = self->state;
    auto by_actor = st.order_of.find(m.source.id());
    if (by_actor == st.order_of.end()) return;
    auto it = st.orders.find(by_actor->second);
    // Only while the entry is still that actor (a replacement may have taken it).
    if (it != st.orders.end() && it->second.id() == m.source.id()) st.orders.erase(it);
    st.order_of.erase(by_actor);
  });
  // Linked children that end normally do not take the directory with them.
  self->set_exit_handler([self](caf::exit_msg& m) {
    if (m.reason) self->quit(m.reason);
  });
  return {
    [self](order_place_atom, order_record& r) -> caf::result<order_result> {
      if (r.order_id.empty()) return order_result{code::invalid, "an order needs an id", {}};
      auto id = r.order_id;
      return forward(self, id, order_place_atom_v, std::move(r));
    },
    [self](order_op_atom, order_op& op) -> caf::result<order_result> {
      if (op.order_id.empty()) return order_result{code::invalid, "an order id is required", {}};
      auto id = op.order_id;
      if (op.kind == order_op_kind::place)
        return forward(self, id, order_place_atom_v,
                       order_saga::place(op.order_id, op.user, op.card, op.lines, self->state.ctx.clock->now_ms()));
      if (op.kind == order_op_kind::payment_event) {
        auto why = verify_payment_event(self->state.ctx, op);
        if (!why.empty()) return order_result{code::invalid, why, {}};
      }
      return forward(self, id, order_op_atom_v, std::move(op));
    },
    [self](order_ops_atom, std::vector<order_op>& ops) -> caf::result<std::vector<order_result>> {
      if (ops.empty()) return std::vector<order_result>{};
      auto promise = self->make_response_promise<std::vector<order_result>>();
      auto results = std::make_shared<std::vector<order_result>>(ops.size());
      auto remaining = std::make_shared<size_t>(ops.size());
      for (size_t i = 0; i < ops.size(); ++i) {
        auto done = [results, remaining, promise, i](order_result r) mutable {
          (*results)[i] = std::move(r);
          if (--*remaining == 0) promise.deliver(std::move(*results));
        };
        self->request(caf::actor_cast<order_directory_actor>(self), caf::infinite, order_op_atom_v, std::move(ops[i]))
          .then([done](order_result& r) mutable { done(std::move(r)); },
                [done](caf::error& e) mutable {
                  done(order_result{code::outcome_unknown, "the order actor failed: " + caf::to_string(e), {}});
                });
      }
      return promise;
    },
    [self](recover_atom) -> int64_t {
      int64_t resumed = 0;
      auto st = self->state.ctx.env->scan_records(record_space::order, [&](const entity_record& e) {
        order_record r;
        if (decode_order(e.key, e.value, r) && r.phase == saga_phase::done) return;
        actor_for(self, e.key);  // loads and resumes itself (or reports what it cannot read)
        ++resumed;
      });
      return st == store_status::ok ? resumed : -1;
    },
    [self](stats_atom) { return static_cast<int64_t>(self->state.orders.size()); },
  };
}

}  // namespace holdfast
