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
};

struct member_address {
  uint32_t id = 0;
  std::string client;
};

}  // namespace holdfast
