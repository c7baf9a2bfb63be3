// The Raft server ids of a replicated cluster's replicas. A member's replica has the
// member's id (1-65535) in the low 16 bits and, above them, 0 for the replica the group was
// bootstrapped with, or for a replacement (`holdfast cluster replace`) the leader's last log
// index when it added it: a replacement never takes an id the group ever had, so a replica
// that was removed and comes back (a frozen process, a copy of its directory) is not in the
// group's configuration and is never counted (and its node's peers refuse its directory once
// the replacement's generation was announced). A replica's certificate is its member's.
#pragma once

#include <cstdint>

namespace holdfast {

constexpr uint64_t replica_id(uint32_t member, uint64_t sequence) { return sequence << 16 | member; }
constexpr uint32_t member_of_replica(uint64_t id) { return static_cast<uint32_t>(id & 0xffff); }
constexpr uint64_t sequence_of_replica(uint64_t id) { return id >> 16; }

}  // namespace holdfast
