#include "gateway/in_process.hpp"

namespace holdfast {

in_process_gateway::in_process_gateway(gateway_options options, std::shared_ptr<const wall_clock> clock,
                                       std::string webhook_secret)
  : core_(options), clock_(std::move(clock)), secret_(std::move(webhook_secret)) {}

void in_process_gateway::call(payment_request request, std::function<void(payment_reply)> done) {
  bool lost = false;
  auto answer = core_.handle(request, clock_->now_ms(), &lost);
  if (lost) {
    payment_reply unknown;
    unknown.result = payment_reply::outcome::unknown;
    unknown.error = "the gateway's reply was lost";
    done(std::move(unknown));
    return;
  }
  done(std::move(answer));
}

std::vector<in_process_gateway::signed_webhook> in_process_gateway::webhooks_due(size_t max) {
  std::vector<signed_webhook> out;
  auto now = clock_->now_ms();
  for (auto& d : core_.due(now, max)) {
    auto body = webhook_body(d.event);
    out.push_back({sign_webhook(secret_, now / 1000, body), std::move(body), std::move(d)});
  }
  return out;
}

}  // namespace holdfast
