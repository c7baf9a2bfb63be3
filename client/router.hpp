// Routing: any node accepts any call and sends each operation to the node that owns its
// SKU (placement.hpp). A batch spanning owners is split, the parts go out in parallel
// (the local part to this node's actors, the rest over the transport), and the answers
// come back in the caller's order. A hold named without its SKU is looked up on every
// node first; a confirm or release then goes to the one node that has it (hold ids are
// unique per node, not across the cluster: an id found on several nodes, or found while
// a node could not be asked, is refused rather than acted on). Network thread only.
#pragma once

#include <kj/async.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "protocol/orders.hpp"
#include "client/placement.hpp"
#include "protocol/domain.hpp"

namespace holdfast {

// Boundary 1 of ARCHITECTURE.md: "deliver this batch to node N". The real one is
// peer_links (Cap'n Proto over mutual TLS); tests put a simulated network here.
class transport {
public:
  virtual ~transport() = default;
  // Operations of one kind for `node`; one answer each, in order. Never rejects: a node
  // that is down answers `unavailable` at once, and a batch in flight when its link
  // dies answers `outcome_unknown` (queries: `unavailable`); nothing is retried elsewhere.
  virtual kj::Promise<std::vector<hold_result>> hold_ops(uint32_t node, std::vector<hold_op> ops) = 0;
  // One operation of any kind, or many creates.
  virtual kj::Promise<std::vector<sku_result>> sku_ops(uint32_t node, std::vector<sku_op> ops) = 0;
  // `node`'s own page of the catalog. Never rejects: a node that cannot be asked answers
  // a page with `partial` naming it.
  virtual kj::Promise<sku_page> list_skus(uint32_t node, sku_list_query query) = 0;
  // Cart operations of users `node` owns.
  virtual kj::Promise<std::vector<cart_result>> cart_ops(uint32_t node, std::vector<cart_op> ops) = 0;
  // Order operations of orders `node` owns.
  virtual kj::Promise<std::vector<order_result>> order_ops(uint32_t node, std::vector<order_op> ops) = 0;
};

// This node's own actors, with the same contracts as the transport's.
struct local_calls {
  std::function<kj::Promise<std::vector<hold_result>>(std::vector<hold_op>)> holds;
  std::function<kj::Promise<std::vector<sku_result>>(std::vector<sku_op>)> skus;
  std::function<kj::Promise<sku_page>(sku_list_query)> list;
  std::function<kj::Promise<std::vector<cart_result>>(std::vector<cart_op>)> carts;
  std::function<kj::Promise<std::vector<order_result>>(std::vector<order_op>)> orders;
};

class router {
public:
  // `self` 0: no local node (a cluster-aware client); every part goes over `remote`.
  router(placement where, uint32_t self, transport& remote, local_calls local);
  // Operations of one kind.
  kj::Promise<std::vector<hold_result>> holds(std::vector<hold_op> ops);
  kj::Promise<std::vector<sku_result>> skus(std::vector<sku_op> ops);
  // One page of the whole catalog: every member's page, merged in name order.
  kj::Promise<sku_page> list_skus(sku_list_query query);
  // Cart operations, each to its user's owner.
  kj::Promise<std::vector<cart_result>> carts(std::vector<cart_op> ops);
  // Order operations, each to its order's owner.
  kj::Promise<std::vector<order_result>> orders(std::vector<order_op> ops);
  // The owner of an entity key: an SKU's name, a user id.
  uint32_t owner(const std::string& key) const { return where_.owner(key); }
  // Replicated mode (a cluster file's replicas > 1): every SKU belongs to the one replica
  // group, whose leader owns them all; `leader()` is the node this node last knew as its
  // leader (0: none known). SKU operations (lookups of holds named without their SKU
  // included: the leader has every hold) and catalog pages then go to it; carts and
  // orders keep their placement.
  void lead_skus_by(std::function<uint32_t()> leader) { sku_leader_ = std::move(leader); }
  bool replicated_skus() const { return bool(sku_leader_); }
  static constexpr uint32_t no_owner = UINT32_MAX;  // replicated, no leader known
  uint32_t sku_owner(const std::string& sku) const;
  uint32_t self() const { return self_; }
  uint64_t forwarded() const { return forwarded_; }  // operations sent to other nodes

private:
  placement where_;
  uint32_t self_;
  transport& remote_;
  local_calls local_;
  std::function<uint32_t()> sku_leader_;
  uint64_t forwarded_ = 0;
};

// How answers from every node to one hold looked up everywhere combine into one: the
// node that has the hold wins; else a lost answer (the hold may have changed there),
// else a node that could not be asked, else unknown_hold.
hold_result combine_lookups(const std::vector<hold_result>& answers);

// Members' pages of one query merged: each holds its first `limit` names after the
// cursor, so the first `limit` of their union are the catalog's. `next` is set when any
// member has more; `partial` names every member that could not be asked.
sku_page merge_pages(std::vector<sku_page> pages, uint32_t limit);

}  // namespace holdfast
