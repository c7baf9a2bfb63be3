#include "persistence/active_hold_loader.hpp"

namespace holdfast {

active_hold_loader::active_hold_loader(const lmdb_env& env, overlay& ov, bool read_only)
  : env_(env), overlay_(ov), read_only_(read_only), thread_([this] { run(); }) {}

active_hold_loader::~active_hold_loader() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    chunks_.clear();
    done_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void active_hold_loader::add(const sku_record& r) {
  if (r.sku.active_holds <= 0) return;
  filling_.names.push_back(r.sku.sku);
  filling_.counts.push_back(r.sku.active_holds);
  if (filling_.names.size() >= chunk_size) hand_over();
}

std::string active_hold_loader::finish() {
  if (thread_.joinable()) {
    hand_over();
    {
      std::lock_guard<std::mutex> guard(mutex_);
      done_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  return error_;
}

void active_hold_loader::hand_over() {
  if (filling_.names.empty()) return;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    chunks_.push_back(std::move(filling_));
  }
  filling_ = {};
  wake_.notify_one();
}

void active_hold_loader::run() {
  try {
    read_chunks();
  } catch (const std::exception& e) {
    if (error_.empty()) error_ = std::string("indexing the active holds: ") + e.what();
    drain();
  }
}

void active_hold_loader::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    chunks_.clear();
    if (done_) return;
    wake_.wait(lock);
  }
}

void active_hold_loader::read_chunks() {
  overlay::active_batch batch;
  for (;;) {
    chunk c;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return done_ || !chunks_.empty(); });
      if (chunks_.empty()) return;
      c = std::move(chunks_.front());
      chunks_.pop_front();
    }
    if (!error_.empty()) continue;  // a writer's open fails: the scan still runs to its end
    batch.clear();
    if (read(c, batch)) overlay_.index_active(batch);
  }
}

bool active_hold_loader::read(const chunk& c, overlay::active_batch& batch) {
  size_t n = 0;
  auto st = env_.read_active_hold_ids_of(
    c.names, [&](const std::string& name, store_status hs, const std::vector<std::string_view>& holds) {
      auto expected = c.counts[n++];
      if (hs != store_status::ok) {
        if (read_only_) return true;
        error_ = "sku '" + name + "': its active holds cannot be read: " + to_string(hs);
        return false;
      }
      // Record and hold log are written in one transaction: a hold log that reads "ok"
      // with another count has lost blocks (damage), and an id it lost would not be
      // indexed. (`check`, which opens read-only, reports it.)
      if (static_cast<int64_t>(holds.size()) != expected && !read_only_) {
        error_ = "sku '" + name + "': its record says " + std::to_string(expected) +
                 " active holds, its hold log has " + std::to_string(holds.size());
        return false;
      }
      auto number = overlay_.sku_number(name);
      for (auto id : holds) batch.add(id, number);
      return true;
    });
  if (st != store_status::ok && !read_only_ && error_.empty())
    error_ = std::string("reading the active holds: ") + to_string(st);
  return error_.empty();
}

}  // namespace holdfast
