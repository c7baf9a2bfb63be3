#include "actors/cart.hpp"

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>

#include <algorithm>

namespace holdfast {

cart_book::cart_book(std::string user) { cart_.user = std::move(user); }

std::string cart_book::load(const storage& env) {
  auto user = std::move(cart_.user);
  cart_ = cart_info{};
  cart_.user = std::move(user);
  std::string value;
  auto st = env.read_record(record_space::cart, cart_.user, value);
  if (st == store_status::not_found) return {};
  if (st != store_status::ok) return std::string("storage: ") + to_string(st);
  if (!decode_cart(value, cart_)) return "its record cannot be decoded";
  return {};
}

cart_result cart_book::apply(const cart_op& op, int64_t now_ms, bool& changed) {
  changed = false;
  auto& lines = cart_.lines;
  auto it = std::find_if(lines.begin(), lines.end(), [&](const cart_line& l) { return l.sku == op.sku; });
  auto full = [&] {
    return make_cart_error(code::invalid, "the cart of user '" + cart_.user + "' has " +
                                            std::to_string(lines.size()) +
                                            " lines, the most a cart holds");
  };
  switch (op.kind) {
    case cart_op_kind::view:
      break;
    case cart_op_kind::add:
      if (it == lines.end()) {
        if (lines.size() >= cart_lines_max) return full();
        lines.push_back({op.sku, op.qty, op.price_cents});
      } else {
        if (it->qty > on_hand_max - op.qty)
          return make_cart_error(code::invalid, "the line of sku '" + op.sku + "' would pass " +
                                                  std::to_string(on_hand_max) + " units");
        it->qty += op.qty;
        it->price_cents = op.price_cents;  // the user saw this price now
      }
      changed = true;
      break;
    case cart_op_kind::set:
      if (op.qty > 0) {
        if (it == lines.end()) {
          if (lines.size() >= cart_lines_max) return full();
          lines.push_back({op.sku, op.qty, op.price_cents});
          changed = true;
        } else if (it->qty != op.qty || it->price_cents != op.price_cents) {
          it->qty = op.qty;
          it->price_cents = op.price_cents;
          changed = true;
        }
        break;
      }
      [[fallthrough]];
    case cart_op_kind::remove:
      if (it != lines.end()) {
        lines.erase(it);
        changed = true;
      }
      break;
    case cart_op_kind::clear:
      changed = !lines.empty();
      lines.clear();
      break;
    case cart_op_kind::take:
      // A checkout takes the lines it read, once: the same order again gets the same
      // lines; a cart changed since it was read is not taken.
      if (cart_.taken_by == op.order_id) break;
      if (op.version != cart_.version)
        return make_cart_error(code::wrong_state, "the cart of user '" + cart_.user + "' changed (version " +
                                                    std::to_string(cart_.version) + ", read at " +
                                                    std::to_string(op.version) + ")");
      if (lines.empty()) return make_cart_error(code::wrong_state, "the cart of user '" + cart_.user + "' is empty");
      cart_.taken_by = op.order_id;
      cart_.taken = std::move(lines);
      lines.clear();
      changed = true;
      break;
  }
  if (changed) {
    cart_.version += 1;
    cart_.updated_ms = now_ms;
  }
  cart_result r;
  r.cart = cart_;
  return r;
}

entity_record cart_book::record() const {
  return entity_record{record_space::cart, cart_.user, encode_cart(cart_), false};
}

namespace {

using cart_ptr = cart_actor::stateful_pointer<cart_state>;

void deliver_durable(cart_ptr self, uint64_t seq) {
  auto& st = self->state;
  while (!st.replies.empty() && st.replies.front().seq <= seq) {
    st.replies.front().promise.deliver(std::move(st.replies.front().answer));
    st.replies.pop_front();
  }
}

}  // namespace

cart_actor::behavior_type cart_behavior(cart_ptr self, std::string user, cart_context ctx) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.book = std::make_unique<cart_book>(user);
  st.broken = st.book->load(*st.ctx.env);
  return {
    [self](cart_op_atom, cart_op& op) -> caf::result<cart_result> {
      auto& st = self->state;
      if (!st.broken.empty())
        return make_cart_error(code::unavailable,
                               "the cart of user '" + st.book->cart().user + "' cannot be read: " + st.broken);
      bool changed = false;
      auto answer = st.book->apply(op, st.ctx.clock->now_ms(), changed);
      if (!changed && st.replies.empty()) return answer;
      auto promise = self->make_response_promise<cart_result>();
      if (!changed) {
        st.replies.push_back({st.next_seq - 1, promise, std::move(answer), true});
        return promise;
      }
      write_batch batch;
      batch.epoch = st.epoch;
      batch.seq = st.next_seq++;
      mutation m;
      m.kind = mutation::put_record;
      m.record = st.book->record();
      batch.mutations.push_back(std::move(m));
      st.replies.push_back({batch.seq, promise, std::move(answer), false});
      self->send(st.ctx.store, write_atom_v, caf::actor_cast<store_listener>(self), std::move(batch));
      return promise;
    },
    [self](durable_atom, uint64_t seq) { deliver_durable(self, seq); },
    [self](write_failed_atom, uint64_t epoch, uint64_t seq, store_status why) {
      auto& st = self->state;
      if (epoch != st.epoch) return;
      ++st.epoch;
      // Memory ran ahead of the failed write: back to what is durable.
      st.broken = st.book->load(*st.ctx.env);
      deliver_durable(self, seq - 1);
      for (auto& r : st.replies) {
        if (r.view && st.broken.empty()) {
          cart_result now;
          now.cart = st.book->cart();
          r.promise.deliver(std::move(now));
        } else {
          r.promise.deliver(make_cart_error(code_for(why), "the cart was not written: " +
                                                             std::string(to_string(why))));
        }
      }
      st.replies.clear();
    },
  };
}

