// The checkout workload of `holdfast chaos` (--workload checkout or mixed): shoppers fill
// carts of a shared pool of users and check out through every member while the nemesis
// kills, stops and partitions nodes; the gateway process answers with its own faults.
// After healing, every order must end, and the promises are checked against two
// witnesses: the gateway's ledger and the SKUs' books.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/http_api.hpp"
#include "harness/chaos.hpp"
#include "harness/local_cluster.hpp"

namespace holdfast {

struct chaos_verdict {
  std::string name;
  bool ok = true;
  std::string detail;
};

class checkout_workload {
public:
  // `skus` exist already; the first has a per-user limit of `limit_per_user`.
  checkout_workload(const chaos_options& options, const local_cluster& cluster, std::vector<std::string> skus,
                    std::string prefix, int64_t limit_per_user);
  // One shopper thread's body, until `stop`.
  void run(int index, const std::atomic<bool>& stop);
  // "checkouts N (placed N, ...)" for the progress line.
  std::string progress();
  // After healing: waits up to `limit` for every order to end, then reads the gateway's
  // ledger and checks the promises.
  using ledger_reader = std::function<bool(ledger_view&, std::string&)>;
  std::vector<chaos_verdict> check(const ledger_reader& read_ledger, std::chrono::seconds limit);
  // The outcome counts and order states, for the report.
  std::string summary();
  nlohmann::json json();
  // Checkouts per second of the run by outcome (placed, refused, no answer), and the
  // slowest call any shopper made.
  std::vector<std::map<std::string, int>> per_second(int seconds);
  double max_latency_ms();

private:
  struct order_seen {
    std::string user;
    bool acked = false;  // placed, said so; else only maybe (the answer never came)
  };
  const chaos_options& o_;
  const local_cluster& cluster_;
  std::vector<std::string> skus_;
  std::string prefix_;
  int64_t limit_;
  std::mutex mutex_;
  std::map<std::string, order_seen> orders_;  // under mutex_
  std::map<std::string, size_t> counts_;      // under mutex_
  std::map<std::string, size_t> ended_;       // final states, after check()
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::vector<std::pair<double, std::string>> timeline_;  // (seconds, outcome), under mutex_
  double max_latency_ms_ = 0;                              // under mutex_
};

}  // namespace holdfast
