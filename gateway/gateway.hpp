// The simulated payment gateway's core: payment intents (authorize / capture / void /
// refund), Stripe-like idempotency keys, a ledger of every operation applied, and the
// webhook events those operations emit, queued for delivery with retries and, from a
// seed, duplicated, reordered and late. No I/O and no clock of its own: every call
// takes the time, so the same core is deterministic in-process (gateway/in_process.hpp)
// and serves HTTP in the `holdfast gateway` process.
//
// Idempotency, as Stripe defines it: a key names one request. The same key with the
// same request answers the stored first answer; the same key with another request is
// refused (key reused); a key whose request is still being handled is refused as a
// conflict. Keys are kept `idempotency_ttl_ms` (24 h).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/payment_provider.hpp"
#include "protocol/domain.hpp"

namespace holdfast {

struct gateway_options {
  uint64_t seed = 1;
  double decline_rate = 0;            // authorizations declined at random
  double lost_reply_rate = 0;         // applied, but the caller hears nothing (handle())
  double duplicate_webhook_rate = 0;  // events delivered twice
  double reorder_webhook_rate = 0;    // events held back behind later ones
  int64_t webhook_delay_max_ms = 0;   // late events: up to this much later
  int64_t idempotency_ttl_ms = 24LL * 3600 * 1000;
  int64_t webhook_retry_min_ms = 250;  // a failed delivery is retried after this, doubling
  int64_t webhook_retry_max_ms = 60'000;
  int webhook_attempts_max = 20;       // then the event is dropped (and counted)
  // Names this run's intents and events (pi_<run>_N, evt_<run>_N), so a restarted
  // gateway never reuses an id a node already holds. Empty: pi_N (in-process, one run).
  std::string run_id;
};

struct ledger_entry {
  uint64_t seq = 0;
  std::string intent_id;
  std::string order_id;
  payment_op op = payment_op::authorize;  // authorize, capture, void_auth, refund
  int64_t amount_cents = 0;
  bool declined = false;  // an authorization that was declined
  int64_t at_ms = 0;
  std::string idempotency_key;
};

struct webhook_event {
  std::string id;    // evt_[<run>_]N: receivers deduplicate by it
  std::string type;  // payment_intent.amount_capturable_updated, .succeeded, .canceled,
                     // .payment_failed, charge.refunded
  int64_t created_ms = 0;
  payment_intent intent;  // as the operation left it
};

struct webhook_delivery {
  webhook_event event;
  int64_t due_ms = 0;
  int attempts = 0;  // deliveries tried so far
};

struct gateway_stats {
  uint64_t requests = 0, replays = 0, conflicts = 0, key_reuses = 0, lost_replies = 0;
  uint64_t events = 0, duplicates = 0, deliveries = 0, retries = 0, dropped = 0;
};

class gateway {
public:
  explicit gateway(gateway_options options);

  // What a request's key allows.
  enum class admission { proceed, replay, in_progress, key_reused, invalid };
  struct begun {
    admission verdict = admission::proceed;
    payment_reply answer;  // replay: the first answer; other refusals: why
  };
  // Checks the request and claims its key; proceed means execute() must follow (the
  // HTTP server waits its simulated latency in between).
  begun begin(const payment_request& request, int64_t now_ms);
  // Applies a request begin() let proceed, records its answer under its key, appends to
  // the ledger and queues the events it emits.
  payment_reply execute(const payment_request& request, int64_t now_ms);
  // begin() then execute(): the answer, a replay, or a refusal. `lost` (may be null) is
  // set when the seeded fault says the caller never hears the answer.
  payment_reply handle(const payment_request& request, int64_t now_ms, bool* lost = nullptr);
  // The seeded fault, drawn once per applied request: true when its caller never hears
  // the answer (counted).
  bool lose_reply();

  // Webhook events due at `now_ms` (at most `max`), taken off the queue: one the
  // receiver did not take is handed back with failed() and retried.
  std::vector<webhook_delivery> due(int64_t now_ms, size_t max = 64);
  void failed(webhook_delivery d, int64_t now_ms);
  // When the next event is due (0: none queued).
  int64_t next_due_ms() const;

  const std::vector<ledger_entry>& ledger() const { return ledger_; }
  // Captures applied for an order (promise 4: at most one).
  size_t captures(const std::string& order_id) const;
  const payment_intent* intent(const std::string& id) const;
  const gateway_stats& stats() const { return stats_; }
  // Forgets keys older than the retention (called by handle() now and then).
  void expire_keys(int64_t now_ms);

private:
  struct stored_key {
    std::string fingerprint;  // the request, canonically: the same key must come with it
    bool done = false;
    payment_reply answer;
    int64_t created_ms = 0;
  };
  static std::string fingerprint(const payment_request& r);
  payment_reply apply(const payment_request& r, int64_t now_ms);
  void emit(const char* type, const payment_intent& intent, int64_t now_ms);
  double draw();
  std::string run_prefix() const;

  gateway_options options_;
  std::mt19937_64 rng_;
  std::unordered_map<std::string, payment_intent> intents_;
  std::unordered_map<std::string, stored_key> keys_;
  std::deque<std::pair<int64_t, std::string>> key_order_;  // (created, key), oldest first
  std::vector<ledger_entry> ledger_;
  std::multimap<int64_t, webhook_delivery> queue_;  // by due time
  uint64_t next_intent_ = 1, next_event_ = 1;
  gateway_stats stats_;
};

}  // namespace holdfast
