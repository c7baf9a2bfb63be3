// Which members' replicas this node exchanges Raft traffic with: those whose node it has
// accepted (a hello with the same cluster file and a data directory whose generation and
// lineage it recognises: cluster/peer_links.hpp) over the link that is up now. A member is
// withdrawn when that link goes down or a hello claiming it is fenced while no link to it
// is up, and its Raft connections are cut then (the connector's `on_withdraw`). A member
// whose data directory was lost and that started again on an empty one (a new lineage,
// which the peers refuse) thus never reaches the group: its replica would come back with an
// empty log and could vote, having forgotten the entries and votes it gave. Such a member
// is replaced through the group instead (`holdfast cluster replace`). Any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <set>

#include <spdlog/spdlog.h>

namespace holdfast {

class raft_peer_gate {
public:
  void allow(uint32_t member) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (allowed_.insert(member).second) spdlog::info("raft: traffic with node {} allowed (its hello accepted)", member);
  }
  void withdraw(uint32_t member) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (allowed_.erase(member) == 0) return;
    }
    spdlog::info("raft: traffic with node {} stopped until a hello of it is accepted again", member);
    std::lock_guard<std::mutex> lock(callback_mutex_);
    if (on_withdraw_) on_withdraw_(member);
  }
  bool allows(uint32_t member) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return allowed_.count(member) > 0;
  }
  // Called (outside the gate's lock, on the withdrawing thread) with each member withdrawn;
  // set once, cleared (empty) before what it calls goes. Clearing waits for a call under way.
  void on_withdraw(std::function<void(uint32_t)> f) {
    std::lock_guard<std::mutex> lock(callback_mutex_);
    on_withdraw_ = std::move(f);
  }

private:
  mutable std::mutex mutex_;
  std::set<uint32_t> allowed_;
  std::mutex callback_mutex_;
  std::function<void(uint32_t)> on_withdraw_;
};

}  // namespace holdfast
