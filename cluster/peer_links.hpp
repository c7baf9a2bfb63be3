// Peer links: the real transport (router.hpp). One Cap'n Proto connection to each other
// member, dialed by this node over mutual TLS, on the network thread. A link opens with
// a hello that carries the cluster file's hash (a mismatch is refused and logged on both
// sides); forwarded operations ride the client library's auto-batching (a batch leaves at
// once when the link is idle, else coalesces behind the ones in flight, up to
// peer_batch_max operations); heartbeats every heartbeat_interval_ms. A link with a
// heartbeat unanswered for down_after_ms, or whose connection drops, is down: calls in
// flight on it answer outcome_unknown, new calls for that node answer unavailable at once,
// and it redials with jittered, doubling backoff until the node is back.
//
// Membership: a node serves entities only once a peer has accepted its hello in this run
// (the same cluster file, and a data directory whose generation and lineage the peer
// recognises), and never while a peer fences it: a refusal about this very process or
// directory (a live duplicate, a replaced generation, a lineage another copy ran past),
// which counts until that peer accepts it again. A confirmed node that later reaches no
// peer at all keeps serving its own SKUs; calls for other nodes' SKUs answer unavailable.
// A node that no peer ever confirmed serves nothing, however it was started: it cannot
// tell a cold start from a stale copy cut off from its cluster.
#pragma once

#include <kj/async-io.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cluster/cluster_role.hpp"
#include "client/router.hpp"
#include "client/status.hpp"

namespace kj {
class TlsContext;
}

namespace holdfast {

// What a dialing member says in its hello, with what this node knows of it.
struct hello_claim {
  std::string cluster, file_hash;
  uint32_t from = 0, to = 0;
  uint64_t incarnation = 0;
  std::string certificate_name;  // from its TLS certificate
  uint64_t live_incarnation = 0;  // peer_links::live_incarnation(from)
};
// Why a hello is refused ("" when it is not), and whether the refusal fences the caller:
// it is about that process or directory, not about the cluster file.
struct hello_verdict {
  std::string refused;
  bool fenced = false;
};
// The checks that need nothing remembered (the lineage is checked apart: it is recorded).
hello_verdict judge_hello(const cluster_role& role, const hello_claim& hello);

class peer_links final : public transport {
public:
  // `tls` null: plaintext (only when the file allows it). Every reference must outlive this.
  peer_links(kj::AsyncIoProvider& io, const cluster_role& role, kj::TlsContext* tls);
  ~peer_links();
  void start();  // dials every other member

  kj::Promise<std::vector<hold_result>> hold_ops(uint32_t node, std::vector<hold_op> ops) override;
  kj::Promise<std::vector<sku_result>> sku_ops(uint32_t node, std::vector<sku_op> ops) override;
  kj::Promise<sku_page> list_skus(uint32_t node, sku_list_query query) override;
  kj::Promise<std::vector<cart_result>> cart_ops(uint32_t node, std::vector<cart_op> ops) override;
  kj::Promise<std::vector<order_result>> order_ops(uint32_t node, std::vector<order_op> ops) override;

  std::vector<link_status> status() const;
  // "" while this node may serve entities; else why not (joining, or refused).
  std::string not_serving() const;
  // Resolves once every link has made its first attempt (up, refused or failed).
  kj::Promise<void> joined();
  // The incarnation of `node` while a link to it is up (heartbeats answered), else 0: a
  // hello from another process claiming that id is then refused.
  uint64_t live_incarnation(uint32_t node) const;
  // Checks the generation and lineage `node` presents (a hello either way) against what
  // this node last accepted of it, and records them durably when accepted. A newer
  // generation (a restore) supersedes every other connection of that node.
  hello_verdict accept_lineage(uint32_t node, uint64_t generation, const std::string& lineage);
  // This node's lineage, as a hello carries it.
  std::string lineage_text() const;
  // Called with a member whose generation was superseded: its inbound connections go.
  std::function<void(uint32_t)> on_superseded;
  // Test-only fault hook: drop the links to `peers` and refuse to redial them until the
  // set changes (the server side refuses their hellos: see rpc_server).
  void partition(const std::set<uint32_t>& peers);
  bool partitioned(uint32_t peer) const { return partitioned_.count(peer) > 0; }

private:
  struct link;
  kj::Promise<void> run(link& l);
  kj::Promise<void> dial(link& l);
  kj::Promise<std::string> watch(link& l);
  kj::Promise<std::string> heartbeats(link& l);
  void teardown(link& l, const std::string& why, bool refused);
  void set_state(link& l, const char* state, const std::string& detail);
  link* find(uint32_t node);
  std::string why_not_up(uint32_t node, const link* l) const;

  void first_attempt_done(link& l);
  hello_verdict judge_lineage(uint32_t node, uint64_t generation, const std::string& lineage);

  kj::AsyncIoProvider& io_;
  const cluster_role& role_;
  const cluster_config& cfg_;
  uint32_t self_;
  uint64_t incarnation_;
  std::map<uint32_t, peer_record> records_;  // what this node last accepted of each member
  bool confirmed_ = false;  // a peer accepted this node's hello in this run (and since the
                            // last freeze)
  int64_t last_tick_ms_ = 0;  // steady clock, every down_after_ms / 5: a longer gap than
                              // down_after_ms is a freeze
  uint64_t freezes_ = 0;      // freezes seen; a hello answered across one does not confirm
  kj::Promise<void> watch_freezes();
  size_t unattempted_ = 0;
  struct join_state;  // resolved when every link made its first attempt
  std::unique_ptr<join_state> join_;
  kj::TlsContext* tls_;
  std::set<uint32_t> partitioned_;
  std::vector<std::unique_ptr<link>> links_;
  struct errors;
  std::unique_ptr<errors> error_handler_;
  std::unique_ptr<kj::TaskSet> tasks_;
};

}  // namespace holdfast
