// The closed-loop load generator the Holdfast rows share: each thread runs `callers`
// loops of `depth` outstanding reserves, each on a random SKU of `skus`, over
// `connections` connections opened on its own KJ event loop.
#pragma once

#include <kj/async-io.h>

#include <chrono>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "client/client.hpp"
#include "protocol/domain.hpp"

namespace holdfast::bench {

using steady = std::chrono::steady_clock;

// A random (version 4) UUID in its 36-character text form.
std::string uuid_v4(std::mt19937_64& rng);

struct load_thread {
  using sender = std::function<kj::Promise<hold_result>(const hold_op&)>;
  // One connection: how to reserve through it, and what its auto-batching did.
  struct link {
    sender send;
    std::function<client::batching()> batched;
  };
  // Opens one connection on the thread's event loop.
  std::function<link(kj::AsyncIoProvider&, kj::WaitScope&)> open;
  std::vector<std::string> skus;
  std::string prefix;
  bool uuid_ids = true;
  std::mt19937_64 rng{std::random_device{}()};
  int callers = 0, depth = 0, connections = 0;
  int64_t ttl_ms = 600'000;
  steady::time_point measure_from, stop_at;
  // results
  std::vector<double> latency_ms;
  int64_t measured = 0, granted = 0, refused = 0, failed = 0;
  client::batching batched;  // over the whole run, warm-up included
  std::string error, first_failure;

  void run();

private:
  kj::Promise<void> loop(size_t conn);
  uint64_t next_id = 0;
  std::vector<link> links;
};

struct row;
// Runs the threads to the end and sums them into `r` over `seconds`: reservations,
// counted, rate and latency percentiles. A thread's error, or a reservation that was not
// granted, marks the row skipped with why.
void run_threads(std::vector<load_thread>& threads, double seconds, row& r);

// Opens a plain `client` to `address` (auto-batching on).
std::function<load_thread::link(kj::AsyncIoProvider&, kj::WaitScope&)> connect_to(const std::string& address);

}  // namespace holdfast::bench
