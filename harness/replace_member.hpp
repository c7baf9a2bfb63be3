// Succeeding a lost member: what `holdfast restore`, `holdfast cluster replace` and the
// chaos nemesis's loss of a data directory share. The member must be gone (it does not
// answer and no peer has a live link to it); the directory that succeeds it gets a new
// generation, which the members record before it ever starts, so the lost process, if it
// was only frozen, is refused when it wakes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "client/client.hpp"
#include "client/cluster_file.hpp"
#include "persistence/identity.hpp"

namespace holdfast {

// What the other members say of `member` (their statuses): alive when it answers or any
// of them has a live link to it; else the newest generation of its directory any of them
// saw, and how many answered.
struct member_check {
  std::string alive;  // why the member counts as alive, or ""
  uint64_t generation_seen = 0;
  size_t answered = 0;
};
member_check ask_members(const cluster_config& cfg, uint32_t member, const client_options& options);

// Tells every member the new generation and lineage in `identity` before the directory
// ever starts. "" once a majority of the others recorded it (or `force`), else why not,
// ending with `otherwise` (what that leaves).
std::string announce_successor(const cluster_config& cfg, const directory_identity& identity, bool force,
                               int64_t timeout_ms, const std::string& otherwise);

// The member whose replica leads the SKU group, from the members' statuses (the newest
// term's); an election may be under way, so asked again for a few election timeouts. 0: none.
uint32_t find_raft_leader(const cluster_config& cfg, const client_options& options);

// Replaces member `node`'s lost replica of the SKU group with a new one at its addresses,
// through Raft's configuration change, while the group serves on:
//   1. `node` must be gone (ask_members; a majority of the others must answer, or `force`).
//   2. The leader removes its lost replica from the group and adds a new one, with an id
//      the group never had, as a spare (Inventory.replaceReplica).
//   3. `data_dir` (which must not exist or be empty) is made: its identity succeeds the
//      lost directory's (announce_successor) and it names the replica to join as
//      (group_replacement_file).
//   4. `start()` starts the node on it; its replica joins empty and the leader sends it the
//      group's state and log.
//   5. The leader makes it a voter once it caught up (Inventory.promoteReplica; libraft
//      gives up on a catch-up round without progress for 5 s: asked again until
//      `catch_up_limit`).
// A data_dir prepared by an earlier call that stopped midway is gone on with from step 4.
struct replace_options {
  uint32_t node = 0;
  std::string data_dir;
  bool force = false;
  client_options client;  // for the members' statuses and the leader's calls
  int64_t timeout_ms = 15'000;
  std::chrono::seconds catch_up_limit{600};
  bool running = false;           // the node runs already (on the prepared directory)
  std::function<void()> start;    // starts the node; throws with why
  std::function<void(const std::string&)> progress;  // a line per step; may be empty
};
struct replace_result {
  std::string status = "ok";  // else refused, unavailable, failed, forbidden (as the CLI says)
  std::string message;        // why not
  uint64_t replica = 0;       // the new replica's Raft id
  uint32_t leader = 0;        // the leader that made it a voter
};
replace_result replace_member(const cluster_config& cfg, const replace_options& options);

}  // namespace holdfast
