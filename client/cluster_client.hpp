// The cluster-aware client: one connection per member, and each call goes straight to
// the node that owns its SKU (placement.hpp), one hop, with the same auto-batching per
// connection as `client`. When the SKUs are replicated (the cluster file's replicas > 1, or
// the seed node's status says so) their calls go to the group's leader, learned from the
// members' status, checked every 2 s and looked for again when an SKU call answers
// `unavailable` or `outcome_unknown` (meanwhile they go to another member, which forwards
// them); retry such a call with the same hold id. Promises of calls must not outlive the
// client (their answers then say it is gone). A batch spanning owners is split and answered in order; a hold
// named without its SKU is looked for on every member. A member that cannot be reached
// answers `unavailable` and is redialed in the background on later calls. One thread's
// KJ event loop, like `client`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "client/client.hpp"
#include "client/cluster_file.hpp"

namespace holdfast {

class cluster_client {
public:
  // Members from a cluster file (TLS to clients when the file says so, with its CA).
  static kj::Promise<kj::Own<cluster_client>> connect(kj::AsyncIoProvider& io, const cluster_config& cfg,
                                                      client_options options = {});
  // Members fetched from any node.
  static kj::Promise<kj::Own<cluster_client>> discover(kj::AsyncIoProvider& io, const std::string& any_node,
                                                       client_options options = {});
  cluster_client(kj::AsyncIoProvider& io, std::vector<member_address> members, client_options options);
  ~cluster_client();

  kj::Promise<hold_result> reserve(const hold_op& op);
  kj::Promise<hold_result> confirm(const std::string& hold_id, const std::string& sku = {});
  kj::Promise<hold_result> release(const std::string& hold_id, const std::string& sku = {});
  kj::Promise<hold_result> query_hold(const std::string& hold_id, const std::string& sku = {});
  // Operations of one kind.
  kj::Promise<std::vector<hold_result>> submit(std::vector<hold_op> ops);
  // One SKU operation of any kind, or many creates.
  kj::Promise<std::vector<sku_result>> skus(std::vector<sku_op> ops);
  // One page of the catalog, asked of every member (see router::list_skus).
  kj::Promise<sku_page> list_skus(sku_list_query query);
  // Cart operations, each straight to its user's owner. The SKU of an add or set is not
  // checked on this path (a member taking the call checks it): use a node for that.
  kj::Promise<std::vector<cart_result>> carts(std::vector<cart_op> ops);
  // The member owning `sku` by placement (unreplicated SKUs; carts by user id alike).
  uint32_t owner(const std::string& sku) const;
  // Replicated SKUs: the leader this client sends SKU calls to (0: none known, or not
  // replicated).
  uint32_t sku_leader() const;
  const std::vector<member_address>& members() const;
  // Auto-batching over every member's connection so far.
  client::batching batched() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace holdfast
