// What a node says about itself and its peer links (Inventory.status), as plain structs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace holdfast {

struct link_status {
  uint32_t node = 0;
  std::string state;   // connecting, up, down, refused, partitioned
  std::string detail;  // why not up
  uint64_t incarnation = 0;
  int64_t rtt_us = 0;
  int64_t since_ms = 0;  // Unix ms of the last change
  uint64_t forwarded = 0;
  uint64_t downs = 0;
  uint64_t generation = 0;  // the peer's data directory generation
};

// The client connections the network thread accepted, refused and closed.
struct connection_counters {
  uint64_t open = 0, accepted = 0, refused = 0, closed_idle = 0, closed_frame = 0, closed_stalled = 0,
           closed_unfinished = 0, accept_errors = 0;
  uint64_t frames_refused = 0;       // over the read budget (--read-budget-mb)
  uint64_t frame_bytes_reading = 0;  // of frames begun and not yet whole
};

// A replicated cluster's: one node's replica of the SKU group (Raft).
struct raft_group_status {
  bool present = false;  // false: the SKUs are not replicated
  std::string state;     // follower, candidate, leader, unavailable
  bool serving = false;
  uint64_t term = 0, commit_index = 0, last_applied = 0;
  uint32_t leader = 0;   // 0: none known
  uint64_t snapshot_index = 0;    // its latest Raft snapshot's entry (0: none since it started)
  uint64_t snapshots_taken = 0, states_installed = 0;  // since it started
  uint64_t replica = 0;  // this node's replica's Raft id (cluster/replica_ids.hpp)
  struct follower {
    uint32_t node = 0;
    uint64_t match_index = 0, lag = 0;
    uint64_t replica = 0;
  };
  std::vector<follower> followers;  // when leading: every other replica in the group
  struct server {
    uint64_t replica = 0;
    uint32_t node = 0;
    std::string role, address;  // voter, standby, spare
  };
  std::vector<server> servers;  // the group's configuration as this replica has it
};

struct node_status {
  uint32_t node_id = 0;  // 0: not in a cluster
  uint64_t incarnation = 0;
  std::string cluster;
  std::string file_hash;
  int64_t skus_active = 0;
  uint64_t calls_total = 0;
  double calls_per_second = 0;
  uint64_t forwarded_total = 0;
  int64_t started_ms = 0;
  std::vector<link_status> links;
  std::string not_serving;  // "" while it serves
  uint64_t generation = 0;
  std::string cluster_id;
  std::string version;
  raft_group_status raft;
};

struct member_address {
  uint32_t id = 0;
  std::string client;
};

}  // namespace holdfast
