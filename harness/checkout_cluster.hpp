// A local cluster that can check out: `holdfast gateway` started with every member's
// webhook URL, then the members started with the gateway's URL and the webhook secret.
// For the demo, `holdfast chaos --workload checkout`, `bench checkout` and the process
// tests. Everything it starts is stopped by PID when it goes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "harness/gateway_process.hpp"
#include "harness/local_cluster.hpp"

namespace holdfast {

struct checkout_cluster_options {
  int nodes = 3;
  std::vector<std::string> gateway_args;  // faults, seed, latency
  std::vector<std::string> node_args;     // beside --gateway, --webhook-secret
  std::string secret;  // the webhook secret; empty: a random one for this cluster
  int64_t payment_timeout_ms = 2'000;
  // A new cluster directory is made with client_certs on (clients connect with TLS and
  // present a certificate whose role the node enforces), and a `client`-role certificate
  // `client-<shop_name>` beside it for the shoppers; this harness keeps the admin one.
  bool client_certs = false;
  std::string shop_name = "demo-shop";
};

class checkout_cluster {
public:
  // Throws std::runtime_error when a process does not start or the links stay down.
  checkout_cluster(const std::string& binary, const std::string& dir, checkout_cluster_options options);
  ~checkout_cluster();

  local_cluster& nodes() { return *nodes_; }
  // What the shoppers connect with: the cluster's TLS, and with client_certs the
  // client-role certificate (the admin one stays the harness's, for the catalog).
  client_options shop_config(int64_t timeout_ms) const;
  gateway_process& gateway() { return *gateway_; }
  // The gateway stopped and started again on its port: it remembers nothing.
  void restart_gateway();
  // The webhook counters of every member's HTTP endpoint summed: applied, duplicates
  // absorbed, refused (bad signature, stale, malformed).
  struct webhook_counts {
    uint64_t applied = 0, duplicates = 0, refused = 0;
  };
  webhook_counts webhooks() const;

private:
  std::string binary_, dir_;
  checkout_cluster_options options_;
  std::vector<std::string> gateway_args_;
  std::unique_ptr<local_cluster> nodes_;
  std::unique_ptr<gateway_process> gateway_;
  int restarts_ = 0;
};

}  // namespace holdfast
