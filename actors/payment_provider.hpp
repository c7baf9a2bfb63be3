// Boundary 4 of ARCHITECTURE.md: the payment provider. The payment actor asks it to
// authorize, capture, void or refund an order's payment, and to look up what became of
// a request whose answer never came. Every request carries an idempotency key: the
// provider applies a key once and answers a repeat with its first answer, so a retry,
// a duplicate message or a resumed saga never charges twice (promise 4).
//
// Two implementations: the simulated gateway in-process (gateway/in_process.hpp,
// deterministic and seeded, for tests and the simulator) and over HTTP (the `holdfast
// gateway` process). Finality comes from the gateway's webhooks; a reply is a hint.
#pragma once

#include <functional>

#include "protocol/payment.hpp"

namespace holdfast {

class payment_provider {
public:
  virtual ~payment_provider() = default;
  // `done` is called exactly once, on a thread of the provider's choosing.
  virtual void call(payment_request request, std::function<void(payment_reply)> done) = 0;
};

}  // namespace holdfast
