#include "cluster/peer_links.hpp"

#include <capnp/rpc-twoparty.h>
#include <kj/compat/tls.h>

#include <chrono>
#include <random>

#include "cluster/certs.hpp"
#include "cluster/client.hpp"
#include "protocol/inventory.capnp.h"
#include "protocol/log.hpp"

namespace holdfast {
namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

int64_t steady_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

}  // namespace

struct peer_links::errors final : kj::TaskSet::ErrorHandler {
  void taskFailed(kj::Exception&& e) override {
    spdlog::error("peer links: {}", e.getDescription().cStr());
  }
};

struct peer_links::link {
  const cluster_member* member = nullptr;
  std::string state = "connecting";
  std::string detail = "not dialed yet";
  uint64_t incarnation = 0;
  int64_t rtt_us = 0;
  int64_t since_ms = 0;
  uint64_t forwarded = 0;
  uint64_t downs = 0;
  int64_t backoff_ms = 0;
  std::mt19937_64 jitter;
  // The connection, while one is open.
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  kj::Maybe<wire::Peer::Client> peer;
  kj::Own<client> inventory;  // only while up
  kj::Canceler calls;         // every forwarded call on this connection
  kj::Own<kj::PromiseFulfiller<std::string>> interrupt;  // drops the link (fault hook)
  bool refused = false;       // the last hello was refused: say so, not "down"
};

peer_links::peer_links(kj::AsyncIoProvider& io, const cluster_config& cfg, uint32_t self,
                       uint64_t incarnation, kj::TlsContext* tls)
  : io_(io),
    cfg_(cfg),
    self_(self),
    incarnation_(incarnation),
    tls_(tls),
    error_handler_(std::make_unique<errors>()),
    tasks_(std::make_unique<kj::TaskSet>(*error_handler_)) {
  for (auto& m : cfg.members) {
    if (m.id == self) continue;
    auto l = std::make_unique<link>();
    l->member = &m;
    l->since_ms = wall_ms();
    l->backoff_ms = cfg.reconnect_min_ms;
    l->jitter.seed(incarnation ^ (uint64_t{m.id} << 48));
    links_.push_back(std::move(l));
  }
}

peer_links::~peer_links() {
  tasks_.reset();  // stops every link's loop before the links go
  for (auto& l : links_) teardown(*l, "node stopping", false);
}

void peer_links::start() {
  for (auto& l : links_) tasks_->add(run(*l));
}

peer_links::link* peer_links::find(uint32_t node) {
  for (auto& l : links_)
    if (l->member->id == node) return l.get();
  return nullptr;
}

void peer_links::set_state(link& l, const char* state, const std::string& detail) {
  if (l.state != state) {
    if (std::string(state) == "up")
      spdlog::info("link to node {} up (its incarnation {}, {})", l.member->id, l.incarnation,
                   l.member->peer);
    else if (l.state == "up" || std::string(state) == "refused")
      spdlog::warn("link to node {} {}: {}", l.member->id, state, detail);
    l.since_ms = wall_ms();
  }
  l.state = state;
  l.detail = detail;
}

kj::Promise<void> peer_links::run(link& l) {
  if (partitioned(l.member->id)) {
    set_state(l, "partitioned", "cut by the fault hook");
    return io_.getTimer().afterDelay(20 * kj::MILLISECONDS).then([this, &l] { return run(l); });
  }
  auto attempt =
    dial(l).exclusiveJoin(io_.getTimer()
                            .afterDelay(cfg_.connect_timeout_ms * kj::MILLISECONDS)
                            .then([this]() -> kj::Promise<void> {
                              return KJ_EXCEPTION(DISCONNECTED,
                                                  "no hello within connect_timeout_ms",
                                                  cfg_.connect_timeout_ms);
                            }));
  return attempt
    .then([this, &l]() -> kj::Promise<std::string> {
      if (partitioned(l.member->id)) return std::string("cut by the fault hook");
      l.refused = false;
      l.backoff_ms = cfg_.reconnect_min_ms;
      set_state(l, "up", "");
      return watch(l);
    })
    .then([](std::string why) { return why; },
          [](kj::Exception&& e) { return std::string(e.getDescription().cStr()); })
    .then([this, &l](std::string why) {
      // Torn down on the next turn, outside the callbacks of the connection it destroys.
      return kj::evalLater([this, &l, why] { teardown(l, why, l.refused); });
    })
    .then([this, &l] {
      auto wait = l.backoff_ms / 2 + static_cast<int64_t>(l.jitter() % (l.backoff_ms + 1));
      l.backoff_ms = std::min(l.backoff_ms * 2, cfg_.reconnect_max_ms);
      return io_.getTimer().afterDelay(wait * kj::MILLISECONDS).then([this, &l] { return run(l); });
    });
}

