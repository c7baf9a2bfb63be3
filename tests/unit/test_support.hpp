// A whole node's actors on CAF's deterministic scheduler, over a real LMDB
// environment in a temporary directory. No threads, no sleeps: time moves only when a
// test advances it, and the wall clock the sku actors read moves with it.
#pragma once

#include <gtest/gtest.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "actors/cart.hpp"
#include "actors/sku_directory.hpp"

namespace holdfast::testing {

class temp_dir {
public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "holdfast-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~temp_dir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

private:
  std::string path_;
};

// Edits every copy of `record` in a data file (LMDB's copy-on-write leaves older
// versions of a page behind): `edit` gets the file's bytes and the copy's offset.
// Returns how many copies it found.
inline size_t edit_every_copy(const std::string& path, const std::string& record,
                              const std::function<void(std::string&, size_t)>& edit) {
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  size_t copies = 0;
  for (auto at = bytes.find(record); at != std::string::npos; at = bytes.find(record, at + 1)) {
    edit(bytes, at);
    ++copies;
  }
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  return copies;
}

class coordinator_clock final : public wall_clock {
public:
  explicit coordinator_clock(caf::scheduler::test_coordinator& sched)
    : sched_(sched), start_(sched.clock().now()) {}
  int64_t now_ms() const override {
    auto elapsed = sched_.clock().now() - start_;
    return base_ms + step_ms +
           std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
  }
  static constexpr int64_t base_ms = 1'800'000'000'000;
  int64_t step_ms = 0;  // a step of the wall clock (negative: set back), timers unaffected

private:
  caf::scheduler::test_coordinator& sched_;
  caf::actor_clock::time_point start_;
};

// An empty storage in `dir` (64 MiB map), for tests that drive books directly.
inline std::unique_ptr<storage> open_test_storage(const std::string& dir) {
  storage_options options;
  options.path = dir + "/data";
  options.map_size_bytes = size_t{64} << 20;
  std::string error;
  auto env = storage::open(options, error);
  EXPECT_TRUE(env) << error;
  return env;
}

struct node_config {
  storage_options storage;
  directory_config directory;
  int64_t cart_idle_ms = 60'000;
};

class node_fixture : public ::testing::Test {
protected:
  node_fixture() {
    cfg_.set("scheduler.policy", caf::atom("testing"));
    cfg_.set("logger.verbosity", caf::atom("quiet"));
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    sched_ = &dynamic_cast<caf::scheduler::test_coordinator&>(sys_->scheduler());
    clock_ = std::make_shared<coordinator_clock>(*sched_);
    config_.storage.path = dir_.path() + "/data";
    config_.storage.map_size_bytes = size_t{64} << 20;
    // Deterministic: no storage thread; snapshots every few hundred changes, collection
    // on the store's timer; closing is a crash (no snapshot), so restarts replay the log.
    config_.storage.background = false;
    config_.storage.snapshot_mutations = 256;
    config_.storage.overlay_mutations_max = 1024;
    config_.storage.log_segment_bytes = 64 << 10;
    config_.storage.snapshot_at_close = false;
    config_.storage.clock = clock_;
  }

  ~node_fixture() override { stop(); }

  // Opens the environment and spawns store and directory, as a node does on start.
  void start() {
    std::string error;
    env_ = std::shared_ptr<storage>(storage::open(config_.storage, error));
    ASSERT_TRUE(env_) << error;
    store_ = sys_->spawn(store_behavior, env_, store_config_);
    sku_context ctx;
    ctx.env = env_;
    ctx.store = store_;
    ctx.clock = clock_;
    claims_ = std::make_shared<hold_claims>(env_);
    ctx.claims = claims_;
    directory_ = sys_->spawn(directory_behavior, ctx, config_.directory);
    cart_context carts;
    carts.env = env_;
    carts.store = store_;
    carts.clock = clock_;
    carts.idle_ms = config_.cart_idle_ms;
    carts_ = sys_->spawn(cart_directory_behavior, carts);
    sched_->run();
  }

  // A crash: every actor and all memory gone; only what the log and the LMDB snapshot
  // hold remains (the test storage takes no snapshot at close).
  void stop() {
    if (!directory_) return;
    caf::anon_send_exit(directory_, caf::exit_reason::kill);
    caf::anon_send_exit(carts_, caf::exit_reason::kill);
    caf::anon_send_exit(store_, caf::exit_reason::kill);
    sched_->run();
    carts_ = nullptr;
    directory_ = nullptr;
    store_ = nullptr;
    claims_.reset();  // it holds the storage open
    env_.reset();
  }

