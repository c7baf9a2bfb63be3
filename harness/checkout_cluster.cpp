#include "harness/checkout_cluster.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <random>
#include <stdexcept>
#include <thread>

#include <unistd.h>

#include "cluster/certs.hpp"

namespace holdfast {

checkout_cluster::checkout_cluster(const std::string& binary, const std::string& dir, checkout_cluster_options options)
  : binary_(binary), dir_(dir), options_(std::move(options)) {
  if (options_.secret.empty()) {
    // Random per cluster: a fixed one would let any local process sign webhooks.
    std::random_device rd;
    char hex[33];
    std::snprintf(hex, sizeof hex, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
    options_.secret = std::string("whsec_") + hex;
  }
  std::string cluster_dir = dir + "/cluster";
  if (options_.client_certs && ::access((cluster_dir + "/cluster.toml").c_str(), F_OK) != 0) {
    cluster_config cfg;
    std::string error, written;
    if (!init_cluster_dir(cluster_dir, options_.nodes, 0, "holdfast-local", true, cfg, error, true) ||
        !write_client_certificate(cluster_dir, "client", options_.shop_name, 30, written, error))
      throw std::runtime_error(error);
  }
  nodes_ = std::make_unique<local_cluster>(binary, cluster_dir, options_.nodes, std::vector<std::string>{}, false);
  gateway_args_ = {"--secret", options_.secret};
  for (auto& url : nodes_->webhook_urls()) gateway_args_.insert(gateway_args_.end(), {"--webhook", url});
  gateway_args_.insert(gateway_args_.end(), options_.gateway_args.begin(), options_.gateway_args.end());
  gateway_ = std::make_unique<gateway_process>(binary, dir + "/gateway.log", gateway_args_);
  std::vector<std::string> args{"--gateway", gateway_->url(), "--webhook-secret", options_.secret,
                                "--payment-timeout-ms", std::to_string(options_.payment_timeout_ms)};
  args.insert(args.end(), options_.node_args.begin(), options_.node_args.end());
  nodes_->set_args(args);
  for (auto id : nodes_->ids()) nodes_->start(id);
  if (!nodes_->wait_links_up(std::chrono::seconds(30)))
    throw std::runtime_error("the cluster's links did not come up; logs in " + dir + "/cluster");
}

checkout_cluster::~checkout_cluster() = default;

client_options checkout_cluster::shop_config(int64_t timeout_ms) const {
  auto o = nodes_->client_config(timeout_ms);
  auto base = nodes_->dir() + "/client-" + options_.shop_name;
  if (nodes_->config().client_certs && ::access((base + ".pem").c_str(), R_OK) == 0) {
    o.tls_cert = base + ".pem";
    o.tls_key = base + ".key";
  }
  return o;
}

void checkout_cluster::restart_gateway() {
  auto address = gateway_->url().substr(std::string("http://").size());
  gateway_->stop();
  auto args = gateway_args_;
  args.insert(args.end(), {"--listen", address});
  gateway_ = std::make_unique<gateway_process>(binary_, dir_ + "/gateway-" + std::to_string(++restarts_) + ".log",
                                               args);
}

checkout_cluster::webhook_counts checkout_cluster::webhooks() const {
  webhook_counts out;
  // On a thread of its own: the caller's thread may run a KJ loop.
  std::thread([&] {
    for (auto& url : nodes_->webhook_urls()) {
      std::string body, error;
      if (http_get(url, 5'000, body, error) != 200) continue;
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (!j.is_object()) continue;
      out.applied += j.value("applied", uint64_t{0});
      out.duplicates += j.value("duplicates", uint64_t{0});
      out.refused += j.value("refused", uint64_t{0});
    }
  }).join();
  return out;
}

}  // namespace holdfast
