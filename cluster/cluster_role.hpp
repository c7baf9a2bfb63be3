// A node's place in its cluster: the cluster file (client/cluster_file.hpp), which member
// it is, and what its data directory's identity says.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "client/cluster_file.hpp"
#include "cluster/raft_peer_gate.hpp"
#include "persistence/identity.hpp"  // peer_record

namespace holdfast {

// This node's place in a cluster: the file every member shares and which member it is.
struct cluster_role {
  cluster_config config;
  uint32_t self = 0;
  uint64_t incarnation = 0;
  bool fault_hooks = false;  // test-only: faultPartition is served
  // The data directory's identity (persistence/identity.hpp): its generation (raised by
  // each restore), its lineage (a token per start), where it is, and what it last accepted
  // of each peer.
  uint64_t generation = 1;
  std::vector<std::string> lineage;
  std::string directory_id;
  std::string data_dir;
  std::map<uint32_t, peer_record> peer_records;
  // A replicated cluster's: the members this node's hellos accepted, whose replicas it
  // exchanges Raft traffic with (null: not replicated).
  std::shared_ptr<raft_peer_gate> raft_gate;
};

}  // namespace holdfast
