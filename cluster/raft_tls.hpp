// Raft's connections between replicas, over mutual TLS with the cluster's CA (never
// plaintext: libraft's own TCP transport has no TLS).
//
// Each Raft connection is one TLS connection to the target node's raft port, whose
// certificate must name its member (node-<member>, cluster/replica_ids.hpp). The dialer then says who it is (its replica id and raft
// address); the acceptor checks that its certificate names that id. Then bytes are pumped
// between the TLS stream and a socketpair whose other end libraft reads and writes as a
// libuv stream (raft_host). The pumps run on this connector's own KJ thread.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "cluster/raft_peer_gate.hpp"
#include "replication/raft_host.hpp"

namespace holdfast {

struct raft_tls_options {
  std::string listen;  // HOST:PORT (port 0: any free one; see port())
  uint64_t self = 0;   // this replica's id (cluster/replica_ids.hpp): its certificate names its member
  std::string ca_pem, cert_pem, key_pem;
  int connect_timeout_ms = 2'000;  // a dial, TLS handshake and hello included
  size_t max_handshakes = 64;      // accepted connections not yet past their hello
  uint64_t max_entries_bytes = uint64_t{64} << 20;   // one AppendEntries' entries
  uint64_t max_snapshot_bytes = uint64_t{4} << 30;   // one InstallSnapshot's data
  int write_stall_ms = 5'000;  // a dialed link whose peer takes no bytes this long closes
  size_t max_links_per_peer = 4;  // accepted links kept per peer id: a newer one closes the oldest
  // Only members it allows are dialed or accepted, and a member it withdraws has its
  // connections closed (null: every member's certificate is accepted).
  std::shared_ptr<raft_peer_gate> gate;
};

struct raft_tls_stats {
  uint64_t accepted = 0;          // handed to Raft
  uint64_t refused_handshake = 0; // TLS failed (no certificate, another CA's) or too slow
  uint64_t refused_name = 0;      // a member's certificate, a hello claiming another id
  uint64_t refused_gate = 0;      // a member the gate does not allow (yet): see raft_peer_gate
  uint64_t refused_busy = 0;      // max_handshakes were under way: the oldest of them closed
  uint64_t refused_timeout = 0;   // no handshake and hello within connect_timeout_ms
  uint64_t accept_errors = 0;     // accept failed (out of descriptors): retried after 100 ms
  uint64_t refused_frames = 0;    // a member sent a message libraft's decoder must not see
  uint64_t stalled_links = 0;     // dialed links closed: the peer took nothing for write_stall_ms
  uint64_t closed_excess = 0;     // accepted links closed: their peer had max_links_per_peer newer
  uint64_t dials = 0, dial_failures = 0;
};

class raft_tls_connector : public replication::raft_connector {
public:
  // Binds the listener; throws std::runtime_error with why.
  explicit raft_tls_connector(raft_tls_options options);
  ~raft_tls_connector() override;
  uint16_t port() const;
  raft_tls_stats stats() const;

  void start(replication::raft_host& host) override;
  void dial(uint64_t id, const std::string& address, std::function<void(int fd)> done) override;
  void stop() override;
  // Test-only fault hook (a node's --fault-hooks): the links with these members' replicas close, and
  // none is made or accepted until a call without them.
  void partition(const std::set<uint64_t>& peers);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace holdfast
