#include "cluster/certs.hpp"

#include "cluster/roles.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include <kj/compat/tls.h>

namespace holdfast {
namespace {

template <class T, void (*F)(T*)>
struct deleter {
  void operator()(T* p) const { F(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, deleter<EVP_PKEY, EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, deleter<X509, X509_free>>;
using bio_ptr = std::unique_ptr<BIO, deleter<BIO, BIO_free_all>>;

std::string openssl_error(const char* what) {
  char buf[256] = {};
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  return std::string(what) + ": " + buf;
}

std::string bio_text(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<size_t>(n));
}

bool pem_of(EVP_PKEY* key, X509* cert, pem_pair& out, std::string& error) {
  bio_ptr kb(BIO_new(BIO_s_mem())), cb(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(kb.get(), key, nullptr, nullptr, 0, nullptr, nullptr) ||
      !PEM_write_bio_X509(cb.get(), cert)) {
    error = openssl_error("PEM");
    return false;
  }
  out.key = bio_text(kb.get());
  out.cert = bio_text(cb.get());
  return true;
}

bool add_ext(X509* cert, X509* issuer, int nid, const char* value, std::string& error) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) {
    error = openssl_error("certificate extension");
    return false;
  }
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return true;
}

// A fresh certificate for `key` with a random serial, valid from now for `days`.
x509_ptr new_cert(EVP_PKEY* key, const std::string& cn, int days) {
  x509_ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);  // tolerate a little clock skew
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), int64_t{days} * 86400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return cert;
}

pkey_ptr load_key(const std::string& pem) {
  bio_ptr b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return pkey_ptr(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr));
}

x509_ptr load_cert(const std::string& pem) {
  bio_ptr b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return x509_ptr(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
}

}  // namespace

std::string check_node_material(const std::string& ca_pem, const std::string& cert_pem,
                                const std::string& key_pem, uint32_t node_id) {
  auto ca = load_cert(ca_pem);
  if (!ca) return "the CA certificate does not parse as PEM";
  auto cert = load_cert(cert_pem);
  if (!cert) return "the node certificate does not parse as PEM";
  auto key = load_key(key_pem);
  if (!key) return "the node key does not parse as PEM";
  if (X509_check_private_key(cert.get(), key.get()) != 1) return "the key is not the certificate's";
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn);
  if (node_tls_name(node_id) != cn)
    return "the certificate names \"" + std::string(cn) + "\", not " + node_tls_name(node_id);
  pkey_ptr ca_key(X509_get_pubkey(ca.get()));
  if (!ca_key || X509_verify(cert.get(), ca_key.get()) != 1) return "the certificate is not signed by the CA";
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) return "the certificate has expired";
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) >= 0) return "the certificate is not valid yet";
  ERR_clear_error();
  return "";
}

std::string node_tls_name(uint32_t node_id) { return "node-" + std::to_string(node_id); }

