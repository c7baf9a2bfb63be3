#include "bench/load.hpp"

#include <cstdio>
#include <memory>

#include <thread>

#include "bench/rows.hpp"
#include "client/client.hpp"

namespace holdfast::bench {

std::string uuid_v4(std::mt19937_64& rng) {
  uint64_t hi = rng(), lo = rng();
  hi = (hi & ~uint64_t{0xf000}) | 0x4000;                            // version 4
  lo = (lo & ~(uint64_t{0xc} << 60)) | (uint64_t{0x8} << 60);        // variant 10
  // Hex by hand: snprintf was 5% of the load generator's CPU in row 1b.
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(36, '-');
  size_t at = 0;
  auto put = [&](uint64_t v, int nibbles) {
    for (int i = nibbles - 1; i >= 0; --i) out[at++] = digits[(v >> (4 * i)) & 0xf];
  };
  put(hi >> 32, 8), ++at;
  put(hi >> 16, 4), ++at;
  put(hi, 4), ++at;
  put(lo >> 48, 4), ++at;
  put(lo, 12);
  return out;
}

kj::Promise<void> load_thread::loop(size_t conn) {
  auto t0 = steady::now();
  if (t0 >= stop_at) return kj::READY_NOW;
  auto hold_id = uuid_ids ? uuid_v4(rng) : prefix + std::to_string(next_id++);
  auto& sku = skus.size() == 1 ? skus[0] : skus[rng() % skus.size()];
  hold_op op{hold_op_kind::reserve, sku, std::move(hold_id), 1, ttl_ms, {}};
  return links[conn].send(op).then([this, conn, t0](hold_result r) {
    if (r.status == code::ok) {
      ++granted;
      if (t0 >= measure_from) {
        ++measured;
        latency_ms.push_back(std::chrono::duration<double, std::milli>(steady::now() - t0).count());
      }
    } else if (r.status == code::out_of_stock) {
      ++refused;
    } else {
      if (first_failure.empty()) first_failure = std::string(to_string(r.status)) + " " + r.message;
      ++failed;
    }
    return loop(conn);
  });
}

void load_thread::run() {
  try {
    auto io = kj::setupAsyncIo();
    // The clients go before their event loop, also when the node died mid-run (a client
    // destroyed after its loop aborted the bench with EBADF from epoll_ctl).
    KJ_DEFER(links.clear());
    for (int i = 0; i < connections; ++i) links.push_back(open(*io.provider, io.waitScope));
    auto loops = kj::heapArrayBuilder<kj::Promise<void>>(static_cast<size_t>(callers * depth));
    for (int c = 0; c < callers; ++c)
      for (int d = 0; d < depth; ++d)
        loops.add(loop(static_cast<size_t>(c) % links.size()).eagerlyEvaluate(nullptr));
    kj::joinPromises(loops.finish()).wait(io.waitScope);
    for (auto& l : links)
      if (l.batched) {
        auto b = l.batched();
        batched.batches += b.batches;
        batched.ops += b.ops;
      }
    links.clear();
  } catch (const kj::Exception& e) {
    error = e.getDescription().cStr();
  } catch (const std::exception& e) {
    error = e.what();
  }
}

void run_threads(std::vector<load_thread>& threads, double seconds, row& r) {
  std::vector<std::thread> running;
  for (auto& lt : threads) running.emplace_back([&lt] { lt.run(); });
  for (auto& th : running) th.join();
  std::vector<double> latencies;
  for (auto& lt : threads) {
    if (!lt.error.empty()) r.skipped = "load generator: " + lt.error;
    r.reservations += lt.measured;
    r.counted += lt.granted;
    r.batches += static_cast<int64_t>(lt.batched.batches);
    r.batched_ops += static_cast<int64_t>(lt.batched.ops);
    latencies.insert(latencies.end(), lt.latency_ms.begin(), lt.latency_ms.end());
    if (lt.failed || lt.refused)
      r.skipped = std::to_string(lt.failed + lt.refused) + " reservations were not granted" +
                  (lt.first_failure.empty() ? "" : ", e.g. " + lt.first_failure);
  }
  r.ran = r.skipped.empty();
  r.seconds = seconds;
  r.per_second = static_cast<double>(r.reservations) / seconds;
  summarize(latencies, r);
}

std::function<load_thread::link(kj::AsyncIoProvider&, kj::WaitScope&)> connect_to(const std::string& address) {
  return [address](kj::AsyncIoProvider& io, kj::WaitScope& ws) -> load_thread::link {
    auto c = std::make_shared<kj::Own<client>>(client::connect(io, address).wait(ws));
    return {[c](const hold_op& op) { return (*c)->reserve(op); }, [c] { return (*c)->batched(); }};
  };
}

}  // namespace holdfast::bench
