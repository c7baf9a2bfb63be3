// The fixture of the cluster process tests: three real `holdfast node` processes on
// loopback with mutual TLS, from a directory made by `cluster init` (free ports), and
// clients of them on threads of their own. Waits are conditions with deadlines.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "client/client.hpp"
#include "client/placement.hpp"
#include "harness/local_cluster.hpp"
#include "harness/processes.hpp"

namespace holdfast {


class cluster_test : public ::testing::Test {
protected:
  cluster_test() { dir_ = make_temp_dir("holdfast-cluster"); }
  ~cluster_test() override {
    nodes_.reset();
    std::filesystem::remove_all(dir_);
  }
  void start(std::vector<std::string> extra = {}) {
    nodes_ = std::make_unique<local_cluster>(HOLDFAST_BINARY, dir_ + "/c", 3, std::move(extra));
    ASSERT_TRUE(nodes_->wait_links_up(std::chrono::seconds(20))) << log(1);
  }
  std::string log(uint32_t id) {
    std::ifstream in(dir_ + "/c/node-" + std::to_string(id) + ".log");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  // A key each node owns: sku-<node>-<n>.
  std::map<uint32_t, std::vector<std::string>> owned(size_t per_node) {
    placement p(nodes_->ids());
    std::map<uint32_t, std::vector<std::string>> out;
    for (int i = 0; out.size() < 3 || std::any_of(out.begin(), out.end(), [&](auto& e) {
                      return e.second.size() < per_node;
                    });
         ++i) {
      auto k = "sku-" + std::to_string(i);
      auto& v = out[p.owner(k)];
      if (v.size() < per_node) v.push_back(k);
    }
    return out;
  }
  blocking_client connect(uint32_t id, int64_t timeout_ms = 5'000) {
    return blocking_client(nodes_->address(id), nodes_->client_config(timeout_ms));
  }
  // Runs `f` with a client of node `id` on a thread of its own: a thread has at most one
  // KJ event loop, and the harness opens clients of its own.
  template <class F>
  auto on(uint32_t id, F f, int64_t timeout_ms = 5'000) {
    return on(nodes_->address(id), f, timeout_ms);
  }
  template <class F>
  auto on(const std::string& address, F f, int64_t timeout_ms = 5'000) {
    decltype(f(std::declval<blocking_client&>())) out{};
    std::exception_ptr failed;
    std::thread([&] {
      try {
        blocking_client c(address, nodes_->client_config(timeout_ms));
        out = f(c);
      } catch (...) {
        failed = std::current_exception();
      }
    }).join();
    if (failed) std::rethrow_exception(failed);
    return out;
  }
  std::string dir_;
  std::unique_ptr<local_cluster> nodes_;
};

}  // namespace holdfast
