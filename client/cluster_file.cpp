#include "client/cluster_file.hpp"

#include <openssl/evp.h>
#include <toml++/toml.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "protocol/domain.hpp"

namespace holdfast {

const cluster_member* cluster_config::member(uint32_t id) const {
  for (auto& m : members)
    if (m.id == id) return &m;
  return nullptr;
}

std::string cluster_config::path_of(const std::string& relative) const {
  if (relative.empty() || relative[0] == '/' || directory.empty()) return relative;
  return directory + "/" + relative;
}

std::string hex_of(const unsigned char* bytes, size_t n) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += hex[bytes[i] >> 4];
    out += hex[bytes[i] & 15];
  }
  return out;
}

std::string sha256_hex(const std::string& text, size_t bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  return hex_of(digest, std::min<size_t>(bytes, len));
}

std::string random_hex(size_t bytes) {
  std::random_device rd;  // the kernel's random source (libstdc++ reads getrandom / urandom)
  std::vector<unsigned char> b(bytes);
  for (auto& x : b) x = static_cast<unsigned char>(rd());
  return hex_of(b.data(), b.size());
}

std::string address_problem(const std::string& a) {
  auto colon = a.rfind(':');
  if (colon == std::string::npos) return "no port: expected HOST:PORT, e.g. 127.0.0.1:7400";
  if (colon == 0) return "no host: expected HOST:PORT, e.g. 127.0.0.1:7400";
  auto port = a.substr(colon + 1);
  if (port.empty()) return "an empty port: expected HOST:PORT, e.g. 127.0.0.1:7400";
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) || std::stoi(port) == 0 ||
      std::stoi(port) > 65535)
    return "port '" + port + "' is not a number from 1 to 65535";
  return {};
}

namespace {

bool valid_address(const std::string& a) { return address_problem(a).empty(); }


// What members must agree on, in a fixed order.
std::string canonical(const cluster_config& c) {
  std::ostringstream s;
  s << "name=" << c.name << "\nid=" << c.id << "\nheartbeat_interval_ms=" << c.heartbeat_interval_ms
    << "\ndown_after_ms=" << c.down_after_ms << "\nconnect_timeout_ms=" << c.connect_timeout_ms
    << "\nreconnect=" << c.reconnect_min_ms << "," << c.reconnect_max_ms
    << "\nforward_timeout_ms=" << c.forward_timeout_ms << "\npeer_batch=" << c.peer_batch_max
    << "," << c.peer_batches_in_flight << "\ntls=" << !c.ca.empty() << "," << c.client_tls << ","
    << c.insecure_plaintext_peers << "\n";
  // Only when on, so the hash of every file written before the key existed stays the same.
  if (c.client_certs) s << "client_certs=1\n";
  // Replication, only when on (the hash of every unreplicated file stays the same).
  if (c.replicas > 1)
    s << "replicas=" << c.replicas << "," << c.election_timeout_ms << "," << c.raft_heartbeat_ms << "\n";
  for (auto& m : c.members)
    s << "node " << m.id << " " << m.client << " " << m.peer << (c.replicas > 1 ? " " + m.raft : "") << "\n";
  return s.str();
}

template <class T>
bool read_int(const toml::table& t, const char* key, T& out, int64_t lo, int64_t hi,
              std::string& error, const std::string& where) {
  auto node = t.get(key);
  if (!node) return true;
  auto v = node->value<int64_t>();
  // A `*_ms` key also takes a duration with its unit: "250ms", "2s", "1m".
  std::string name = key;
  bool duration = name.size() > 3 && name.compare(name.size() - 3, 3, "_ms") == 0;
  if (duration && node->is_string()) {
    auto ms = parse_duration_ms(*node->value<std::string>());
    if (ms >= 0) v = ms;
  }
  if (!v || !(node->is_integer() || (duration && node->is_string())) || *v < lo || *v > hi) {
    error = where + key + ": expected " + (duration ? "a duration (250ms, 2s; a bare number is ms)" : "an integer") +
            " in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    return false;
  }
  out = static_cast<T>(*v);
  return true;
}

bool read_string(const toml::table& t, const char* key, std::string& out, std::string& error,
                 const std::string& where) {
  auto node = t.get(key);
  if (!node) return true;
  if (!node->is_string()) {
    error = where + key + ": expected a string";
    return false;
  }
  out = *node->value<std::string>();
  return true;
}

bool read_bool(const toml::table& t, const char* key, bool& out, std::string& error,
               const std::string& where) {
  auto node = t.get(key);
  if (!node) return true;
  if (!node->is_boolean()) {
    error = where + key + ": expected true or false";
    return false;
  }
  out = *node->value<bool>();
  return true;
}

// Keys a table may have: a misspelt key is an error, not a silent default.
bool only_keys(const toml::table& t, std::initializer_list<const char*> keys, std::string& error,
               const std::string& where) {
  for (auto& [k, v] : t) {
    bool known = false;
    for (auto* key : keys) known = known || k.str() == key;
    if (!known) {
      error = where + std::string(k.str()) + ": unknown key";
      return false;
    }
  }
  return true;
}

}  // namespace