kj::Promise<void> peer_links::dial(link& l) {
  l.refused = false;
  return io_.getNetwork()
    .parseAddress(l.member->peer)
    .then([](kj::Own<kj::NetworkAddress> a) { return a->connect().attach(kj::mv(a)); })
    .then([this, &l](kj::Own<kj::AsyncIoStream> s) -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
      if (!tls_) return kj::mv(s);
      // The peer must prove it is the node this address is listed for.
      return tls_->wrapClient(kj::mv(s), node_tls_name(l.member->id));
    })
    .then([this, &l](kj::Own<kj::AsyncIoStream> s) {
      capnp::ReaderOptions o;
      o.traversalLimitInWords = 64u << 20;
      o.nestingLimit = 16;
      l.stream = kj::mv(s);
      l.network = kj::heap<capnp::TwoPartyVatNetwork>(*l.stream, capnp::rpc::twoparty::Side::CLIENT, o);
      l.rpc = kj::heap(capnp::makeRpcClient(*l.network));
      capnp::word scratch[4] = {};
      capnp::MallocMessageBuilder message(scratch);
      auto vat = message.getRoot<capnp::rpc::twoparty::VatId>();
      vat.setSide(capnp::rpc::twoparty::Side::SERVER);
      auto peer = l.rpc->bootstrap(vat).castAs<wire::Peer>();
      auto hello = peer.helloRequest();
      hello.setCluster(cfg_.name);
      hello.setFileHash(cfg_.hash);
      hello.setFrom(self_);
      hello.setTo(l.member->id);
      hello.setIncarnation(incarnation_);
      l.peer = kj::mv(peer);
      return hello.send().then([this, &l](capnp::Response<wire::Peer::HelloResults> r) {
        if (r.hasRefused() && r.getRefused().size() > 0) {
          l.refused = true;
          std::string why = r.getRefused().cStr();
          spdlog::error("node {} refused our link: {}", l.member->id, why);
          throw KJ_EXCEPTION(FAILED, "refused by the peer", why.c_str());
        }
        if (l.incarnation != 0 && l.incarnation != r.getIncarnation())
          spdlog::info("node {} restarted (incarnation {} -> {})", l.member->id, l.incarnation,
                       r.getIncarnation());
        l.incarnation = r.getIncarnation();
        client_options o;
        o.call_timeout_ms = cfg_.forward_timeout_ms;
        o.batch_size_max = cfg_.peer_batch_max;
        o.batches_in_flight_max = cfg_.peer_batches_in_flight;
        l.inventory = kj::heap<client>(r.getInventory(), io_.getTimer(), o);
      });
    });
}

kj::Promise<std::string> peer_links::watch(link& l) {
  auto paf = kj::newPromiseAndFulfiller<std::string>();
  l.interrupt = kj::mv(paf.fulfiller);
  auto lost = l.network->onDisconnect().then([] { return std::string("connection lost"); });
  return lost.exclusiveJoin(heartbeats(l)).exclusiveJoin(kj::mv(paf.promise));
}

kj::Promise<std::string> peer_links::heartbeats(link& l) {
  auto sent = steady_us();
  KJ_IF_MAYBE(peer, l.peer) {
    auto answered = peer->heartbeatRequest().send().then([](auto) { return true; });
    auto late = io_.getTimer().afterDelay(cfg_.down_after_ms * kj::MILLISECONDS).then([] {
      return false;
    });
    return answered.exclusiveJoin(kj::mv(late)).then([this, &l, sent](bool ok) -> kj::Promise<std::string> {
      if (!ok)
        return "no heartbeat answer for " + std::to_string(cfg_.down_after_ms) + " ms";
      l.rtt_us = steady_us() - sent;
      return io_.getTimer().afterDelay(cfg_.heartbeat_interval_ms * kj::MILLISECONDS).then([this, &l] {
        return heartbeats(l);
      });
    });
  }
  return std::string("no connection");
}

void peer_links::teardown(link& l, const std::string& why, bool refused) {
  bool was_up = l.state == "up";
  l.interrupt = nullptr;
  // Calls in flight end now, as outcome_unknown: their batch may have been applied.
  l.calls.cancel(kj::str("link to node ", l.member->id, " lost: ", why.c_str()));
  l.inventory = nullptr;
  l.peer = nullptr;
  l.rpc = nullptr;
  l.network = nullptr;
  l.stream = nullptr;
  if (was_up) ++l.downs;
  if (partitioned(l.member->id)) set_state(l, "partitioned", "cut by the fault hook");
  else if (refused) set_state(l, "refused", why);
  else if (was_up || l.state != "connecting" || l.detail != "not dialed yet") set_state(l, "down", why);
  else l.detail = why;
}

kj::Promise<std::vector<hold_result>> peer_links::hold_ops(uint32_t node, std::vector<hold_op> ops) {
  auto* l = find(node);
  if (!l || l->state != "up" || !l->inventory)
    return std::vector<hold_result>(ops.size(), make_hold_error(code::unavailable, why_not_up(node, l)));
  l->forwarded += ops.size();
  return forward_holds(*l->inventory, std::move(ops), "node " + std::to_string(node), l->calls);
}

kj::Promise<std::vector<sku_result>> peer_links::sku_ops(uint32_t node, std::vector<sku_op> ops) {
  auto* l = find(node);
  if (!l || l->state != "up" || !l->inventory)
    return std::vector<sku_result>(ops.size(), make_sku_error(code::unavailable, why_not_up(node, l)));
  l->forwarded += ops.size();
  return forward_skus(*l->inventory, std::move(ops), "node " + std::to_string(node), l->calls);
}

std::string peer_links::why_not_up(uint32_t node, const link* l) const {
  if (!l) return "node " + std::to_string(node) + " is not a member";
  return "node " + std::to_string(node) + " is " + l->state +
         (l->detail.empty() ? "" : " (" + l->detail + ")");
}

std::vector<link_status> peer_links::status() const {
  std::vector<link_status> out;
  for (auto& l : links_)
    out.push_back({l->member->id, l->state, l->detail, l->incarnation, l->rtt_us, l->since_ms,
                   l->forwarded, l->downs});
  return out;
}

void peer_links::partition(const std::set<uint32_t>& peers) {
  partitioned_ = peers;
  for (auto& l : links_)
    if (peers.count(l->member->id) && l->interrupt) {
      auto cut = kj::mv(l->interrupt);
      cut->fulfill("cut by the fault hook");
    }
  if (!peers.empty()) spdlog::warn("fault hook: partitioned from {} node(s)", peers.size());
  else spdlog::warn("fault hook: partition healed");
}

}  // namespace holdfast
