// The payment provider over HTTP: the `holdfast gateway` process (gateway/http_api.hpp).
// Requests are queued from any thread and sent from the provider's own KJ event loop
// (its thread, started by the constructor, stopped by the destructor); each answer is
// handed to `done` on that thread. No answer within `timeout_ms`, a broken connection or
// a 5xx: `unknown` (the saga looks the key up; it never charges anew).
#pragma once

#include <memory>
#include <string>

#include "actors/payment_provider.hpp"

namespace holdfast {

class http_payment_provider final : public payment_provider {
public:
  // `url`: http://host:port of the gateway.
  http_payment_provider(std::string url, int64_t timeout_ms = 5'000);
  ~http_payment_provider() override;
  void call(payment_request request, std::function<void(payment_reply)> done) override;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace holdfast
