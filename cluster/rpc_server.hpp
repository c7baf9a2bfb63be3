// The Cap'n Proto RPC server and its bridge into CAF.
//
// The server runs on its own network thread with a KJ event loop. A call is decoded
// there, handed to the bridge actor with anon_send together with a cross-thread
// fulfiller, and its promise resolves on the network thread when the bridge fulfils it.
// No CAF worker ever blocks on the network and the network thread never blocks on an
// actor. Only this file and rpc_server.cpp see both KJ and CAF.
#pragma once

#include <kj/async.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>

#include <caf/actor.hpp>

#include "actors/cart.hpp"
#include "actors/order.hpp"
#include "actors/sku_directory.hpp"
#include "client/status.hpp"
#include "cluster/cluster_role.hpp"
#include "cluster/roles.hpp"
#include "persistence/storage.hpp"
#include "protocol/kj_inbox.hpp"

namespace holdfast {

// Every limit the network edge enforces. What is admitted here bounds every queue behind
// it: the bridge's and directory's mailboxes and each sku actor's hold operations
// (operations in flight), and the answers waiting for a client (a client that does not
// read stops being read from, and is disconnected when its answers stall).
struct server_options {
  std::string listen = "127.0.0.1:7400";
  int64_t request_timeout_ms = 10'000;  // a call not answered by then: outcome_unknown
  size_t inflight_max = 100'000;        // operations in flight, node-wide; past it: OVERLOADED
  size_t connection_inflight_max = 16'384;  // operations in flight from one connection
  size_t connections_max = 1'024;       // open client connections; more are closed at once
  int64_t idle_timeout_ms = 300'000;    // a connection with nothing in flight and no bytes
                                        // for this long is closed
  int64_t frame_timeout_ms = 10'000;    // a frame begun but not finished within this: closed
  // Bytes of frames being read at once over every connection (cluster/frame_watcher.hpp);
  // a frame that would pass it closes its connection. At least one largest frame.
  uint64_t read_budget_mb = 256;
  int64_t write_stall_timeout_ms = 30'000;  // answers the client has not read for this long:
                                            // closed
  size_t connection_unfinished_max = 32'768;  // calls a client has not sent Finish for (their
                                              // answers are kept until it does): closed past it
  request_limits limits;
  // In a cluster: listen on the member's client and peer addresses (not `listen`),
  // route every call to its owner, and keep peer links. Null: a single node.
  std::shared_ptr<const cluster_role> cluster;
  // The node's SKU directory: hold operations go to it straight from the network thread,
  // and their answers come back from the SKU actors through a sink (actors/hold_sink.hpp),
  // not through the bridge.
  directory_actor directory;
  // Hold operations this node's order actors send to SKUs anywhere: run through the
  // router on the network thread. Null: none.
  std::shared_ptr<class node_hold_calls> outbound;
  // This node's order events (Inventory.orderEvents), read on the network thread. Null: none.
  std::function<order_event_page(uint64_t from, size_t limit)> order_events;
  std::function<order_page(const order_list_query& query)> list_orders;  // this node's orders
  // The HTTP endpoint (cluster/http_endpoint.hpp): empty: none.
  std::string http_listen;
  std::string webhook_secret;  // payment webhooks must be signed with it
  std::string version;  // the node's Holdfast version, for Inventory.status
  // Bearer tokens and their roles (--tokens); null: every connection may do everything.
  std::shared_ptr<const token_table> tokens;
  std::function<storage_stats()> read_storage_stats;  // for /metrics, any thread; empty: none
  std::function<storage_stats()> read_sku_group_stats;  // replicated SKUs' storage, likewise
  // Replicated SKUs (cluster/replicated_skus.hpp): the group's leader as this node knows it
  // (0: none), any thread. Empty: SKUs are placed over the nodes.
  std::function<uint32_t()> sku_leader;
  std::function<raft_group_status()> raft_status;  // the replica's, for Inventory.status
  std::function<void(const std::set<uint32_t>&)> raft_partition;  // the fault hook's cut of Raft links
  // Inventory.transferLeadership: `done(leader, refused)` once, from any thread.
  std::function<void(uint32_t to, std::function<void(uint32_t leader, std::string refused)> done)> raft_transfer;
  // Inventory.replaceReplica and .promoteReplica (replicated_skus::replace, ::promote):
  // `done` once, from any thread.
  std::function<void(uint32_t node, std::function<void(uint64_t replica, std::string refused)> done)> raft_replace;
  std::function<void(uint64_t replica, std::function<void(std::string refused)> done)> raft_promote;
};

// The order actors' way to SKUs (actors/order.hpp hold_calls): a call is queued and the
// network thread woken; it runs through the router (or this node's actors) there, and
// its answer is handed to `done` on the network thread. Calls made before the server
// runs wait for it; after it stopped, they are never answered (the order's step timeout
// counts them as unknown).
class node_hold_calls final : public hold_calls {
public:
  ~node_hold_calls() noexcept override;
  void holds(std::vector<hold_op> ops, std::function<void(std::vector<hold_result>)> done) override;
  struct call {
    std::vector<hold_op> ops;
    std::function<void(std::vector<hold_result>)> done;
  };
  kj_inbox<call>& inbox() { return inbox_; }

private:
  kj_inbox<call> inbox_;
};

// Spawns the bridge actor that turns directory replies into fulfilled KJ promises.
caf::actor spawn_bridge(caf::actor_system& sys, directory_actor directory, cart_directory_actor carts,
                        order_directory_actor orders);

class rpc_server {
public:
  rpc_server(caf::actor bridge, server_options options);
  ~rpc_server();
  // Starts the network thread and binds; returns "host:port" (the client address) or ""
  // with `error` set.
  std::string start(std::string& error);
  // "host:port" of the HTTP endpoint once started ("" without one).
  std::string http_address() const;
  // True when the network thread died after start (the node then gets SIGTERM).
  bool failed() const;
  // Stops accepting and closes every connection; joins the network thread.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace holdfast
