// Peer links: the real transport (router.hpp). One Cap'n Proto connection to each other
// member, dialed by this node over mutual TLS, on the network thread. A link opens with
// a hello that carries the cluster file's hash (a mismatch is refused and logged on both
// sides); forwarded operations ride the client library's auto-batching (a batch leaves at
// once when the link is idle, else coalesces behind the ones in flight, up to
// peer_batch_max operations); heartbeats every heartbeat_interval_ms. A link with a
// heartbeat unanswered for down_after_ms, or whose connection drops, is down: calls in
// flight on it answer outcome_unknown, new calls for that node answer unavailable at once,
// and it redials with jittered, doubling backoff until the node is back.
#pragma once

#include <kj/async-io.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cluster/cluster_file.hpp"
#include "cluster/router.hpp"
#include "cluster/status.hpp"

namespace kj {
class TlsContext;
}

namespace holdfast {

class peer_links final : public transport {
public:
  // `tls` null: plaintext (only when the file allows it). Every reference must outlive this.
  peer_links(kj::AsyncIoProvider& io, const cluster_config& cfg, uint32_t self,
             uint64_t incarnation, kj::TlsContext* tls);
  ~peer_links();
  void start();  // dials every other member

  kj::Promise<std::vector<hold_result>> hold_ops(uint32_t node, std::vector<hold_op> ops) override;
  kj::Promise<std::vector<sku_result>> sku_ops(uint32_t node, std::vector<sku_op> ops) override;

  std::vector<link_status> status() const;
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

  kj::AsyncIoProvider& io_;
  const cluster_config& cfg_;
  uint32_t self_;
  uint64_t incarnation_;
  kj::TlsContext* tls_;
  std::set<uint32_t> partitioned_;
  std::vector<std::unique_ptr<link>> links_;
  struct errors;
  std::unique_ptr<errors> error_handler_;
  std::unique_ptr<kj::TaskSet> tasks_;
};

}  // namespace holdfast
