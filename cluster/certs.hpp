// Certificates for a cluster (`holdfast cluster init`): a cluster CA and, per node, a key
// and a certificate signed by it. Keys are ECDSA P-256. A node's certificate names it
// twice: common name "node-<id>" (peers check it against the id a hello claims) and the
// DNS names "node-<id>" (what a dialing peer expects) and "holdfast-node" (what clients
// with --tls-ca expect of any member).
#pragma once

#include <cstdint>
#include <string>

#include "client/cluster_file.hpp"  // client_tls_name

namespace kj {
class PeerIdentity;
}

namespace holdfast {

struct cluster_config;

// The common name of the certificate a TLS peer presented ("" without one), whole: a name
// with a NUL in it stays whole, so it matches no member and grants no role.
std::string certificate_name(kj::PeerIdentity& identity);

struct pem_pair {
  std::string cert;
  std::string key;
};

// `common_name` names the CA; valid for `days`.
bool make_cluster_ca(const std::string& common_name, int days, pem_pair& out, std::string& error);
bool issue_node_certificate(const pem_pair& ca, uint32_t node_id, int days, pem_pair& out,
                            std::string& error);

// A client certificate for a cluster whose [tls] client_certs is on: common name
// "<role>:<name>" (role "admin" or "client", name as a token's: 1..64 of [A-Za-z0-9._-]),
// extended key usage clientAuth only, signed by the cluster CA. The node gives a
// connection that presents it that role (cluster/roles.hpp, role_of_certificate).
bool issue_client_certificate(const pem_pair& ca, const std::string& role, const std::string& name, int days,
                              pem_pair& out, std::string& error);
// `holdfast cluster cert`: reads `dir`/ca.pem and ca.key, writes `dir`/<role>-<name>.pem and
// .key (mode 0600); refuses to overwrite. `written` gets the certificate's path.
bool write_client_certificate(const std::string& dir, const std::string& role, const std::string& name, int days,
                              std::string& written, std::string& error);

// The admin certificate `cluster up` and the harness use on a client_certs cluster
// (admin-local.pem beside the file): written from the CA key beside the file when missing.
// Without the CA key there, returns false with why (the operator must pass --tls-cert).
bool ensure_local_admin_certificate(const cluster_config& cfg, std::string& error);

// Checks a node's TLS material before it serves: both PEMs parse, the key is the
// certificate's, the certificate names node-<id> and is signed by the CA and valid now.
// Returns "" or what is wrong.
std::string check_node_material(const std::string& ca_pem, const std::string& cert_pem,
                                const std::string& key_pem, uint32_t node_id);

std::string node_tls_name(uint32_t node_id);  // "node-<id>"

struct cluster_config;
// `holdfast cluster init`: writes into `dir` (created if missing) the cluster CA
// (ca.pem, ca.key), a certificate and key per node (node-<id>.pem, node-<id>.key; keys
// mode 0600) and cluster.toml naming them, with nodes 1..n on 127.0.0.1: client ports
// base_port.., peer ports base_port+100.., HTTP ports base_port+200.., with `replicas` > 1
// (which must then equal `nodes`) Raft ports base_port+300.. (base_port 0: ports free right now). Refuses to
// overwrite an existing cluster.toml. Fills `out` with the parsed result.
// `client_certs` (implies client_tls): clients present a certificate (`cluster cert`); the
// local admin one (admin-local.pem) is written too.
bool init_cluster_dir(const std::string& dir, int nodes, int base_port, const std::string& name,
                      bool client_tls, cluster_config& out, std::string& error, bool client_certs = false,
                      int replicas = 1);
}  // namespace holdfast
