#include "cluster/group_storage.hpp"

#include <climits>
#include <cstdlib>
#include <future>

#include "protocol/log.hpp"

namespace holdfast {

std::unique_ptr<group_storage> group_storage::open(group_storage_options options,
                                                   replication::raft_connector& connector,
                                                   std::string& error) {
  std::unique_ptr<group_storage> g(new group_storage());
  options.storage.replicated = true;
  options.raft.dir = options.storage.path + "/raft";
  // No Raft snapshots yet (see the header): libraft would ask for one every 1024 entries.
  options.raft.snapshot_threshold = UINT_MAX;
  g->options_ = std::move(options);
  std::unique_ptr<storage> s = storage::open(g->options_.storage, error);
  if (!s) return nullptr;
  g->storage_ = std::move(s);
  try {
    g->host_ = std::make_unique<replication::raft_host>(g->options_.raft, *g, connector);
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
  g->storage_->attach(g.get());
  return g;
}

group_storage::~group_storage() {
  if (storage_) storage_->attach(nullptr);
  host_.reset();
}

void group_storage::apply(uint64_t index, std::string_view command) {
  if (!storage_->apply_committed(index, command))
    spdlog::error("group storage {}: entry {} is not a commit; skipped", storage_->path(), index);
}

std::string group_storage::snapshot() {
  // The threshold is at its maximum: libraft never asks (see the header).
  spdlog::critical("group storage {}: Raft asked for a snapshot, which this version does not take",
                   storage_->path());
  std::abort();
}

bool group_storage::restore(std::string_view) {
  // No replica takes Raft snapshots, so none is ever installed.
  spdlog::critical("group storage {}: offered a Raft snapshot, which this version cannot restore",
                   storage_->path());
  return false;
}

void group_storage::leading(uint64_t term) {
  if (options_.on_leading) options_.on_leading(term);
}

void group_storage::following() {
  if (options_.on_following) options_.on_following();
}

store_status group_storage::replicate(std::string payload) {
  auto answer = std::make_shared<std::promise<replication::outcome>>();
  auto outcome = answer->get_future();
  host_->submit(std::move(payload), [answer](replication::outcome o) { answer->set_value(o); });
  switch (outcome.get()) {
    case replication::outcome::committed: return store_status::ok;
    case replication::outcome::not_leader: return store_status::not_leader;
    case replication::outcome::outcome_unknown: return store_status::outcome_unknown;
    case replication::outcome::failed: return store_status::io_error;
  }
  return store_status::outcome_unknown;
}

}  // namespace holdfast
