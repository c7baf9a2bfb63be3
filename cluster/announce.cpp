#include "cluster/announce.hpp"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/compat/tls.h>

#include <random>

#include "cluster/certs.hpp"
#include "client/client.hpp"
#include "protocol/codec.hpp"
#include "protocol/inventory.capnp.h"

namespace holdfast {

announcement announce_generation(const cluster_config& cfg, uint32_t member, uint64_t generation,
                                 const std::string& lineage, int64_t timeout_ms) {
  announcement out;
  auto* me = cfg.member(member);
  if (!me) {
    out.refused.push_back("node " + std::to_string(member) + " is not a member");
    return out;
  }
  auto io = kj::setupAsyncIo();
  kj::Own<kj::TlsCertificate> ca;
  kj::Own<kj::TlsKeypair> keypair;
  kj::Own<kj::TlsContext> tls;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
                if (cfg.ca.empty()) return;
                ca = kj::heap<kj::TlsCertificate>(read_pem_file(cfg.path_of(cfg.ca)));
                keypair = kj::heap<kj::TlsKeypair>(
                  kj::TlsKeypair{kj::TlsPrivateKey(read_pem_file(cfg.path_of(me->key))),
                                 kj::TlsCertificate(read_pem_file(cfg.path_of(me->cert)))});
                kj::TlsContext::Options o;
                o.useSystemTrustStore = false;
                o.trustedCertificates = kj::arrayPtr(ca.get(), 1);
                o.defaultKeypair = *keypair;
                tls = kj::heap<kj::TlsContext>(kj::mv(o));
              })) {
    out.refused.push_back("node " + std::to_string(member) + "'s certificate: " + describe(*e));
    return out;
  }
  std::random_device rd;
  uint64_t incarnation = (uint64_t{rd()} << 32) ^ rd();
  for (auto& m : cfg.members) {
    if (m.id == member) continue;
    auto who = "node " + std::to_string(m.id);
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
                  auto& timer = io.provider->getTimer();
                  auto address = io.provider->getNetwork().parseAddress(m.peer).wait(io.waitScope);
                  auto s = timer.timeoutAfter(timeout_ms * kj::MILLISECONDS, address->connect()).wait(io.waitScope);
                  if (tls)
                    s = timer.timeoutAfter(timeout_ms * kj::MILLISECONDS, tls->wrapClient(kj::mv(s), node_tls_name(m.id)))
                          .wait(io.waitScope);
                  capnp::TwoPartyVatNetwork network(*s, capnp::rpc::twoparty::Side::CLIENT);
                  auto rpc = capnp::makeRpcClient(network);
                  capnp::MallocMessageBuilder message;
                  auto vat = message.getRoot<capnp::rpc::twoparty::VatId>();
                  vat.setSide(capnp::rpc::twoparty::Side::SERVER);
                  auto hello = rpc.bootstrap(vat).castAs<wire::Peer>().helloRequest();
                  hello.setCluster(cfg.name);
                  hello.setFileHash(cfg.hash);
                  hello.setFrom(member);
                  hello.setTo(m.id);
                  hello.setIncarnation(incarnation);
                  hello.setGeneration(generation);
                  hello.setLineage(lineage);
                  auto r = timer.timeoutAfter(timeout_ms * kj::MILLISECONDS, hello.send()).wait(io.waitScope);
                  if (r.hasRefused() && r.getRefused().size() > 0)
                    out.refused.push_back(who + ": " + codec::str(r.getRefused()));
                  else
                    ++out.accepted;
                })) {
      out.refused.push_back(who + ": " + describe(*e));
    }
  }
  return out;
}

}  // namespace holdfast
