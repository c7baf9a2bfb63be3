// The cluster file: one TOML file every member reads (examples/cluster-3.toml lists every
// key with its default). Parsing validates everything at once and names the first
// problem; `hash` covers what members must agree on (the cluster's name, settings and
// membership), not paths of key files or comments, and peers compare it when a link opens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace holdfast {

struct cluster_member {
  uint32_t id = 0;
  std::string client;  // HOST:PORT clients connect to
  std::string peer;    // HOST:PORT peers connect to (mutual TLS)
  std::string cert;    // this node's certificate (PEM), relative to the file's directory
  std::string key;     // its private key (PEM)
};

struct cluster_config {
  std::string name = "holdfast";
  int64_t heartbeat_interval_ms = 250;  // a heartbeat on every link this often
  int64_t down_after_ms = 1'500;        // a heartbeat unanswered this long: the peer is down
  int64_t connect_timeout_ms = 1'000;   // TCP + TLS + hello, per attempt
  int64_t reconnect_min_ms = 100;       // first retry after a failed or lost link...
  int64_t reconnect_max_ms = 2'000;     // ...doubling up to this, jittered +-50%
  int64_t forward_timeout_ms = 8'000;   // a forwarded call not answered by then: outcome_unknown
  uint32_t peer_batch_max = 1'024;      // operations in one forwarded batch
  uint32_t peer_batches_in_flight = 8;  // batches of a kind on a link before calls queue
  std::string ca;                       // the cluster CA certificate (PEM); empty: plaintext
  bool client_tls = false;              // clients must connect with TLS too
  bool insecure_plaintext_peers = false;  // allow peer links without TLS (tests of the
                                          // plaintext path only)
  std::vector<cluster_member> members;    // sorted by id
  std::string directory;                  // where the file is: relative paths start here
  std::string hash;                       // hex, 16 digits

  const cluster_member* member(uint32_t id) const;
  std::string path_of(const std::string& relative) const;  // resolved against `directory`
};

// Parses and validates; on failure returns false and sets `error` (with the file's name).
bool load_cluster_file(const std::string& path, cluster_config& out, std::string& error);
bool parse_cluster_text(const std::string& text, const std::string& directory, cluster_config& out,
                        std::string& error);
// Reads a regular file of at most `max_bytes` into `out`; returns "" or what is wrong ("not a
// regular file", "larger than ..."). Never blocks on a FIFO or device given by mistake.
std::string read_small_file(const std::string& path, size_t max_bytes, std::string& out);
// TOML for `cfg`, every key written; what `cluster init` saves.
std::string cluster_file_text(const cluster_config& cfg);

}  // namespace holdfast
