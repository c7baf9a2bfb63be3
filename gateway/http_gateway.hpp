// `holdfast gateway`: the simulated payment gateway as its own process. The core
// (gateway/gateway.hpp) behind KJ HTTP (gateway/http_api.hpp), with a seeded latency
// between claiming a request's key and applying it (so a concurrent request with the key
// meets a real conflict), replies lost after the charge happened (answered 500), and its
// webhook events POSTed, signed, to the nodes' HTTP endpoints: each delivery goes to the
// next endpoint in turn (a down node's share goes to the others on retry), retried with
// backoff until a 2xx, late, twice or out of order as the seed says.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gateway/gateway.hpp"

namespace holdfast {

struct gateway_process_options {
  std::string listen = "127.0.0.1:7500";
  std::vector<std::string> webhooks;  // http://host:port/webhooks/payments, any number
  std::string secret;                 // signs the webhooks
  int64_t latency_ms = 0;             // each request waits up to this (seeded, uniform)
  int64_t webhook_timeout_ms = 5'000; // a delivery not answered by then failed
  size_t deliveries_max = 64;         // webhook POSTs in flight
  gateway_options core;
};

// Serves until SIGINT or SIGTERM; prints "holdfast gateway listening on HOST:PORT" once
// bound. Returns the process's exit code.
int run_gateway(const gateway_process_options& options);

}  // namespace holdfast