bool make_cluster_ca(const std::string& common_name, int days, pem_pair& out, std::string& error) {
  pkey_ptr key(EVP_EC_gen("P-256"));
  if (!key) {
    error = openssl_error("key generation");
    return false;
  }
  auto cert = new_cert(key.get(), common_name, days);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  if (!add_ext(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0", error) ||
      !add_ext(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign", error) ||
      !add_ext(cert.get(), cert.get(), NID_subject_key_identifier, "hash", error))
    return false;
  if (!X509_sign(cert.get(), key.get(), EVP_sha256())) {
    error = openssl_error("signing");
    return false;
  }
  return pem_of(key.get(), cert.get(), out, error);
}

namespace {
// A leaf certificate named `common_name`, signed by `ca`, with these extended key usages
// and (if not empty) subject alternative names.
bool issue_leaf(const pem_pair& ca, const std::string& common_name, const char* key_usage, const std::string& san,
                int days, pem_pair& out, std::string& error) {
  auto ca_key = load_key(ca.key);
  auto ca_cert = load_cert(ca.cert);
  if (!ca_key || !ca_cert) {
    error = "the CA's certificate or key does not parse";
    return false;
  }
  pkey_ptr key(EVP_EC_gen("P-256"));
  if (!key) {
    error = openssl_error("key generation");
    return false;
  }
  auto cert = new_cert(key.get(), common_name, days);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  if (!add_ext(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE", error) ||
      !add_ext(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature", error) ||
      !add_ext(cert.get(), ca_cert.get(), NID_ext_key_usage, key_usage, error) ||
      (!san.empty() && !add_ext(cert.get(), ca_cert.get(), NID_subject_alt_name, san.c_str(), error)))
    return false;
  if (!X509_sign(cert.get(), ca_key.get(), EVP_sha256())) {
    error = openssl_error("signing");
    return false;
  }
  return pem_of(key.get(), cert.get(), out, error);
}
}  // namespace

bool issue_node_certificate(const pem_pair& ca, uint32_t node_id, int days, pem_pair& out,
                            std::string& error) {
  auto name = node_tls_name(node_id);
  return issue_leaf(ca, name, "serverAuth,clientAuth",
                    "DNS:" + name + ",DNS:" + client_tls_name + ",DNS:localhost,IP:127.0.0.1", days, out, error);
}

bool issue_client_certificate(const pem_pair& ca, const std::string& role, const std::string& name, int days,
                              pem_pair& out, std::string& error) {
  if (role != "admin" && role != "client") {
    error = "--role: expected admin or client";
    return false;
  }
  if (!valid_token_name(name)) {
    error = "--name: 1 to 64 of A-Z a-z 0-9 . _ -";
    return false;
  }
  return issue_leaf(ca, role + ":" + name, "clientAuth", "", days, out, error);
}

}  // namespace holdfast

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include <kj/common.h>
#include <set>

#include "client/client.hpp"
#include "client/cluster_file.hpp"

namespace holdfast {
namespace {

// Creates `path`, which must not exist (nor be a symlink, even a dangling one): a key is
// never written through a file or link someone planted, keeping their owner and mode.
bool write_file(const std::string& path, const std::string& text, mode_t mode, std::string& error) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    error = errno == EEXIST ? path + " exists: refusing to overwrite it (remove it, or use another --dir or --name)"
                            : "cannot write " + path + ": " + std::strerror(errno);
    return false;
  }
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  ::close(fd);
  if (!ok) error = "cannot write " + path;
  return ok;
}

// A loopback port free right now (bound, read back, released).
int probe_free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

}  // namespace

bool write_client_certificate(const std::string& dir, const std::string& role, const std::string& name, int days,
                              std::string& written, std::string& error) {
  pem_pair ca;
  std::string problem;
  if (!(problem = read_small_file(dir + "/ca.pem", 1u << 20, ca.cert)).empty() ||
      !(problem = read_small_file(dir + "/ca.key", 1u << 20, ca.key)).empty()) {
    error = problem + " (--dir must hold the cluster CA: ca.pem and ca.key, as cluster init writes)";
    return false;
  }
  pem_pair cert;
  if (!issue_client_certificate(ca, role, name, days, cert, error)) return false;
  auto base = dir + "/" + role + "-" + name;
  struct stat st;
  if (::lstat((base + ".pem").c_str(), &st) == 0) {  // before the key, so a refusal writes nothing
    error = base + ".pem exists: refusing to overwrite a certificate (another --name, or remove it)";
    return false;
  }
  if (!write_file(base + ".key", cert.key, 0600, error)) return false;
  if (!write_file(base + ".pem", cert.cert, 0644, error)) {
    ::unlink((base + ".key").c_str());
    return false;
  }
  written = base + ".pem";
  return true;
}

bool ensure_local_admin_certificate(const cluster_config& cfg, std::string& error) {
  auto base = cfg.path_of(std::string("admin-") + local_admin_name);
  struct stat st;
  if (::lstat((base + ".pem").c_str(), &st) == 0) return true;
  std::string written;
  if (write_client_certificate(cfg.directory.empty() ? "." : cfg.directory, "admin", local_admin_name, 3650, written,
                               error))
    return true;
  error = "client_certs is on and " + base + ".pem is missing: " + error;
  return false;
}

bool init_cluster_dir(const std::string& dir, int nodes, int base_port, const std::string& name,
                      bool client_tls, cluster_config& out, std::string& error, bool client_certs,
                      int replicas) {
  if (nodes < 1 || nodes > 64) {
    error = "--nodes: expected 1 to 64";
    return false;
  }
  if (replicas != 1 && replicas != nodes) {
    error = "--replicas: 1 (no replication) or the number of nodes (one Raft group on every node), not " +
            std::to_string(replicas);
    return false;
  }
  if (base_port < 0 || base_port + 300 + nodes > 65535) {
    error = "--base-port: the ports would pass 65535";
    return false;
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::string file = dir + "/cluster.toml";
  if (::access(file.c_str(), F_OK) == 0) {
    error = file + " exists: refusing to overwrite a cluster (remove it, or use another --dir)";
    return false;
  }
  // What this run wrote goes again if it fails part way, so the next init is not refused
  // by half a cluster (every file is created new: a file that was there is never touched).
  std::vector<std::string> written;
  bool done = false;
  auto undo = kj::defer([&] {
    if (!done)
      for (auto& path : written) ::unlink(path.c_str());
  });
  auto write = [&](const std::string& path, const std::string& text, mode_t mode) {
    if (!write_file(path, text, mode, error)) return false;
    written.push_back(path);
    return true;
  };
  pem_pair ca;
  if (!make_cluster_ca(name + " cluster CA", 3650, ca, error) || !write(dir + "/ca.pem", ca.cert, 0644) ||
      !write(dir + "/ca.key", ca.key, 0600))
    return false;
  std::set<int> ports;
  auto port = [&](int fixed) {
    if (fixed) return fixed;
    for (;;) {
      int p = probe_free_port();
      if (p > 0 && ports.insert(p).second) return p;
    }
  };
  cluster_config cfg;
  cfg.name = name;
  cfg.id = new_cluster_id();
  cfg.ca = "ca.pem";
  cfg.client_tls = client_tls || client_certs;
  cfg.client_certs = client_certs;
  cfg.replicas = static_cast<uint32_t>(replicas);
  for (int i = 1; i <= nodes; ++i) {
    auto id = static_cast<uint32_t>(i);
    pem_pair node;
    auto base = dir + "/" + node_tls_name(id);
    if (!issue_node_certificate(ca, id, 3650, node, error) ||
        !write(base + ".pem", node.cert, 0644) || !write(base + ".key", node.key, 0600))
      return false;
    cluster_member m;
    m.id = id;
    int client_port = port(base_port ? base_port + i - 1 : 0);
    int peer_port = port(base_port ? base_port + 100 + i - 1 : 0);
    m.client = "127.0.0.1:" + std::to_string(client_port);
    m.peer = "127.0.0.1:" + std::to_string(peer_port);
    m.http = "127.0.0.1:" + std::to_string(port(base_port ? base_port + 200 + i - 1 : 0));
    if (replicas > 1) m.raft = "127.0.0.1:" + std::to_string(port(base_port ? base_port + 300 + i - 1 : 0));
    m.cert = node_tls_name(id) + ".pem";
    m.key = node_tls_name(id) + ".key";
    cfg.members.push_back(m);
  }
  if (!write(file, cluster_file_text(cfg), 0644) || !load_cluster_file(file, out, error)) return false;
  if (client_certs && !ensure_local_admin_certificate(out, error)) return false;
  done = true;
  return true;
}

std::string certificate_name(kj::PeerIdentity& identity) {
  auto& id = kj::downcast<kj::TlsPeerIdentity>(identity);
  if (!id.hasCertificate()) return {};
  auto cn = id.getCommonName();
  return std::string(cn.begin(), cn.size());
}

}  // namespace holdfast
