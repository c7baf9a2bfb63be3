// What `holdfast restore` tells the cluster before the restored directory ever starts: a
// hello as the restored member (with that member's certificate), carrying its new
// generation and lineage. Every member that accepts it records them durably and drops the
// connections of the process it replaces, so a member that was only frozen (SIGSTOP), not
// gone, is refused when it wakes, before it can acknowledge anything more.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/cluster_file.hpp"

namespace holdfast {

struct announcement {
  size_t accepted = 0;              // members that recorded the new generation
  std::vector<std::string> refused;  // why the others did not ("node 3: ...")
};

// Blocks up to `timeout_ms` per member; never throws.
announcement announce_generation(const cluster_config& cfg, uint32_t member, uint64_t generation,
                                 const std::string& lineage, int64_t timeout_ms);

}  // namespace holdfast
