// The Inventory service (protocol/inventory.capnp) a connection is given: every client
// call, decoded on the network thread, admitted against the node's and the connection's
// limits (operations in flight), run on this node's actors or routed to the owner, and
// encoded back. Also what every connection of a server shares (network_context).
// Network thread only.
#pragma once

#include <deque>
#include <list>
#include <memory>
#include <set>
#include <string>

#include "cluster/connection.hpp"
#include "cluster/local_node.hpp"
#include "cluster/metrics.hpp"
#include "cluster/peer_links.hpp"
#include "client/router.hpp"
#include "protocol/inventory.capnp.h"

namespace holdfast::net {

// One entry per method of the Inventory interface, named as in the schema.
std::vector<rpc_call_counts> rpc_methods();

// What every connection of a server shares; network thread only.
struct network_context {
  local_node local;
  const server_options& options;
  size_t inflight_ops = 0;
  uint64_t calls_total = 0;
  hold_call_metrics holds;  // /metrics
  std::vector<rpc_call_counts> rpc_calls = rpc_methods();  // by method id, /metrics
  uint64_t forbidden_total = 0;   // calls refused for the connection's role
  uint64_t logins_refused = 0;    // unknown tokens
  std::deque<std::pair<int64_t, uint64_t>> samples;  // (steady ms, calls_total)
  int64_t started_ms = 0;
  // In a cluster only.
  const cluster_role* role = nullptr;
  peer_links* links = nullptr;
  router* route = nullptr;
  // Inbound peer connections; `from` is set by an accepted hello.
  struct inbound {
    uint32_t from = 0;
    kj::Own<kj::PromiseFulfiller<void>> close;
    std::string source;           // the dialer's host
    bool handshaken = false;      // TLS done: it holds a certificate of the cluster CA
    std::shared_ptr<bool> heard = std::make_shared<bool>(false);  // a byte arrived
    void drop() {
      if (!close) return;
      auto c = kj::mv(close);
      c->fulfill();
    }
  };
  std::list<std::shared_ptr<inbound>> peers_in;

  network_context(caf::actor bridge, kj::Timer& timer, const server_options& o)
    : local{std::move(bridge), o.directory, timer, o.request_timeout_ms}, options(o) {}

  void sample(int64_t now_ms) {
    samples.emplace_back(now_ms, calls_total);
    while (samples.size() > 2 && now_ms - samples[1].first >= 1000) samples.pop_front();
  }
  double calls_per_second() const {
    if (samples.size() < 2) return 0;
    auto& a = samples.front();
    auto& b = samples.back();
    return b.first > a.first ? (b.second - a.second) * 1000.0 / (b.first - a.first) : 0;
  }
  // This node's own page of the catalog; a node that may not serve answers none, and says
  // why in `partial`.
  kj::Promise<sku_page> local_list(sku_list_query query) {
    auto who = "node " + std::to_string(role ? role->self : 0);
    if (links) {
      if (auto why = links->not_serving(); !why.empty()) {
        sku_page p;
        p.partial = who + ": " + why;
        return p;
      }
    }
    return local.list(std::move(query)).then([who](sku_page p) {
      if (!p.partial.empty()) p.partial = who + ": " + p.partial;
      return p;
    });
  }
  // The SKU directory's counters (Inventory.status, /metrics): one request to the
  // directory at a time, its answer shared by every caller that asked meanwhile, so a
  // flood of status calls (each cancelled at once by its Finish) cannot fill the
  // directory's mailbox and starve the calls behind them.
  kj::Promise<directory_stats> directory_counters() {
    auto paf = kj::newPromiseAndFulfiller<directory_stats>();
    stats_waiters.push_back(kj::mv(paf.fulfiller));
    if (stats_waiters.size() == 1)
      stats_request = local.stats()
                        .then([this](directory_stats s) { answer_stats_waiters(s); },
                              // A failed request answers as a directory that could not be asked
                              // does, and the next caller asks again.
                              [this](kj::Exception&&) { answer_stats_waiters(directory_stats{-1, 0, 0, 0}); })
                        .eagerlyEvaluate(nullptr);
    return kj::mv(paf.promise);
  }
  void answer_stats_waiters(const directory_stats& s) {
    auto waiters = std::move(stats_waiters);
    stats_waiters.clear();
    for (auto& w : waiters) w->fulfill(directory_stats(s));
  }
  std::vector<kj::Own<kj::PromiseFulfiller<directory_stats>>> stats_waiters;
  kj::Promise<void> stats_request = kj::READY_NOW;

  void close_peers(const std::set<uint32_t>& from) {
    for (auto& p : peers_in)
      if (from.count(p->from) && p->close) {
        auto close = kj::mv(p->close);
        close->fulfill();
      }
  }
};

// The Inventory object of one connection (`from_peer`: a member's forwarded calls, which
// the per-connection limit does not apply to).
kj::Own<wire::Inventory::Server> make_inventory(network_context& net, connection_ptr conn, bool from_peer);

}  // namespace holdfast::net
