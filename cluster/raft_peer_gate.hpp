// Which members' replicas this node exchanges Raft traffic with: those whose node it has
// accepted in this run (a hello with the same cluster file and a data directory whose
// generation and lineage it recognises: cluster/peer_links.hpp) and has not refused since.
// A member whose data directory was lost and that started again on an empty one (a new
// lineage, which the peers refuse) thus never reaches the group: its replica would come
// back with an empty log and could vote, having forgotten the entries and votes it gave.
// Such a member is replaced through the group instead (`holdfast cluster replace`).
// Any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>

namespace holdfast {

class raft_peer_gate {
public:
  void accepted(uint32_t member) {
    std::lock_guard<std::mutex> lock(mutex_);
    allowed_.insert(member);
  }
  void refused(uint32_t member) {
    std::lock_guard<std::mutex> lock(mutex_);
    allowed_.erase(member);
  }
  bool allows(uint32_t member) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return allowed_.count(member) > 0;
  }

private:
  mutable std::mutex mutex_;
  std::set<uint32_t> allowed_;
};

}  // namespace holdfast
