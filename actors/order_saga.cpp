#include "actors/order_saga.hpp"

#include <algorithm>
#include <functional>

namespace holdfast {

namespace {

bool forward(saga_phase p) { return p < saga_phase::done; }

// No answer: the call may or may not have happened; ask again with the same ids.
bool unanswered(code c) {
  return c == code::unavailable || c == code::outcome_unknown || c == code::storage_full;
}

}  // namespace

order_saga::order_saga(order_record record, saga_policy policy) : r_(std::move(record)), policy_(policy) {
  auto n = r_.lines.size();
  r_.done.resize(n);
  r_.reserved.resize(n);
  r_.sold.resize(n);
}

order_record order_saga::place(std::string order_id, std::string user, std::string card,
                               std::vector<order_line> lines, int64_t now_ms) {
  order_record r;
  r.order_id = std::move(order_id);
  r.user = std::move(user);
  r.card = std::move(card);
  r.lines = std::move(lines);
  bool overflow = false;
  for (auto& l : r.lines) {
    int64_t line = 0;
    overflow = overflow || __builtin_mul_overflow(l.qty, l.price_cents, &line) ||
               __builtin_add_overflow(r.total_cents, line, &r.total_cents);
  }
  r.done.assign(r.lines.size(), 0);
  r.reserved.assign(r.lines.size(), 0);
  r.sold.assign(r.lines.size(), 0);
  r.created_ms = r.updated_ms = now_ms;
  r.version = 1;
  if (r.lines.empty() || overflow) {  // nothing to buy, or no total to charge: ends at once
    r.state = order_state::cancelled;
    r.phase = saga_phase::done;
    r.reason = overflow ? "the order's total overflows" : "an order needs at least one line";
    r.total_cents = 0;
  }
  return r;
}

bool order_saga::terminal() const { return r_.phase == saga_phase::done; }

std::string order_saga::payment_key(saga_phase step) const {
  return r_.order_id + "-" + to_string(step);
}

saga_command order_saga::next(int64_t now_ms) const {
  saga_command c;
  if (terminal()) return c;
  if (r_.retry_at_ms > now_ms) {
    c.what = saga_command::kind::wait;
    c.wait_until_ms = r_.retry_at_ms;
    return c;
  }
  auto holds = [&](hold_op_kind kind, const std::function<bool(size_t)>& wanted) {
    c.what = saga_command::kind::holds;
    for (size_t i = 0; i < r_.lines.size(); ++i) {
      if (!wanted(i)) continue;
      hold_op op;
      op.kind = kind;
      op.sku = r_.lines[i].sku;
      op.hold_id = hold_id(i);
      if (kind == hold_op_kind::reserve) {
        op.qty = r_.lines[i].qty;
        op.ttl_ms = policy_.hold_ttl_ms;
        op.user = r_.user;
      }
      if (kind == hold_op_kind::extend) op.ttl_ms = policy_.hold_ttl_ms;
      c.holds.push_back(std::move(op));
    }
    return c;
  };
  // While the payment is pending, the holds' leases are renewed at half their TTL.
  if ((r_.phase == saga_phase::authorize || r_.phase == saga_phase::confirm) &&
      now_ms >= r_.extended_at_ms + policy_.hold_ttl_ms / 2) {
    holds(hold_op_kind::extend, [&](size_t i) { return r_.reserved[i] && !r_.sold[i]; });
    if (!c.holds.empty()) return c;
    c = saga_command{};  // nothing held that is not sold: nothing to extend
  }
  auto payment = [&](payment_op op) {
    c.what = saga_command::kind::payment;
    auto& p = c.payment;
    p.idempotency_key = payment_key(r_.phase);
    if (op == payment_op::void_auth && r_.intent_id.empty()) {
      // An authorization may stand whose answer never came: its key says.
      p.op = payment_op::lookup;
      p.idempotency_key = payment_key(saga_phase::authorize);
      return c;
    }
    if (r_.lookup_pending) {
      p.op = payment_op::lookup;
      return c;
    }
    p.op = op;
    p.order_id = r_.order_id;
    p.intent_id = r_.intent_id;
    if (op == payment_op::authorize) {
      p.amount_cents = r_.total_cents;
      p.card = r_.card;
    }
    return c;
  };
  auto open = [&](size_t i) { return !r_.done[i]; };
  switch (r_.phase) {
    case saga_phase::reserve: return holds(hold_op_kind::reserve, open);
    case saga_phase::authorize: return payment(payment_op::authorize);
    case saga_phase::confirm: return holds(hold_op_kind::confirm, open);
    case saga_phase::capture: return payment(payment_op::capture);
    case saga_phase::release: return holds(hold_op_kind::release, open);
    case saga_phase::restock: return holds(hold_op_kind::return_hold, open);
    case saga_phase::void_auth: return payment(payment_op::void_auth);
    case saga_phase::refund: return payment(payment_op::refund);
    case saga_phase::done: break;
  }
  return c;
}

void order_saga::enter(saga_phase p, int64_t now_ms) {
  r_.phase = p;
  r_.attempt = 0;
  r_.retry_at_ms = 0;
  r_.lookup_pending = false;
  r_.last_error.clear();
  r_.updated_ms = now_ms;
  r_.version += 1;
  for (size_t i = 0; i < r_.lines.size(); ++i) {
    // Release what is not sold; give back what is.
    if (p == saga_phase::release) r_.done[i] = r_.sold[i];
    else if (p == saga_phase::restock) r_.done[i] = !r_.sold[i];
    else r_.done[i] = 0;
  }
}

void order_saga::enter_state(order_state s, saga_phase p, int64_t now_ms) {
  r_.state = s;
  enter(p, now_ms);
}

saga_phase order_saga::compensation() const {
  bool any_unsold = false, any_sold = false;
  for (size_t i = 0; i < r_.lines.size(); ++i) (r_.sold[i] ? any_sold : any_unsold) = true;
  if (!r_.released_all && any_unsold) return saga_phase::release;
  if (any_sold) return saga_phase::restock;
  if (r_.authorized || r_.auth_unsure) return saga_phase::void_auth;
  if (r_.captured) return saga_phase::refund;
  return saga_phase::done;
}

void order_saga::compensate(std::string reason, int64_t now_ms) {
  if (r_.reason.empty()) r_.reason = std::move(reason);
  // Leaving an authorize whose outcome is unknown: whatever it did is voided.
  if (r_.phase == saga_phase::authorize && r_.lookup_pending) r_.auth_unsure = true;
  auto next = compensation();
  enter(next, now_ms);
  if (next == saga_phase::done) r_.state = r_.refunded ? order_state::refunded : order_state::cancelled;
}

uint64_t order_saga::jitter_seed() const {
  return std::hash<std::string>{}(r_.order_id) ^ (uint64_t{r_.attempt} * 0x9e3779b97f4a7c15ULL);
}

void order_saga::retry_later(const std::string& why, int64_t now_ms) {
  // Not a transition: the version (and so the record and its event) stays.
  r_.attempt += 1;
  r_.last_error = why;
  if (forward(r_.phase) && r_.attempt >= policy_.attempts_max) {
    compensate(std::string(to_string(r_.phase)) + " found no answer in " + std::to_string(r_.attempt) +
                 " tries (" + why + ")",
               now_ms);
    return;
  }
  int64_t backoff = policy_.retry_min_ms;
  for (uint32_t i = 1; i < r_.attempt && backoff < policy_.retry_max_ms; ++i) backoff *= 2;
  backoff = std::min(backoff, policy_.retry_max_ms);
  // Jitter from the order id: orders that failed together do not retry together.
  backoff = backoff / 2 + static_cast<int64_t>(jitter_seed() % static_cast<uint64_t>(backoff / 2 + 1));
  r_.retry_at_ms = now_ms + backoff;
}

bool order_saga::after_forward_step(int64_t now_ms) {
  if (r_.cancel_requested && forward(r_.phase)) {
    compensate("cancelled by the user", now_ms);
    return true;
  }
  return false;
}

bool order_saga::on_holds(const std::vector<hold_op>& sent, const std::vector<hold_result>& answers,
                          int64_t now_ms) {
  if (sent.empty() || answers.size() != sent.size()) return false;
  auto kind = sent.front().kind;
  auto line_of = [&](const hold_op& op) -> size_t {
    for (size_t i = 0; i < r_.lines.size(); ++i)
      if (op.hold_id == hold_id(i)) return i;
    return r_.lines.size();
  };
  if (kind == hold_op_kind::extend) {
    if (r_.phase != saga_phase::authorize && r_.phase != saga_phase::confirm) return false;
    std::string lost;
    bool unknown = false;
    for (size_t k = 0; k < sent.size(); ++k) {
      auto s = answers[k].status;
      if (s == code::ok) continue;
      if (unanswered(s)) unknown = true;
      else if (s == code::wrong_state && answers[k].hold.state == hold_state::confirmed) {
        // A confirm whose answer was lost landed: the line is sold.
        auto i = line_of(sent[k]);
        if (i < r_.lines.size()) {
          r_.sold[i] = 1;
          r_.reserved[i] = 0;
          if (r_.phase == saga_phase::confirm) r_.done[i] = 1;
        }
      }
      else if (lost.empty()) lost = "the hold of line " + std::to_string(line_of(sent[k])) + " ended (" + to_string(s) + ")";
    }
    if (!lost.empty()) {
      // A hold ended while the payment was pending: nothing is sold, the order cannot be kept.
      compensate(lost + " before the order was confirmed", now_ms);
      return true;
    }
    if (unknown) {
      retry_later("extending the holds found no answer", now_ms);
    } else {
      r_.extended_at_ms = now_ms;
      r_.version += 1;
    }
    if (r_.phase == saga_phase::confirm &&
        std::all_of(r_.done.begin(), r_.done.end(), [](uint8_t d) { return d != 0; }))
      enter_state(order_state::confirmed, saga_phase::capture, now_ms);  // every line sold
    return true;
  }
  const saga_phase expected = kind == hold_op_kind::reserve ? saga_phase::reserve
                              : kind == hold_op_kind::confirm ? saga_phase::confirm
                              : kind == hold_op_kind::release ? saga_phase::release
                                                              : saga_phase::restock;
  if (r_.phase != expected) return false;  // an answer from before a switch: nothing to learn
  std::string failure, unknown;
  for (size_t k = 0; k < sent.size(); ++k) {
    auto i = line_of(sent[k]);
    if (i >= r_.lines.size()) continue;
    const auto& a = answers[k];
    if (unanswered(a.status)) {
      if (unknown.empty()) unknown = std::string(to_string(a.status)) + (a.message.empty() ? "" : ": " + a.message);
      continue;
    }
    auto line = "line " + std::to_string(i) + " (" + r_.lines[i].sku + ")";
    switch (r_.phase) {
      case saga_phase::reserve:
        if (a.status == code::ok) {
          r_.done[i] = r_.reserved[i] = 1;
        } else if (failure.empty()) {
          failure = line + ": " + to_string(a.status) + (a.message.empty() ? "" : " (" + a.message + ")");
        }
        break;
      case saga_phase::confirm:
        if (a.status == code::ok) {
          r_.done[i] = r_.sold[i] = 1;
          r_.reserved[i] = 0;
        } else if (failure.empty()) {
          failure = line + ": its hold could not be confirmed: " + to_string(a.status);
        }
        break;
      case saga_phase::release:
        // Released, never held, or already ended: nothing held any more. A hold that
        // turns out confirmed (a confirm whose answer was lost) is sold: give it back.
        r_.done[i] = 1;
        r_.reserved[i] = 0;
        if (a.status == code::wrong_state && a.hold.state == hold_state::confirmed) r_.sold[i] = 1;
        break;
      case saga_phase::restock:
        if (a.status == code::ok ||
            (a.status == code::wrong_state && a.hold.state != hold_state::active)) {
          // Returned now or before; or never sold after all.
          r_.done[i] = 1;
          r_.sold[i] = 0;
        } else if (a.status == code::unknown_hold) {
          // The sale is older than the SKU's finished-hold retention: the book no longer
          // knows the hold, so it cannot be given back by id. Said, not forgotten.
          r_.done[i] = 1;
          r_.sold[i] = 0;
          r_.reason += "; line " + std::to_string(i) + " (" + r_.lines[i].sku + " x" +
                       std::to_string(r_.lines[i].qty) +
                       ") was sold before the hold retention: restock it by hand";
        } else if (unknown.empty()) {
          unknown = std::string(to_string(a.status)) + (a.message.empty() ? "" : ": " + a.message);
        }
        break;
      default:
        break;
    }
  }
  bool all = std::all_of(r_.done.begin(), r_.done.end(), [](uint8_t d) { return d != 0; });
  if (!failure.empty() && forward(r_.phase)) {
    compensate(failure, now_ms);
    return true;
  }
  if (after_forward_step(now_ms)) return true;  // a cancel waited for these answers
  if (!all) {
    retry_later(unknown.empty() ? std::string("some lines did not answer") : unknown, now_ms);
    return true;
  }
  switch (r_.phase) {
    case saga_phase::reserve:
      r_.extended_at_ms = now_ms;
      // Nothing to charge: no payment at all.
      if (r_.total_cents == 0) enter_state(order_state::authorized, saga_phase::confirm, now_ms);
      else enter_state(order_state::reserved, saga_phase::authorize, now_ms);
      after_forward_step(now_ms);
      break;
    case saga_phase::confirm:
      if (r_.total_cents == 0) enter_state(order_state::captured, saga_phase::done, now_ms);
      else enter_state(order_state::confirmed, saga_phase::capture, now_ms);
      break;
    case saga_phase::release:
      r_.released_all = true;
      compensate({}, now_ms);
      break;
    case saga_phase::restock:
      compensate({}, now_ms);
      break;
    default:
      break;
  }
  return true;
}

std::string order_saga::foreign(const payment_intent& in) const {
  if (in.id.empty()) return {};  // no payment spoken of
  if (in.order_id != r_.order_id) return "payment " + in.id + " belongs to order '" + in.order_id + "'";
  if (!r_.intent_id.empty() && in.id != r_.intent_id) return "payment " + in.id + " is not this order's " + r_.intent_id;
  if (in.status != intent_status::none && in.amount_cents != r_.total_cents)
    return "payment " + in.id + " is of " + std::to_string(in.amount_cents) + " cents, the order's total " +
           std::to_string(r_.total_cents);
  return {};
}

bool order_saga::on_payment(const payment_request& sent, const payment_reply& reply, int64_t now_ms) {
  using outcome = payment_reply::outcome;
  const auto& in = reply.intent;
  const bool auth_lookup = r_.phase == saga_phase::void_auth && sent.op == payment_op::lookup &&
                           sent.idempotency_key == payment_key(saga_phase::authorize);
  if (!auth_lookup && sent.idempotency_key != payment_key(r_.phase)) return false;  // from before a switch
  if (auto alien = foreign(in); !alien.empty()) {
    // A confused provider (or one that forgot and reused an id): not an answer about
    // this order's payment. Asked again; a forward step gives up after attempts_max.
    retry_later("the payment provider answered about another payment: " + alien, now_ms);
    return true;
  }
  // In the void step, an authorization whose answer never came is looked up first.
  if (auth_lookup) {
    if (reply.result == outcome::unknown || (reply.result == outcome::refused && !in.id.empty()) ||
        (reply.result == outcome::refused && reply.error.find("in progress") != std::string::npos)) {
      retry_later("looking up the authorization found no answer: " + reply.error, now_ms);
      return true;
    }
    r_.auth_unsure = false;
    if (!in.id.empty()) r_.intent_id = in.id;
    r_.authorized = in.status == intent_status::authorized;
    if (in.status == intent_status::captured) r_.captured = true;
    r_.version += 1;
    if (!r_.authorized) compensate({}, now_ms);  // never applied, or declined: nothing to void
    return true;
  }
  if (sent.op == payment_op::lookup) {
    if (reply.result == outcome::unknown ||
        (reply.result == outcome::refused && reply.error.find("in progress") != std::string::npos)) {
      retry_later("looking up the payment found no answer: " + reply.error, now_ms);
      return true;
    }
    if (reply.result == outcome::refused && in.id.empty()) {
      // Never applied: the request may be sent (again, with its key).
      r_.lookup_pending = false;
      r_.version += 1;
      return true;
    }
    r_.lookup_pending = false;
  } else if (reply.result == outcome::unknown ||
             (reply.result == outcome::refused && in.id.empty() &&
              reply.error.find("in progress") != std::string::npos)) {
    // No answer, or a duplicate of this request is still being handled: what it did is
    // asked by its key next, never sent anew.
    r_.lookup_pending = true;
    retry_later("the payment provider did not answer: " + reply.error, now_ms);
    return true;
  } else {
    // A definite answer (or the webhook standing for it): nothing left to look up.
    r_.lookup_pending = false;
  }
  switch (r_.phase) {
    case saga_phase::authorize:
      if (reply.result == outcome::ok && in.status == intent_status::authorized) {
        r_.intent_id = in.id;
        r_.authorized = true;
        enter_state(order_state::authorized, saga_phase::confirm, now_ms);
        after_forward_step(now_ms);
      } else {
        if (!in.id.empty()) r_.intent_id = in.id;
        r_.authorized = in.status == intent_status::authorized;
        compensate(reply.result == outcome::declined ? "payment declined (" + in.decline_reason + ")"
                                                     : "payment refused: " + reply.error,
                   now_ms);
      }
      return true;
    case saga_phase::capture:
      if (in.status == intent_status::captured) {
        r_.authorized = false;
        r_.captured = true;
        enter_state(order_state::captured, saga_phase::done, now_ms);
      } else if (!in.id.empty() && in.status == intent_status::none) {
        // The provider does not know the payment (it lost it): there is nothing to
        // capture, so the order cannot be paid. Its lines are given back.
        r_.authorized = false;
        compensate("the payment provider does not know payment " + in.id + ": nothing was captured", now_ms);
      } else if (in.id.empty()) {
        // Refused without the intent's state (bad input, a reused key): not known to have
        // failed, so not compensated; asked again, and given up only after attempts_max.
        r_.lookup_pending = true;
        retry_later("capture refused: " + reply.error, now_ms);
      } else {
        r_.authorized = in.status == intent_status::authorized;
        compensate("capture refused: " + reply.error, now_ms);
      }
      return true;
    case saga_phase::void_auth:
      if (in.status == intent_status::captured) {
        r_.captured = true;  // it was captured after all: refunded next
        r_.authorized = false;
        compensate({}, now_ms);
      } else if (reply.result == outcome::ok || (!in.id.empty() && in.status != intent_status::authorized)) {
        // Voided, or nothing to void (declined, already voided): settled either way.
        r_.authorized = false;
        r_.auth_unsure = false;
        compensate({}, now_ms);
      } else {
        retry_later("void refused: " + reply.error, now_ms);
      }
      return true;
    case saga_phase::refund:
      if (reply.result == outcome::ok || in.status == intent_status::refunded) {
        r_.captured = false;
        r_.refunded = true;
        compensate({}, now_ms);
      } else if (!in.id.empty() && in.status == intent_status::none) {
        // The provider does not know the payment: nothing it could refund.
        r_.captured = false;
        r_.reason += "; the payment provider does not know payment " + in.id + ": nothing was refunded";
        compensate({}, now_ms);
      } else {
        retry_later("refund refused: " + reply.error, now_ms);
      }
      return true;
    default:
      return false;
  }
}

bool order_saga::on_payment_event(const payment_intent& in, int64_t now_ms) {
  // Signed is not enough: it must speak of this order's payment, for its total.
  if (in.id.empty() || !foreign(in).empty()) return false;
  payment_reply reply;
  reply.intent = in;
  reply.result = in.status == intent_status::declined ? payment_reply::outcome::declined : payment_reply::outcome::ok;
  payment_request as;
  as.idempotency_key = payment_key(r_.phase);
  // The event settles the step it is the outcome of; any other is old news.
  switch (r_.phase) {
    case saga_phase::authorize:
      if (in.status != intent_status::authorized && in.status != intent_status::declined) return false;
      as.op = payment_op::authorize;
      break;
    case saga_phase::capture:
      if (in.status != intent_status::captured) return false;
      as.op = payment_op::capture;
      break;
    case saga_phase::void_auth:
      if (in.status != intent_status::voided) return false;
      as.op = payment_op::void_auth;
      break;
    case saga_phase::refund:
      if (in.status != intent_status::refunded) return false;
      as.op = payment_op::refund;
      break;
    default:
      return false;
  }
  return on_payment(as, reply, now_ms);
}

std::string order_saga::cancel(int64_t now_ms) {
  if (r_.state == order_state::cancelled || (!forward(r_.phase) && r_.cancel_requested)) return {};
  if (r_.state == order_state::refunded) return "order is refunded";
  if (r_.phase == saga_phase::capture || r_.state == order_state::confirmed)
    return "order is confirmed and its payment is being captured: too late to cancel";
  if (r_.state >= order_state::captured)
    return std::string("order is ") + to_string(r_.state) +
           ": its payment was captured (a shipping failure refunds it)";
  if (!forward(r_.phase)) return {};  // already ending: a cancel asks for nothing more
  r_.cancel_requested = true;
  r_.updated_ms = now_ms;
  r_.version += 1;
  return {};
}

bool order_saga::apply_cancel(int64_t now_ms) { return after_forward_step(now_ms); }

std::string order_saga::ship(int64_t now_ms) {
  if (r_.phase != saga_phase::done) return std::string("order is in its ") + to_string(r_.phase) + " step";
  if (r_.state == order_state::shipped || r_.state == order_state::delivered) return {};
  if (r_.state != order_state::captured) return std::string("order is ") + to_string(r_.state);
  r_.state = order_state::shipped;
  r_.updated_ms = now_ms;
  r_.version += 1;
  return {};
}

std::string order_saga::deliver(int64_t now_ms) {
  if (r_.phase != saga_phase::done) return std::string("order is in its ") + to_string(r_.phase) + " step";
  if (r_.state == order_state::delivered) return {};
  if (r_.state != order_state::shipped) return std::string("order is ") + to_string(r_.state);
  r_.state = order_state::delivered;
  r_.updated_ms = now_ms;
  r_.version += 1;
  return {};
}

std::string order_saga::shipping_failed(const std::string& why, int64_t now_ms) {
  if (r_.state == order_state::refunded || r_.refunded || (!forward(r_.phase) && r_.phase != saga_phase::done))
    return {};  // refunded or being refunded
  if (r_.state != order_state::captured && r_.state != order_state::shipped)
    return std::string("order is ") + to_string(r_.state);
  r_.released_all = true;  // every line was sold: nothing is held
  compensate("shipping failed: " + why, now_ms);
  return {};
}

}  // namespace holdfast