bool parse_cluster_text(const std::string& text, const std::string& directory, cluster_config& out,
                        std::string& error) {
  toml::table root;
  try {
    root = toml::parse(text);
  } catch (const toml::parse_error& e) {
    std::ostringstream s;
    s << e.description() << " at line " << e.source().begin.line << ", column "
      << e.source().begin.column;
    error = s.str();
    return false;
  }
  cluster_config c;
  c.directory = directory;
  if (!only_keys(root, {"cluster", "tls", "node"}, error, "")) return false;
  if (auto* t = root["cluster"].as_table()) {
    std::string w = "[cluster] ";
    if (!only_keys(*t,
                   {"name", "id", "heartbeat_interval_ms", "down_after_ms", "connect_timeout_ms",
                    "reconnect_min_ms", "reconnect_max_ms", "forward_timeout_ms",
                    "peer_batch_max", "peer_batches_in_flight", "replicas", "election_timeout_ms",
                    "raft_heartbeat_ms", "raft_snapshot_entries"},
                   error, w) ||
        !read_string(*t, "name", c.name, error, w) || !read_string(*t, "id", c.id, error, w) ||
        !read_int(*t, "heartbeat_interval_ms", c.heartbeat_interval_ms, 10, 60'000, error, w) ||
        !read_int(*t, "down_after_ms", c.down_after_ms, 50, 600'000, error, w) ||
        !read_int(*t, "connect_timeout_ms", c.connect_timeout_ms, 10, 600'000, error, w) ||
        !read_int(*t, "reconnect_min_ms", c.reconnect_min_ms, 1, 600'000, error, w) ||
        !read_int(*t, "reconnect_max_ms", c.reconnect_max_ms, 1, 3'600'000, error, w) ||
        !read_int(*t, "forward_timeout_ms", c.forward_timeout_ms, 10, 3'600'000, error, w) ||
        !read_int(*t, "peer_batch_max", c.peer_batch_max, 1, 4096, error, w) ||
        !read_int(*t, "peer_batches_in_flight", c.peer_batches_in_flight, 1, 1024, error, w) ||
        !read_int(*t, "replicas", c.replicas, 1, 64, error, w) ||
        !read_int(*t, "election_timeout_ms", c.election_timeout_ms, 50, 60'000, error, w) ||
        !read_int(*t, "raft_heartbeat_ms", c.raft_heartbeat_ms, 5, 10'000, error, w) ||
        !read_int(*t, "raft_snapshot_entries", c.raft_snapshot_entries, cluster_config::raft_snapshot_entries_min,
                  cluster_config::raft_snapshot_entries_max, error, w))
      return false;
  } else if (root.contains("cluster")) {
    error = "cluster: expected a table [cluster]";
    return false;
  }
  if (auto* t = root["tls"].as_table()) {
    std::string w = "[tls] ";
    if (!only_keys(*t, {"ca", "client_tls", "client_certs", "insecure_plaintext_peers"}, error, w) ||
        !read_string(*t, "ca", c.ca, error, w) ||
        !read_bool(*t, "client_tls", c.client_tls, error, w) ||
        !read_bool(*t, "client_certs", c.client_certs, error, w) ||
        !read_bool(*t, "insecure_plaintext_peers", c.insecure_plaintext_peers, error, w))
      return false;
  } else if (root.contains("tls")) {
    error = "tls: expected a table [tls]";
    return false;
  }
  auto* nodes = root["node"].as_array();
  if (!nodes || nodes->empty()) {
    error = "no [[node]] entries: a cluster lists at least one node";
    return false;
  }
  std::set<uint32_t> ids;
  std::set<std::string> addresses;
  for (auto& n : *nodes) {
    auto* t = n.as_table();
    if (!t) {
      error = "node: expected [[node]] tables";
      return false;
    }
    cluster_member m;
    std::string w = "[[node]] ";
    if (!only_keys(*t, {"id", "client", "peer", "http", "raft", "cert", "key"}, error, w) ||
        !read_string(*t, "http", m.http, error, w) || !read_string(*t, "raft", m.raft, error, w) ||
        !read_int(*t, "id", m.id, 1, 65'535, error, w) || !read_string(*t, "client", m.client, error, w) ||
        !read_string(*t, "peer", m.peer, error, w) || !read_string(*t, "cert", m.cert, error, w) ||
        !read_string(*t, "key", m.key, error, w))
      return false;
    w = "[[node]] id " + std::to_string(m.id) + ": ";
    if (m.id == 0) {
      error = "[[node]]: every node needs an id (1-65535)";
      return false;
    }
    if (!ids.insert(m.id).second) {
      error = w + "listed twice";
      return false;
    }
    for (auto* a : {&m.client, &m.peer, &m.http, &m.raft}) {
      if ((a == &m.http || a == &m.raft) && a->empty()) continue;
      if (!valid_address(*a)) {
        error = w + (a == &m.client ? "client" : a == &m.peer ? "peer" : a == &m.http ? "http" : "raft") + " = \"" +
                *a + "\": expected HOST:PORT";
        return false;
      }
      if (!addresses.insert(*a).second) {
        error = w + "address " + *a + " is used twice in the file";
        return false;
      }
    }
    if (!c.ca.empty() && (m.cert.empty() || m.key.empty())) {
      error = w + "[tls] ca is set, so every node needs cert and key";
      return false;
    }
    c.members.push_back(m);
  }
  if (c.name.empty()) {
    error = "[cluster] name: must not be empty";
    return false;
  }
  if (c.id.size() < 16 || c.id.size() > 64 ||
      !std::all_of(c.id.begin(), c.id.end(), [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)); })) {
    error = "[cluster] id: " + std::string(c.id.empty() ? "missing" : "\"" + c.id + "\" is not 16-64 hex digits") +
            "; every cluster has its own id (`holdfast cluster init` writes one, `holdfast cluster new-id` prints "
            "one), and its data directories record it";
    return false;
  }
  if (c.ca.empty() && !c.insecure_plaintext_peers) {
    error = "[tls] ca is not set: peer links are mutual TLS (run `holdfast cluster init`), or set "
            "insecure_plaintext_peers = true";
    return false;
  }
  if (c.client_tls && c.ca.empty()) {
    error = "[tls] client_tls needs ca and node certificates";
    return false;
  }
  if (c.client_certs && !c.client_tls) {
    error = "[tls] client_certs needs client_tls = true (client certificates are part of the TLS handshake)";
    return false;
  }
  if (c.down_after_ms < c.heartbeat_interval_ms) {
    error = "[cluster] down_after_ms (" + std::to_string(c.down_after_ms) +
            ") is below heartbeat_interval_ms (" + std::to_string(c.heartbeat_interval_ms) +
            "): a peer would be judged on less than one heartbeat";
    return false;
  }
  if (c.reconnect_max_ms < c.reconnect_min_ms) {
    error = "[cluster] reconnect_max_ms is below reconnect_min_ms";
    return false;
  }
  if (c.replicas > 1) {
    if (c.replicas != c.members.size()) {
      error = "[cluster] replicas = " + std::to_string(c.replicas) + " with " + std::to_string(c.members.size()) +
              " nodes: this version keeps one replica group on every node, so replicas is 1 or the number of "
              "nodes";
      return false;
    }
    if (c.ca.empty()) {
      error = "[cluster] replicas > 1 needs [tls] ca: Raft runs only over mutual TLS";
      return false;
    }
    for (auto& m : c.members)
      if (m.raft.empty()) {
        error = "[[node]] id " + std::to_string(m.id) + ": replicas > 1, so every node needs raft = \"HOST:PORT\"";
        return false;
      }
    if (c.raft_heartbeat_ms * 2 > c.election_timeout_ms) {
      error = "[cluster] raft_heartbeat_ms must be at most half of election_timeout_ms";
      return false;
    }
  }
  std::sort(c.members.begin(), c.members.end(),
            [](auto& a, auto& b) { return a.id < b.id; });
  c.hash = sha256_hex(canonical(c), 8);
  out = std::move(c);
  return true;
}

bool load_cluster_file(const std::string& path, cluster_config& out, std::string& error) {
  std::string text;
  if (auto problem = read_small_file(path, 1u << 20, text); !problem.empty()) {
    error = path + ": " + problem;
    return false;
  }
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  if (!parse_cluster_text(text, dir, out, error)) {
    error = path + ": " + error;
    return false;
  }
  return true;
}

std::string new_cluster_id() { return random_hex(16); }

std::string cluster_file_text(const cluster_config& c) {
  std::ostringstream s;
  s << "# Holdfast cluster file: every member reads the same file. Members compare a hash of\n"
       "# the name, the settings and the node list when a link opens, and refuse a mismatch.\n"
       "[cluster]\n"
    << "name = \"" << c.name << "\"\n"
    << "id = \"" << c.id << "\"    # unique to this cluster; its data directories record it\n"
    << "heartbeat_interval_ms = " << c.heartbeat_interval_ms
    << "    # a heartbeat on every peer link this often, ms\n"
    << "down_after_ms = " << c.down_after_ms
    << "          # a heartbeat unanswered this long marks the peer down, ms\n"
    << "connect_timeout_ms = " << c.connect_timeout_ms
    << "     # TCP + TLS handshake + hello, per attempt, ms\n"
    << "reconnect_min_ms = " << c.reconnect_min_ms
    << "        # first retry of a lost link after this, ms...\n"
    << "reconnect_max_ms = " << c.reconnect_max_ms
    << "       # ...doubling up to this, jittered +-50%, ms\n"
    << "forward_timeout_ms = " << c.forward_timeout_ms
    << "     # a forwarded call with no answer by then: outcome_unknown, ms\n"
    << "peer_batch_max = " << c.peer_batch_max << "         # operations in one forwarded batch\n"
    << "peer_batches_in_flight = " << c.peer_batches_in_flight
    << "    # batches of a kind on a link before calls queue\n"
    << "replicas = " << c.replicas
    << "               # 1: no replication; the number of nodes: one Raft group on every node\n"
    << "election_timeout_ms = " << c.election_timeout_ms << "   # Raft: randomized between 1x and 2x this, ms\n"
    << "raft_heartbeat_ms = " << c.raft_heartbeat_ms << "      # Raft: the leader's heartbeat, ms\n"
    << "raft_snapshot_entries = " << c.raft_snapshot_entries
    << " # Raft: state snapshot every this many entries, as many kept behind it\n\n"
    << "[tls]\n"
    << "ca = \"" << c.ca << "\"              # cluster CA certificate (PEM), relative to this file\n"
    << "client_tls = " << (c.client_tls ? "true" : "false")
    << "         # clients must connect with TLS (holdfast --tls-ca ca.pem)\n"
    << (c.client_certs ? "client_certs = true        # ...with a certificate from `holdfast cluster cert`, which "
                         "gives its role\n"
                       : "")
    << "insecure_plaintext_peers = " << (c.insecure_plaintext_peers ? "true" : "false")
    << "  # peer links without TLS: for tests of that path only\n";
  for (auto& m : c.members)
    s << "\n[[node]]\nid = " << m.id << "\nclient = \"" << m.client << "\"   # clients connect here\n"
      << "peer = \"" << m.peer << "\"     # peers connect here (mutual TLS)\n"
      << (m.http.empty() ? std::string() : "http = \"" + m.http + "\"     # payment webhooks come here (HTTP)\n")
      << (m.raft.empty() ? std::string() : "raft = \"" + m.raft + "\"     # Raft replicas connect here (mutual TLS)\n")
      << "cert = \"" << m.cert << "\"\nkey = \"" << m.key << "\"\n";
  return s.str();
}

}  // namespace holdfast
