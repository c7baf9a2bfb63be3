// What in-process replica tests over mutual TLS share: a cluster CA, a certificate and a
// raft_tls_connector per member (listening on a free loopback port), the group's voters at
// those ports, a temporary directory, and a deadline wait.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cluster/certs.hpp"
#include "cluster/raft_tls.hpp"
#include "replication/raft_host.hpp"

namespace holdfast::replication {

inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

struct tls_link {
  pem_pair cert;
  std::unique_ptr<raft_tls_connector> connector;
};

class tls_links : public ::testing::Test {
protected:
  // Makes the CA, `n` members' certificates and connectors, and the voters.
  void make_links(unsigned n) {
    dir_ = std::filesystem::temp_directory_path() /
           ("holdfast-raft-" + std::to_string(::getpid()) + "-" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    std::string error;
    ASSERT_TRUE(make_cluster_ca("raft test CA", 1, ca_, error)) << error;
    links_.resize(n);
    for (unsigned i = 0; i < n; ++i) {
      ASSERT_TRUE(issue_node_certificate(ca_, i + 1, 1, links_[i].cert, error)) << error;
      links_[i].connector = std::make_unique<raft_tls_connector>(connector_options(i));
      voters_.push_back({i + 1, "127.0.0.1:" + std::to_string(links_[i].connector->port())});
    }
  }
  void remove_directory() { std::filesystem::remove_all(dir_); }

  // Where the connectors listen at first (the voters are configured on 127.0.0.1 anyway).
  virtual std::string listen_host() { return "127.0.0.1"; }

  raft_tls_options connector_options(unsigned i) {
    raft_tls_options o;
    o.listen = voters_.size() > i ? voters_[i].address : listen_host() + ":0";
    o.self = i + 1;
    o.ca_pem = ca_.cert;
    o.cert_pem = links_[i].cert.cert;
    o.key_pem = links_[i].cert.key;
    return o;
  }
  raft_tls_connector& connector(unsigned i) {
    if (!links_[i].connector) links_[i].connector = std::make_unique<raft_tls_connector>(connector_options(i));
    return *links_[i].connector;
  }

  std::filesystem::path dir_;
  pem_pair ca_;
  std::vector<tls_link> links_;
  std::vector<raft_voter> voters_;
};

}  // namespace holdfast::replication