namespace {

using directory_ptr = cart_directory_actor::stateful_pointer<cart_directory_state>;

void arm_sweep(directory_ptr self) {
  auto& st = self->state;
  if (st.sweep_armed || st.carts.empty()) return;
  st.sweep_armed = true;
  self->delayed_send(self, std::chrono::milliseconds(std::max<int64_t>(st.ctx.idle_ms / 2, 1)),
                     idle_check_atom_v);
}

}  // namespace

cart_directory_actor::behavior_type cart_directory_behavior(directory_ptr self, cart_context ctx) {
  self->state.ctx = std::move(ctx);
  return {
    [self](cart_ops_atom, std::vector<cart_op>& ops) -> caf::result<std::vector<cart_result>> {
      auto& st = self->state;
      if (ops.empty()) return std::vector<cart_result>{};
      auto promise = self->make_response_promise<std::vector<cart_result>>();
      auto results = std::make_shared<std::vector<cart_result>>(ops.size());
      auto remaining = std::make_shared<size_t>(ops.size());
      auto now = st.ctx.clock->now_ms();
      for (size_t i = 0; i < ops.size(); ++i) {
        auto user = ops[i].user;
        auto& e = st.carts[user];
        if (!e.actor) e.actor = self->spawn<caf::linked>(cart_behavior, user, st.ctx);
        e.last_used_ms = now;
        e.inflight += 1;
        auto done = [self, results, remaining, promise, i, user](cart_result r) mutable {
          (*results)[i] = std::move(r);
          if (auto it = self->state.carts.find(user); it != self->state.carts.end()) {
            it->second.inflight -= 1;
            it->second.last_used_ms = self->state.ctx.clock->now_ms();
          }
          if (--*remaining == 0) promise.deliver(std::move(*results));
        };
        self->request(e.actor, caf::infinite, cart_op_atom_v, std::move(ops[i]))
          .then([done](cart_result& r) mutable { done(std::move(r)); },
                [done](caf::error& err) mutable {
                  done(make_cart_error(code::outcome_unknown, "the cart actor failed: " + caf::to_string(err)));
                });
      }
      arm_sweep(self);
      return promise;
    },
    [self](idle_check_atom) {
      auto& st = self->state;
      st.sweep_armed = false;
      auto now = st.ctx.clock->now_ms();
      // Nothing in flight: every change it made was answered, so it is durable.
      for (auto it = st.carts.begin(); it != st.carts.end();) {
        if (it->second.inflight == 0 && now - it->second.last_used_ms >= st.ctx.idle_ms) {
          self->unlink_from(it->second.actor);
          self->send_exit(it->second.actor, caf::exit_reason::user_shutdown);
          it = st.carts.erase(it);
        } else {
          ++it;
        }
      }
      arm_sweep(self);
    },
    [self](stats_atom) { return static_cast<int64_t>(self->state.carts.size()); },
  };
}

}  // namespace holdfast
