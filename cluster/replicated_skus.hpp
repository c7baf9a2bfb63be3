// The SKUs of a replicated cluster (a cluster file's replicas > 1) on this node: the one
// replica group's storage and Raft replica (cluster/group_storage.hpp) in DATA/group, its
// Raft traffic over mutual TLS on the member's `raft` address (cluster/raft_tls.hpp), the
// group's store actor, and a gate with the SKU directory's interface.
//
// While this node's replica serves as the group's leader (it applied every entry its log
// held when elected: replication/replica.hpp), the gate runs an SKU directory on the
// group's storage, started with the overdue-hold sweep a node's start runs, and hands it
// every call. When leadership ends the directory and its SKU actors stop (a write in
// flight is answered by the store: outcome_unknown, or unavailable when it was refused
// before being appended) and calls are answered unavailable, naming the leader this node
// knows. Carts and orders are not in the group: they stay on the node's own storage.
#pragma once

#include <memory>
#include <string>

#include <caf/actor_system.hpp>

#include "actors/sku_directory.hpp"
#include "client/cluster_file.hpp"
#include "client/status.hpp"
#include "cluster/group_storage.hpp"
#include "cluster/raft_tls.hpp"

namespace holdfast {

// In a node's data directory, written by `holdfast cluster replace`: the Raft id of the
// replica the node joins the group as (cluster/replica_ids.hpp), until its replica has a
// directory of its own.
constexpr const char* group_replacement_file = "group-replica";

struct replicated_skus_options {
  std::string dir;  // the group's directory (DATA/group)
  const cluster_config* cluster = nullptr;
  uint32_t self = 0;
  storage_options storage;  // path, sync, sizes; replicated mode is set here
  directory_config directory;
  std::shared_ptr<const wall_clock> clock;
  // DATA/group-replica: the replica `cluster replace` prepared, when it exists. It joins
  // the running group (the directory holds it afterwards and must agree). Absent: the
  // member's first replica.
  std::string replacement_file;
  // The members whose replicas it talks Raft with (cluster_role::raft_gate); null: all.
  std::shared_ptr<raft_peer_gate> gate;
};

class replicated_skus {
public:
  // Opens the group's storage, starts its replica and the gate; null with why on failure.
  static std::unique_ptr<replicated_skus> start(caf::actor_system& sys, const replicated_skus_options& options,
                                                std::string& error);
  // Stops the gate (and the directory it runs), closes the replica, then stops the store.
  ~replicated_skus();

  // What the node's RPC server and bridge call: the gate.
  directory_actor directory() const { return gate_; }
  // The leader this node knows (0: none): where the router sends SKU operations.
  uint32_t leader() const;
  // This node's replica, for Inventory.status (waits for the replica's thread).
  raft_group_status status();
  // Hands the group's leadership to member `to` when this node's replica leads:
  // `done(leader, refused)` once, on the replica's thread (see replica::transfer).
  void transfer(uint32_t to, std::function<void(uint32_t leader, std::string refused)> done);
  // When this node's replica leads: removes `member`'s lost replica from the group and adds
  // a new one at its address as a spare; `done(replica, refused)` once, on the replica's
  // thread, with the new replica's id (or the spare of `member` an earlier call added).
  void replace(uint32_t member, std::function<void(uint64_t replica, std::string refused)> done);
  // When leading: makes spare `replica` a voter once its log caught up with the leader's
  // (rounds of replication; libraft gives up on a round longer than 5 s: ask again).
  void promote(uint64_t replica, std::function<void(std::string refused)> done);
  std::shared_ptr<storage> store() const { return group_->store(); }
  // Test-only fault hook: the Raft links with these members are cut until the next call.
  void partition(const std::set<uint32_t>& peers) {
    connector_->partition(std::set<uint64_t>(peers.begin(), peers.end()));
  }

private:
  replicated_skus() = default;
  struct leadership;
  std::shared_ptr<leadership> leadership_;
  const cluster_config* cluster_ = nullptr;
  std::shared_ptr<raft_tls_connector> connector_;
  std::shared_ptr<group_storage> group_;
  store_actor store_;
  directory_actor gate_;
};

}  // namespace holdfast
