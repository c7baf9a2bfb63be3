// Google Benchmark micro-benchmarks: the SKU state machine, the wire codec and the
// stored hold-log codec, the per-item costs under every batch the node serves.
#include <benchmark/benchmark.h>
#include <capnp/message.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "actors/sku_book.hpp"
#include "persistence/log.hpp"
#include "persistence/overlay.hpp"
#include "persistence/records.hpp"
#include "protocol/codec.hpp"
#include "protocol/inventory.capnp.h"

namespace holdfast {
namespace {

hold_op sample_op(int64_t i) {
  return {hold_op_kind::reserve, "flash-tee", "order-" + std::to_string(i), 1, 900'000, {}};
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

// A group commit's log payload: `range(0)` batches of one SKU with 16 new holds each (row
// 1b's shape), or of a new SKU alone (a batch create's) when range(1) is 0. The payload is
// built in buffers the thread reuses.
void log_commit_encode(benchmark::State& state) {
  auto n = static_cast<size_t>(state.range(0));
  size_t holds_per = static_cast<size_t>(state.range(1));
  std::vector<std::vector<mutation>> batches(n);
  for (size_t b = 0; b < n; ++b) {
    mutation sku;
    sku.kind = mutation::put_sku;
    sku.sku.sku.sku = "sku-" + std::to_string(b);
    sku.sku.sku.title = "A catalog title of some length";
    sku.sku.sku.on_hand = sku.sku.sku.stocked = 1'000;
    batches[b].push_back(sku);
    for (size_t i = 0; i < holds_per; ++i) {
      mutation h;
      h.kind = mutation::put_hold;
      h.hold.hold = {"3f2c8a1e-5b7d-4e0a-9c61-" + std::to_string(100'000'000'000 + b * holds_per + i),
                     sku.sku.sku.sku, 1, hold_state::active, 1'800'000'000'000};
      h.hold.ttl_ms = 900'000;
      batches[b].push_back(std::move(h));
    }
  }
  std::vector<std::vector<mutation>*> ptrs;
  for (auto& b : batches) ptrs.push_back(&b);
  size_t bytes = 0;
  for (auto _ : state) {
    auto payload = encode_commit(ptrs);
    bytes = payload.size();
    benchmark::DoNotOptimize(payload.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n * std::max<size_t>(1, holds_per)));
  state.counters["payload_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(log_commit_encode)->Args({1, 25})->Args({50, 16})->Args({1000, 0})->ArgNames({"batches", "holds"});

// An LMDB environment in a temporary directory, removed afterwards: the book's reads
// (hold index, finished holds) go to a real, empty database as on a fresh node.
struct scratch_env {
  std::string dir;
  std::unique_ptr<storage> env;
  explicit scratch_env(size_t map_bytes = size_t{64} << 20) {
    auto tmpl = (std::filesystem::temp_directory_path() / "holdfast-micro-XXXXXX").string();
    dir = mkdtemp(tmpl.data());
    storage_options options;
    options.path = dir + "/data";
    options.map_size_bytes = map_bytes;
    options.background = false;  // snapshots when the benchmark says
    options.overlay_mutations_max = size_t{1} << 30;
    options.snapshot_mutations = size_t{1} << 30;
    std::string error;
    env = storage::open(options, error);
  }
  ~scratch_env() {
    env.reset();
    std::filesystem::remove_all(dir);
  }
};

// One hot SKU with `standing` active holds (the flash-sale backlog), then per
// iteration: a message of `batch` reserves of new ids, sealed into its write batch, and
// a message releasing them, sealed. Items: hold operations.
void sku_book_reserve_release(benchmark::State& state) {
  auto batch = static_cast<size_t>(state.range(0));
  auto standing = static_cast<size_t>(state.range(1));
  scratch_env scratch;
  sku_book book("flash-tee", {});
  uint64_t seq = 0;
  const int64_t now_ms = 1'800'000'000'000;
  {
    sku_change c(++seq, now_ms, scratch.env.get());
    book.apply(sku_op{sku_op_kind::create, "flash-tee", int64_t{1} << 40, 1999, {}}, c);
    for (size_t i = 0; i < standing; ++i)
      book.apply(hold_op{hold_op_kind::reserve, "flash-tee", "standing-" + std::to_string(i), 1,
                         900'000, {}},
                 now_ms, c);
    book.seal(c);
    book.durable(seq);
  }
  std::vector<hold_op> reserves(batch), releases(batch);
  uint64_t next_id = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) {
      auto id = "order-" + std::to_string(next_id++);
      reserves[i] = {hold_op_kind::reserve, "flash-tee", id, 1, 900'000, {}};
      releases[i] = {hold_op_kind::release, "flash-tee", std::move(id), 0, 0, {}};
    }
    for (auto* ops : {&reserves, &releases}) {
      sku_change c(++seq, now_ms, scratch.env.get());
      c.mutations.reserve(batch + 1);
      std::vector<hold_result> results;
      results.reserve(batch);
      for (auto& op : *ops) results.push_back(book.apply(op, now_ms, c));
      benchmark::DoNotOptimize(book.seal(c));
      book.durable(seq);
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch * 2));
}
// Active hold ids accumulating (a flash sale's holds, all outstanding): inserts into a
// flat_string_map through every doubling, as the SKU book's active-id index grows.
void flat_map_accumulate(benchmark::State& state) {
  auto n = static_cast<size_t>(state.range(0));
  std::mt19937_64 rng(1);
  std::vector<std::string> ids(n);
  for (auto& id : ids) id = "3f2b8c1e-" + std::to_string(rng()) + "-4a6e-9c1d";
  struct active_hold {  // as the SKU book's
    int64_t qty, deadline_ms, ttl_ms, lease_ms;
  };
  for (auto _ : state) {
    flat_string_map<active_hold> active;
    for (auto& id : ids) active[id] = {1, 0, 0, 0};
    benchmark::DoNotOptimize(active.size());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}
BENCHMARK(flat_map_accumulate)->Arg(1 << 16)->Arg(1 << 20)->Unit(benchmark::kMillisecond);

// The reserve's one probe of the node-wide hold-id index (overlay::claim_hold): a fresh
// UUID-like id claimed among `standing` active ids (the table far larger than the cache
// at a million), then given back, as a refused reserve does. Items: claims.
void claim_hold_fresh(benchmark::State& state) {
  auto standing = static_cast<size_t>(state.range(0));
  overlay ov;
  auto a = ov.sku_number("flash-tee");
  std::mt19937_64 rng(3);
  std::string owner;
  auto uuid = [&rng] { return "3f2b8c1e-" + std::to_string(rng()) + "-4a6e-9c1d"; };
  for (size_t i = 0; i < standing; ++i) ov.claim_hold(uuid(), "flash-tee", a, owner);
  std::vector<std::string> ids(4096);
  for (auto _ : state) {
    state.PauseTiming();
    for (auto& id : ids) id = uuid();
    state.ResumeTiming();
    for (auto& id : ids) benchmark::DoNotOptimize(ov.claim_hold(id, "flash-tee", a, owner));
    for (auto& id : ids) ov.unclaim_hold(id, a);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * ids.size()));
}
BENCHMARK(claim_hold_fresh)->Arg(0)->Arg(1 << 20)->ArgNames({"standing"});

// SKU numbers for the index (name_table): a catalog's names interned, then looked up.
void name_table_intern(benchmark::State& state) {
  auto n = static_cast<size_t>(state.range(0));
  std::vector<std::string> names(n);
  for (size_t i = 0; i < n; ++i) names[i] = "catalog-sku-" + std::to_string(i);
  for (auto _ : state) {
    name_table t;
    for (auto& name : names) benchmark::DoNotOptimize(t.intern(name));
    for (auto& name : names) benchmark::DoNotOptimize(t.intern(name));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n * 2));
}
BENCHMARK(name_table_intern)->Arg(1 << 16)->Arg(1 << 20)->Unit(benchmark::kMillisecond);

BENCHMARK(sku_book_reserve_release)
  ->Args({1, 0})
  ->Args({64, 0})
  ->Args({512, 0})
  ->Args({512, 1'000'000})
  ->ArgNames({"batch", "standing"});

// Expiry: a message that finds `batch` holds past their deadline among `standing`.
void sku_book_expire(benchmark::State& state) {
  auto batch = static_cast<size_t>(state.range(0));
  scratch_env scratch;
  sku_book book("flash-tee", {});
  uint64_t seq = 0;
  int64_t now_ms = 1'800'000'000'000;
  {
    sku_change c(++seq, now_ms, scratch.env.get());
    book.apply(sku_op{sku_op_kind::create, "flash-tee", int64_t{1} << 40, 1999, {}}, c);
    book.seal(c);
  }
  uint64_t next_id = 0;
  for (auto _ : state) {
    state.PauseTiming();
    {
      sku_change c(++seq, now_ms, scratch.env.get());
      for (size_t i = 0; i < batch; ++i)
        book.apply(hold_op{hold_op_kind::reserve, "flash-tee", "o-" + std::to_string(next_id++),
                           1, 1000, {}},
                   now_ms, c);
      book.seal(c);
      book.durable(seq);
    }
    now_ms += 1000;
    state.ResumeTiming();
    sku_change c(++seq, now_ms, scratch.env.get());
    book.expire_due(now_ms, c);
    benchmark::DoNotOptimize(book.seal(c));
    book.durable(seq);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
}
BENCHMARK(sku_book_expire)->Arg(64)->Arg(1024);


// The log alone: one record of `bytes` appended and fdatasync'd per iteration (a group
// commit's cost on this disk, flat in the record's size up to a few pages).
void log_append(benchmark::State& state) {
  auto tmpl = (std::filesystem::temp_directory_path() / "holdfast-micro-XXXXXX").string();
  std::string dir = mkdtemp(tmpl.data());
  log_options options;
  options.directory = dir + "/log";
  options.directory_id = "micro";
  log_recovery recovery;
  std::string error;
  auto log = node_log::open(options, 0, [](uint64_t, std::string_view, std::string&) { return true; },
                            recovery, error);
  std::string payload(static_cast<size_t>(state.range(0)), 'p');
  uint64_t seq = 0;
  for (auto _ : state)
    if (log->append(payload, seq, error) != store_status::ok) state.SkipWithError(error.c_str());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
  log.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(log_append)->Arg(256)->Arg(16 << 10)->Arg(256 << 10)->UseRealTime();

// The snapshot writer: `n` reserves with UUID-like ids on one hot SKU committed to the
// log (setup, not timed), then one snapshot of them written to LMDB (timed), on top of
// the snapshots of the iterations before. Items: holds written.
void snapshot_writer(benchmark::State& state) {
  auto n = static_cast<size_t>(state.range(0));
  scratch_env scratch(size_t{4} << 30);
  std::mt19937_64 rng(42);
  sku_record sku;
  sku.sku.sku = "flash-tee";
  sku.sku.on_hand = sku.sku.stocked = int64_t{1} << 40;
  uint64_t writer = 1;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<mutation> batch;
    for (size_t i = 0; i < n; ++i) {
      char id[40];
      snprintf(id, sizeof id, "%016llx-%016llx", static_cast<unsigned long long>(rng()),
               static_cast<unsigned long long>(rng()));
      hold_record h;
      h.hold = {id, "flash-tee", 1, hold_state::active, 1'800'000'000'000};
      h.ttl_ms = 900'000;
      batch.push_back(mutation{mutation::put_hold, {}, h, {}});
    }
    sku.sku.reserved += static_cast<int64_t>(n);
    sku.sku.active_holds += static_cast<int64_t>(n);
    batch.push_back(mutation{mutation::put_sku, sku, {}, {}});
    std::vector<store_status> status;
    scratch.env->commit({{&batch, writer}}, status);
    state.ResumeTiming();
    if (scratch.env->snapshot_now() != store_status::ok) {
      state.SkipWithError("snapshot failed");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n));
}
BENCHMARK(snapshot_writer)->Arg(1024)->Arg(65536)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace holdfast

BENCHMARK_MAIN();
