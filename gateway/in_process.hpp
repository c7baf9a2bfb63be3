// The simulated gateway in-process, behind the payment-provider interface: deterministic
// (its time is a wall_clock the caller controls; its faults come from the seed), for
// unit tests and the simulator. Webhooks are taken with webhooks_due(), signed as the
// HTTP gateway signs them, and handed to whatever receives them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gateway/gateway.hpp"
#include "gateway/webhook.hpp"
#include "persistence/clock.hpp"

namespace holdfast {

class in_process_gateway final : public payment_provider {
public:
  in_process_gateway(gateway_options options, std::shared_ptr<const wall_clock> clock,
                     std::string webhook_secret);
  // Answers before it returns. A lost reply (the seeded fault) answers `unknown`: the
  // request was applied, and a lookup by its key tells how.
  void call(payment_request request, std::function<void(payment_reply)> done) override;

  struct signed_webhook {
    std::string signature;  // the Holdfast-Signature header's value
    std::string body;
    webhook_delivery delivery;  // one not taken goes back through core().failed()
  };
  std::vector<signed_webhook> webhooks_due(size_t max = 64);
  gateway& core() { return core_; }

private:
  gateway core_;
  std::shared_ptr<const wall_clock> clock_;
  std::string secret_;
};

}  // namespace holdfast
