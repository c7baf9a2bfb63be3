// The node's HTTP endpoint (`--http HOST:PORT`), served by KJ HTTP on the node's network
// thread beside the Cap'n Proto ports. Today it takes the payment gateway's webhooks:
//
//   POST /webhooks/payments   a signed event (gateway/webhook.hpp). Checked here (a forged,
//                             altered or stale one: 400, nothing changes), deduplicated by
//                             event id, then handed to its order's owner as a paymentEvent
//                             order operation (the owner checks the signature again: no
//                             path around it). 200 once the order took it (or has never
//                             heard of the order); 503 when the owner could not be asked:
//                             the gateway retries.
//   GET  /webhooks/payments   the counters below, as JSON.
//
//   GET  /health              200 while the process serves HTTP at all (a liveness probe).
//   GET  /ready               200 {"ready":true} once the node serves calls: recovery is
//                             done (the endpoint starts after it) and, in a cluster, its
//                             links let it serve; else 503 {"ready":false,"reason":...}.
//   GET  /metrics             the node's counters, gauges and histograms in the Prometheus
//                             text format (cluster/metrics.hpp).
#pragma once

#include <kj/compat/http.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_set>

#include "actors/order.hpp"

namespace holdfast {

struct webhook_counters {
  uint64_t received = 0;    // POSTs
  uint64_t applied = 0;     // taken by their order (changed it or not)
  uint64_t duplicates = 0;  // an event id taken before: answered 200, not passed on
  uint64_t refused = 0;     // bad signature, too old, malformed: 400
  uint64_t unknown_orders = 0;  // about an order nobody has: 200, ignored
  uint64_t retry_later = 0;     // the owner could not be asked: 503
};

class http_endpoint final : public kj::HttpService {
public:
  using route_orders = std::function<kj::Promise<std::vector<order_result>>(std::vector<order_op>)>;
  struct probes {
    std::function<kj::Promise<std::string>()> metrics;  // the /metrics text
    std::function<std::string()> not_ready;              // "" when ready, else why not
  };
  // A request body not complete within `body_timeout_ms` is answered 408 and its
  // connection closed (KJ's HttpServer bounds headers, not bodies: a client sending a
  // byte at a time would hold a connection for ever).
  http_endpoint(const kj::HttpHeaderTable& table, kj::HttpHeaderId signature_header, std::string webhook_secret,
                route_orders route, request_limits limits, kj::Timer& timer, int64_t body_timeout_ms,
                probes checks);
  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders& headers,
                            kj::AsyncInputStream& body, Response& response) override;
  const webhook_counters& counters() const { return counters_; }

private:
  kj::Promise<void> webhook(std::string signature, std::string body, Response& response);
  kj::Promise<void> probe(const std::string& path, Response& response);
  void remember(const std::string& event_id);
  void forget(const std::string& event_id);

  const kj::HttpHeaderTable& table_;
  kj::HttpHeaderId signature_header_;
  std::string secret_;
  route_orders route_;
  request_limits limits_;
  kj::Timer& timer_;
  int64_t body_timeout_ms_;
  probes probes_;
  webhook_counters counters_;
  // Event ids taken lately (bounded: the saga itself ignores an event it has seen, so
  // this only spares the owner a hop).
  std::unordered_set<std::string> seen_;
  std::deque<std::string> seen_order_;
};

}  // namespace holdfast
