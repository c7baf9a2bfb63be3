// Google Benchmark micro-benchmarks: the wire codec and the stored hold-log codec, the
// per-item costs under every batch the node serves.
#include <benchmark/benchmark.h>
#include <capnp/message.h>

#include "persistence/records.hpp"
#include "protocol/codec.hpp"
#include "protocol/inventory.capnp.h"

namespace holdfast {
namespace {

hold_op sample_op(int64_t i) {
  return {hold_op_kind::reserve, "flash-tee", "order-" + std::to_string(i), 1, 900'000};
}

void reserve_batch_round_trip(benchmark::State& state) {
  auto n = static_cast<unsigned>(state.range(0));
  std::vector<hold_op> ops;
  for (unsigned i = 0; i < n; ++i) ops.push_back(sample_op(i));
  for (auto _ : state) {
    capnp::MallocMessageBuilder message;
    auto list = message.initRoot<wire::Inventory::ReserveBatchParams>().initRequests(n);
    for (unsigned i = 0; i < n; ++i) codec::write(list[i], ops[i]);
    std::vector<hold_op> back;
    back.reserve(n);
    for (auto r : list.asReader()) back.push_back(codec::read_reserve(r));
    benchmark::DoNotOptimize(back.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n);
}
BENCHMARK(reserve_batch_round_trip)->Arg(1)->Arg(64)->Arg(1024);

void hold_result_round_trip(benchmark::State& state) {
  hold_result r;
  r.hold = {"order-17", "flash-tee", 1, hold_state::active, 1'800'000'000'000};
  for (auto _ : state) {
    capnp::MallocMessageBuilder message;
    auto b = message.initRoot<wire::HoldResult>();
    codec::write(b, r);
    benchmark::DoNotOptimize(codec::read(b.asReader()));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(hold_result_round_trip);

void hold_log_block(benchmark::State& state) {
  auto n = static_cast<size_t>(state.range(0));
  std::vector<hold_record> holds(n);
  std::vector<const hold_record*> ptrs;
  for (size_t i = 0; i < n; ++i) {
    holds[i].hold = {"order-" + std::to_string(i), "flash-tee", 1, hold_state::active,
                     1'800'000'000'000 + static_cast<int64_t>(i)};
    holds[i].ttl_ms = 900'000;
    ptrs.push_back(&holds[i]);
  }
  std::vector<hold_record> back;
  for (auto _ : state) {
    auto bytes = encode_block(ptrs);
    back.clear();
    benchmark::DoNotOptimize(decode_block(bytes.data(), bytes.size(), "flash-tee", back));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n));
}
BENCHMARK(hold_log_block)->Arg(1)->Arg(64)->Arg(1024);

}  // namespace
}  // namespace holdfast

BENCHMARK_MAIN();
