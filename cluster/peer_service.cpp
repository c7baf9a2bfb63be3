#include "cluster/peer_service.hpp"

#include <kj/debug.h>

#include "cluster/peer_links.hpp"
#include "protocol/codec.hpp"
#include "protocol/log.hpp"

namespace holdfast::net {
namespace {

// What a dialing member reaches on the peer port. Its hello must carry this node's
// cluster file hash and an id its certificate names; only then does it get the
// inventory its forwarded calls go to.
class peer_impl final : public wire::Peer::Server {
public:
  peer_impl(network_context& net, std::shared_ptr<network_context::inbound> in,
            std::string certificate_name)
    : net_(net), in_(std::move(in)), certificate_name_(std::move(certificate_name)) {}

  kj::Promise<void> hello(HelloContext ctx) override {
    auto p = ctx.getParams();
    auto& role = *net_.role;
    auto from = p.getFrom();
    // A partition looks like a lost network, not a refusal: the link just drops.
    if (net_.links && net_.links->partitioned(from))
      return KJ_EXCEPTION(DISCONNECTED, "partitioned by the fault hook");
    hello_claim claim{codec::str(p.getCluster()), codec::str(p.getFileHash()), from, p.getTo(),
                      p.getIncarnation(), certificate_name_,
                      net_.links ? net_.links->live_incarnation(from) : 0};
    auto verdict = judge_hello(role, claim);
    if (verdict.refused.empty() && net_.links)
      verdict = net_.links->accept_lineage(from, p.getGeneration(), codec::str(p.getLineage()));
    auto out = ctx.getResults();
    out.setIncarnation(role.incarnation);
    out.setGeneration(role.generation);
    if (net_.links) out.setLineage(net_.links->lineage_text());
    if (!verdict.refused.empty()) {
      uint64_t suppressed = 0;
      static rate_limit log{};
      if (log.allow(suppressed))
        spdlog::error("refusing a peer link: {} ({} more suppressed)", verdict.refused, suppressed);
      out.setRefused(verdict.refused);
      out.setFenced(verdict.fenced);
      return kj::READY_NOW;
    }
    in_->from = from;
    auto conn = std::make_shared<connection_state>(0);
    out.setInventory(make_inventory(net_, std::move(conn), true));
    out.setBatchMax(static_cast<uint32_t>(net_.options.limits.batch_size_max));
    out.setInflightMax(net_.options.inflight_max);
    return kj::READY_NOW;
  }

  kj::Promise<void> heartbeat(HeartbeatContext ctx) override {
    ctx.getResults().setIncarnation(net_.role->incarnation);
    return kj::READY_NOW;
  }

private:
  network_context& net_;
  std::shared_ptr<network_context::inbound> in_;
  std::string certificate_name_;
};

}  // namespace

kj::Own<wire::Peer::Server> make_peer_service(network_context& net, std::shared_ptr<network_context::inbound> in,
                                              std::string certificate_name) {
  return kj::heap<peer_impl>(net, std::move(in), std::move(certificate_name));
}

}  // namespace holdfast::net
