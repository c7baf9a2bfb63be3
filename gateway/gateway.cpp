#include "gateway/gateway.hpp"

#include <algorithm>

namespace holdfast {

namespace {


payment_reply refused(std::string why) {
  payment_reply r;
  r.result = payment_reply::outcome::refused;
  r.error = std::move(why);
  return r;
}

}  // namespace

gateway::gateway(gateway_options options) : options_(options), rng_(options.seed) {}

std::string gateway::run_prefix() const { return options_.run_id.empty() ? std::string() : options_.run_id + "_"; }

double gateway::draw() { return std::uniform_real_distribution<double>(0, 1)(rng_); }

std::string gateway::fingerprint(const payment_request& r) {
  return std::string(to_string(r.op)) + '\0' + r.order_id + '\0' + r.intent_id + '\0' +
         std::to_string(r.amount_cents) + '\0' + r.card;
}

gateway::begun gateway::begin(const payment_request& r, int64_t now_ms) {
  begun b;
  auto refuse = [&](admission a, std::string why) {
    b.verdict = a;
    b.answer = refused(std::move(why));
    return b;
  };
  if (r.idempotency_key.empty()) return refuse(admission::invalid, "an idempotency key is required");
  if (r.idempotency_key.size() > idempotency_key_bytes_max)
    return refuse(admission::invalid, "idempotency key longer than " + std::to_string(idempotency_key_bytes_max) + " bytes");
  if (r.op == payment_op::lookup) return b;  // a read: nothing to claim
  auto fp = fingerprint(r);
  auto it = keys_.find(r.idempotency_key);
  if (it != keys_.end()) {
    if (it->second.fingerprint != fp) {
      stats_.key_reuses++;
      return refuse(admission::key_reused, "idempotency key '" + r.idempotency_key +
                                               "' was used for another request");
    }
    if (!it->second.done) {
      stats_.conflicts++;
      return refuse(admission::in_progress, "a request with idempotency key '" + r.idempotency_key +
                                                "' is in progress");
    }
    stats_.replays++;
    b.verdict = admission::replay;
    b.answer = it->second.answer;
    return b;
  }
  keys_[r.idempotency_key] = stored_key{fp, false, {}, now_ms};
  key_order_.emplace_back(now_ms, r.idempotency_key);
  return b;
}

payment_reply gateway::execute(const payment_request& r, int64_t now_ms) {
  stats_.requests++;
  if (r.op == payment_op::lookup) {
    auto it = keys_.find(r.idempotency_key);
    if (it == keys_.end()) return refused("no request with idempotency key '" + r.idempotency_key + "'");
    if (!it->second.done) return refused("the request with idempotency key '" + r.idempotency_key + "' is in progress");
    return it->second.answer;
  }
  auto answer = apply(r, now_ms);
  auto& k = keys_[r.idempotency_key];
  k.done = true;
  k.answer = answer;
  return answer;
}

payment_reply gateway::handle(const payment_request& r, int64_t now_ms, bool* lost) {
  if (lost) *lost = false;
  if (!key_order_.empty() && key_order_.front().first + options_.idempotency_ttl_ms < now_ms) expire_keys(now_ms);
  auto b = begin(r, now_ms);
  if (b.verdict != admission::proceed) return b.answer;
  auto answer = execute(r, now_ms);
  if (r.op != payment_op::lookup && lose_reply() && lost) *lost = true;
  return answer;
}

bool gateway::lose_reply() {
  if (options_.lost_reply_rate <= 0 || draw() >= options_.lost_reply_rate) return false;
  stats_.lost_replies++;
  return true;
}

payment_reply gateway::apply(const payment_request& r, int64_t now_ms) {
  payment_reply out;
  auto record = [&](const payment_intent& in, payment_op op, bool declined) {
    ledger_.push_back({ledger_.size() + 1, in.id, in.order_id, op, in.amount_cents, declined, now_ms,
                       r.idempotency_key});
  };
  if (r.op == payment_op::authorize) {
    if (r.order_id.empty() || r.amount_cents <= 0 || r.card.empty())
      return refused("an authorization needs an order, a positive amount and a card");
    payment_intent in;
    in.id = "pi_" + run_prefix() + std::to_string(next_intent_++);
    in.order_id = r.order_id;
    in.amount_cents = r.amount_cents;
    bool declined = r.card == "tok_decline" || (options_.decline_rate > 0 && draw() < options_.decline_rate);
    in.status = declined ? intent_status::declined : intent_status::authorized;
    if (declined) in.decline_reason = r.card == "tok_decline" ? "card_declined" : "insufficient_funds";
    intents_[in.id] = in;
    record(in, payment_op::authorize, declined);
    emit(declined ? "payment_intent.payment_failed" : "payment_intent.amount_capturable_updated", in, now_ms);
    out.result = declined ? payment_reply::outcome::declined : payment_reply::outcome::ok;
    out.intent = in;
    return out;
  }
  auto it = intents_.find(r.intent_id);
  if (it == intents_.end() || (!r.order_id.empty() && it->second.order_id != r.order_id)) {
    // Said with the intent's id and no state: the caller knows there is nothing to act on.
    // An intent of another order is, for this one, no intent at all (and not shown).
    auto reply = refused("no payment intent '" + r.intent_id + "'" +
                         (it == intents_.end() ? std::string() : " for order '" + r.order_id + "'"));
    reply.intent.id = r.intent_id;
    reply.intent.order_id = r.order_id;
    return reply;
  }
  auto& in = it->second;
  auto wrong = [&](const char* want) {
    auto reply = refused(std::string("payment intent '") + in.id + "' is " + to_string(in.status) +
                         "; " + to_string(r.op) + " needs it " + want);
    reply.intent = in;
    return reply;
  };
  switch (r.op) {
    case payment_op::capture:
      if (in.status != intent_status::authorized) return wrong("requires_capture");
      in.status = intent_status::captured;
      record(in, payment_op::capture, false);
      emit("payment_intent.succeeded", in, now_ms);
      break;
    case payment_op::void_auth:
      if (in.status != intent_status::authorized) return wrong("requires_capture");
      in.status = intent_status::voided;
      record(in, payment_op::void_auth, false);
      emit("payment_intent.canceled", in, now_ms);
      break;
    case payment_op::refund:
      if (in.status != intent_status::captured) return wrong("succeeded");
      in.status = intent_status::refunded;
      record(in, payment_op::refund, false);
      emit("charge.refunded", in, now_ms);
      break;
    default:
      return refused("unknown operation");
  }
  out.intent = in;
  return out;
}

void gateway::emit(const char* type, const payment_intent& intent, int64_t now_ms) {
  webhook_event e;
  e.id = "evt_" + run_prefix() + std::to_string(next_event_++);
  e.type = type;
  e.created_ms = now_ms;
  e.intent = intent;
  stats_.events++;
  auto delay = [&] {
    int64_t d = options_.webhook_delay_max_ms > 0
                  ? static_cast<int64_t>(draw() * static_cast<double>(options_.webhook_delay_max_ms))
                  : 0;
    // Held back behind events that come after it.
    if (options_.reorder_webhook_rate > 0 && draw() < options_.reorder_webhook_rate)
      d += 1 + static_cast<int64_t>(draw() * 1000);
    return d;
  };
  queue_.emplace(now_ms + delay(), webhook_delivery{e, now_ms, 0});
  if (options_.duplicate_webhook_rate > 0 && draw() < options_.duplicate_webhook_rate) {
    stats_.duplicates++;
    queue_.emplace(now_ms + delay(), webhook_delivery{e, now_ms, 0});
  }
}

std::vector<webhook_delivery> gateway::due(int64_t now_ms, size_t max) {
  std::vector<webhook_delivery> out;
  while (!queue_.empty() && queue_.begin()->first <= now_ms && out.size() < max) {
    auto d = std::move(queue_.begin()->second);
    d.due_ms = queue_.begin()->first;
    queue_.erase(queue_.begin());
    d.attempts += 1;
    stats_.deliveries++;
    out.push_back(std::move(d));
  }
  return out;
}

void gateway::failed(webhook_delivery d, int64_t now_ms) {
  if (d.attempts >= options_.webhook_attempts_max) {
    stats_.dropped++;
    return;
  }
  stats_.retries++;
  int64_t backoff = options_.webhook_retry_min_ms;
  for (int i = 1; i < d.attempts && backoff < options_.webhook_retry_max_ms; ++i) backoff *= 2;
  backoff = std::min(backoff, options_.webhook_retry_max_ms);
  // Jitter: a crowd of failed deliveries does not come back at one instant.
  backoff = backoff / 2 + static_cast<int64_t>(draw() * static_cast<double>(backoff / 2 + 1));
  queue_.emplace(now_ms + backoff, std::move(d));
}

int64_t gateway::next_due_ms() const { return queue_.empty() ? 0 : queue_.begin()->first; }

size_t gateway::captures(const std::string& order_id) const {
  return static_cast<size_t>(std::count_if(ledger_.begin(), ledger_.end(), [&](const ledger_entry& e) {
    return e.order_id == order_id && e.op == payment_op::capture;
  }));
}

const payment_intent* gateway::intent(const std::string& id) const {
  auto it = intents_.find(id);
  return it == intents_.end() ? nullptr : &it->second;
}

void gateway::expire_keys(int64_t now_ms) {
  while (!key_order_.empty() && key_order_.front().first + options_.idempotency_ttl_ms < now_ms) {
    auto it = keys_.find(key_order_.front().second);
    // A key still in progress is kept (its request has not answered yet).
    if (it != keys_.end() && it->second.created_ms == key_order_.front().first) {
      if (!it->second.done) break;
      keys_.erase(it);
    }
    key_order_.pop_front();
  }
}

}  // namespace holdfast