  void restart() {
    stop();
    start();
    ASSERT_GE(call<int64_t>(recover_atom_v), 0);
  }

  template <class T, class... Ts>
  T call(Ts... xs) {
    caf::scoped_actor self{*sys_};
    auto handle = self->request(directory_, caf::infinite, xs...);
    sched_->run();
    T out{};
    bool answered = false;
    handle.receive([&](T& r) { out = std::move(r), answered = true; },
                   [&](caf::error& e) { ADD_FAILURE() << "error: " << sys_->render(e); });
    EXPECT_TRUE(answered);
    return out;
  }

  std::vector<cart_result> carts(std::vector<cart_op> xs) {
    caf::scoped_actor self{*sys_};
    auto handle = self->request(carts_, caf::infinite, cart_ops_atom_v, std::move(xs));
    sched_->run();
    std::vector<cart_result> out;
    handle.receive([&](std::vector<cart_result>& r) { out = std::move(r); },
                   [&](caf::error& e) { ADD_FAILURE() << "error: " << sys_->render(e); });
    return out;
  }
  int64_t cart_actors() {
    caf::scoped_actor self{*sys_};
    auto handle = self->request(carts_, caf::infinite, stats_atom_v);
    sched_->run();
    int64_t n = -1;
    handle.receive([&](int64_t r) { n = r; }, [&](caf::error&) {});
    return n;
  }

  std::vector<hold_result> ops(std::vector<hold_op> xs) {
    return call<std::vector<hold_result>>(hold_ops_atom_v, std::move(xs));
  }
  hold_result op(hold_op x) { return ops({std::move(x)}).at(0); }

  static hold_op reserve(std::string sku, std::string hold, int64_t qty, int64_t ttl_ms) {
    return {hold_op_kind::reserve, std::move(sku), std::move(hold), qty, ttl_ms, {}};
  }
  static hold_op confirm(std::string hold, std::string sku = {}) {
    return {hold_op_kind::confirm, std::move(sku), std::move(hold), 0, 0, {}};
  }
  static hold_op release(std::string hold, std::string sku = {}) {
    return {hold_op_kind::release, std::move(sku), std::move(hold), 0, 0, {}};
  }
  static hold_op query(std::string hold) {
    return {hold_op_kind::query, {}, std::move(hold), 0, 0, {}};
  }

  sku_result sku(sku_op_kind kind, std::string name, int64_t amount = 0, int64_t price = 0) {
    return call<sku_result>(sku_op_atom_v, sku_op{kind, std::move(name), amount, price, {}});
  }
  sku_info show(const std::string& name) { return sku(sku_op_kind::query, name).sku; }
  void create(const std::string& name, int64_t stock, int64_t price = 1000) {
    ASSERT_EQ(sku(sku_op_kind::create, name, stock, price).status, code::ok);
  }

  void advance_ms(int64_t ms) {
    sched_->advance_time(std::chrono::milliseconds(ms));
    sched_->run();
  }

  // Reserves batches of holds with 200-byte ids on `sku` until the store answers
  // storage_full (at most 50 batches); returns how many were granted, -1 if the map never
  // filled or another refusal came.
  int64_t fill_until_full(const std::string& sku, int64_t ttl_ms, int batch_size = 200) {
    std::string pad(200, 'x');
    int64_t granted = 0;
    for (int round = 0; round < 50; ++round) {
      std::vector<hold_op> batch;
      for (int i = 0; i < batch_size; ++i)
        batch.push_back(reserve(sku, pad + std::to_string(round * 1000 + i), 1, ttl_ms));
      bool full = false;
      for (auto& r : ops(batch)) {
        if (r.status == code::ok) ++granted;
        else if (r.status == code::storage_full) full = true;
        else return -1;
      }
      if (full) return granted;
    }
    return -1;
  }

  store_stats stats() {
    caf::scoped_actor self{*sys_};
    auto handle = self->request(store_, caf::infinite, stats_atom_v);
    sched_->run();
    store_stats out;
    handle.receive([&](store_stats& s) { out = s; }, [&](caf::error&) { ADD_FAILURE(); });
    return out;
  }

  temp_dir dir_;
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  caf::scheduler::test_coordinator* sched_;
  std::shared_ptr<coordinator_clock> clock_;
  node_config config_;
  store_config store_config_;
  std::shared_ptr<hold_claims> claims_;
  std::shared_ptr<storage> env_;
  store_actor store_;
  directory_actor directory_;
  cart_directory_actor carts_;
};

}  // namespace holdfast::testing
