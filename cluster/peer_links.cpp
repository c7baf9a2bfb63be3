#include "cluster/peer_links.hpp"

#include <capnp/rpc-twoparty.h>
#include <kj/compat/tls.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <random>

#include "cluster/certs.hpp"
#include "client/client.hpp"
#include "protocol/codec.hpp"
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

struct peer_links::join_state {
  kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  kj::ForkedPromise<void> promise = nullptr;
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
  bool attempted = false;     // the first dial has ended (up, refused or failed)
  std::string fenced_why;     // this peer fenced this node, until it accepts a hello again
  uint64_t dial_epoch = 0;    // freezes_ when the current dial began
};

peer_links::peer_links(kj::AsyncIoProvider& io, const cluster_role& role, kj::TlsContext* tls)
  : io_(io),
    role_(role),
    cfg_(role.config),
    self_(role.self),
    incarnation_(role.incarnation),
    records_(role.peer_records),
    join_(std::make_unique<join_state>()),
    tls_(tls),
    error_handler_(std::make_unique<errors>()),
    tasks_(std::make_unique<kj::TaskSet>(*error_handler_)) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  join_->fulfiller = kj::mv(paf.fulfiller);
  join_->promise = paf.promise.fork();
  const auto& cfg = cfg_;
  const auto self = self_;
  const auto incarnation = incarnation_;
  for (auto& m : cfg.members) {
    if (m.id == self) continue;
    auto l = std::make_unique<link>();
    l->member = &m;
    l->since_ms = wall_ms();
    l->backoff_ms = cfg.reconnect_min_ms;
    l->jitter.seed(incarnation ^ (uint64_t{m.id} << 48));
    links_.push_back(std::move(l));
  }
  unattempted_ = links_.size();
  if (unattempted_ == 0) join_->fulfiller->fulfill();
}

peer_links::~peer_links() {
  tasks_.reset();  // stops every link's loop before the links go
  for (auto& l : links_) teardown(*l, "node stopping", false);
}

void peer_links::start() {
  for (auto& l : links_) tasks_->add(run(*l));
  last_tick_ms_ = steady_us() / 1000;
  tasks_->add(watch_freezes());
}

// A process frozen longer than down_after_ms (SIGSTOP, a paused VM) was judged down by its
// peers, and anything may have happened meanwhile (a restore of its member): it serves
// nothing until a peer accepts it again.
kj::Promise<void> peer_links::watch_freezes() {
  auto tick_ms = std::max<int64_t>(5, cfg_.down_after_ms / 5);
  return io_.getTimer().afterDelay(tick_ms * kj::MILLISECONDS).then([this] {
    auto now = steady_us() / 1000;
    if (confirmed_ && now - last_tick_ms_ > cfg_.down_after_ms) {
      spdlog::warn("this process was frozen for {} ms: it serves nothing until a peer accepts it again",
                   now - last_tick_ms_);
      confirmed_ = false;
      ++freezes_;
      // Every link says hello again: that is how a peer accepts (or fences) it.
      for (auto& l : links_)
        if (l->interrupt) {
          auto cut = kj::mv(l->interrupt);
          cut->fulfill("this process was frozen");
        }
    }
    last_tick_ms_ = now;
    return watch_freezes();
  });
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
    first_attempt_done(l);
    return io_.getTimer().afterDelay(20 * kj::MILLISECONDS).then([this, &l] { return run(l); });
  }
  auto attempt =
    dial(l).exclusiveJoin(io_.getTimer()
                            .afterDelay(cfg_.connect_timeout_ms * kj::MILLISECONDS)
                            .then([this]() -> kj::Promise<void> {
                              return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                                                   kj::str("no hello within ", cfg_.connect_timeout_ms,
                                                           " ms (connect_timeout_ms)"));
                            }));
  return attempt
    .then([this, &l]() -> kj::Promise<std::string> {
      if (partitioned(l.member->id)) return std::string("cut by the fault hook");
      l.refused = false;
      l.fenced_why.clear();
      // A hello answered before this process was frozen says nothing about now.
      if (l.dial_epoch == freezes_) confirmed_ = true;
      l.backoff_ms = cfg_.reconnect_min_ms;
      set_state(l, "up", "");
      first_attempt_done(l);
      return watch(l);
    })
    .then([](std::string why) { return why; },
          [](kj::Exception&& e) { return describe(e); })
    .then([this, &l](std::string why) {
      first_attempt_done(l);
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
  l.dial_epoch = freezes_;
  return io_.getNetwork()
    .parseAddress(l.member->peer)
    .then([](kj::Own<kj::NetworkAddress> a) { return a->connect().attach(kj::mv(a)); })
    .then([this, &l](kj::Own<kj::AsyncIoStream> s) -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
      if (!tls_) return kj::mv(s);
      // The peer must prove it is the node this address is listed for.
      return tls_->wrapClient(kj::mv(s), node_tls_name(l.member->id));
    })
    .then([this, &l](kj::Own<kj::AsyncIoStream> s) {
      l.stream = kj::mv(s);
      l.network = kj::heap<capnp::TwoPartyVatNetwork>(*l.stream, capnp::rpc::twoparty::Side::CLIENT,
                                                      codec::reader_options());
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
      hello.setGeneration(role_.generation);
      hello.setDirectoryId(role_.directory_id);
      hello.setLineage(lineage_text());
      l.peer = kj::mv(peer);
      return hello.send().then([this, &l](capnp::Response<wire::Peer::HelloResults> r) {
        std::string why;
        if (r.hasRefused() && r.getRefused().size() > 0) {
          why = "node " + std::to_string(l.member->id) + " refused this node: " + r.getRefused().cStr();
          if (r.getFenced()) l.fenced_why = why;
        } else if (auto mine = accept_lineage(l.member->id, r.getGeneration(), r.getLineage()); !mine.refused.empty()) {
          why = "this node refused node " + std::to_string(l.member->id) + ": " + mine.refused;  // our verdict
        }
        if (!why.empty()) {
          l.refused = true;  // logged once, when the link's state becomes "refused"
          throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(why));
        }
        if (l.incarnation != 0 && l.incarnation != r.getIncarnation())
          spdlog::info("node {} restarted (incarnation {} -> {})", l.member->id, l.incarnation,
                       r.getIncarnation());
        l.incarnation = r.getIncarnation();
        client_options o;
        o.call_timeout_ms = cfg_.forward_timeout_ms;
        // The owner's own limits, as it advertised them: a forwarded batch never exceeds
        // its --batch-max, and the batches in flight on this link stay within half its
        // --inflight-max (the rest is its clients').
        o.batch_size_max = cfg_.peer_batch_max;
        if (r.getBatchMax() > 0) o.batch_size_max = std::min<size_t>(o.batch_size_max, r.getBatchMax());
        o.batches_in_flight_max = cfg_.peer_batches_in_flight;
        if (r.getInflightMax() > 0)
          o.batches_in_flight_max = static_cast<unsigned>(std::clamp<uint64_t>(
            r.getInflightMax() / 2 / o.batch_size_max, 1, o.batches_in_flight_max));
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
  // No Raft traffic with the member until a hello of it is accepted again: the process that
  // comes back may be a directory that lost its data.
  if (role_.raft_gate) role_.raft_gate->withdraw(l.member->id);
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

kj::Promise<sku_page> peer_links::list_skus(uint32_t node, sku_list_query query) {
  auto* l = find(node);
  if (!l || l->state != "up" || !l->inventory) {
    sku_page p;
    p.partial = why_not_up(node, l);
    return p;
  }
  return forward_list(*l->inventory, std::move(query), "node " + std::to_string(node), l->calls);
}

kj::Promise<std::vector<cart_result>> peer_links::cart_ops(uint32_t node, std::vector<cart_op> ops) {
  auto* l = find(node);
  if (!l || l->state != "up" || !l->inventory)
    return std::vector<cart_result>(ops.size(), make_cart_error(code::unavailable, why_not_up(node, l)));
  l->forwarded += ops.size();
  return forward_carts(*l->inventory, std::move(ops), "node " + std::to_string(node), l->calls);
}

kj::Promise<std::vector<order_result>> peer_links::order_ops(uint32_t node, std::vector<order_op> ops) {
  auto* l = find(node);
  if (!l || l->state != "up" || !l->inventory)
    return std::vector<order_result>(ops.size(), order_result{code::unavailable, why_not_up(node, l), {}});
  l->forwarded += ops.size();
  return forward_orders(*l->inventory, std::move(ops), "node " + std::to_string(node), l->calls);
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
                   l->forwarded, l->downs,
                   records_.count(l->member->id) ? records_.at(l->member->id).generation : 0});
  return out;
}

hello_verdict judge_hello(const cluster_role& role, const hello_claim& hello) {
  auto from = std::to_string(hello.from);
  if (hello.cluster != role.config.name || hello.file_hash != role.config.hash)
    return {"cluster file mismatch: node " + std::to_string(role.self) + " runs cluster \"" + role.config.name +
            "\" with file hash " + role.config.hash + ", node " + from + " runs \"" + hello.cluster + "\" with " +
            hello.file_hash + "; every member must read the same file"};
  if (hello.to != role.self) return {"this is node " + std::to_string(role.self) + ", not node " + std::to_string(hello.to)};
  if (hello.from == role.self || !role.config.member(hello.from))
    return {"node " + from + " is not another member of this cluster"};
  if (!role.config.ca.empty() && hello.certificate_name != node_tls_name(hello.from))
    return {"the certificate names \"" + hello.certificate_name + "\", not node " + from};
  if (hello.live_incarnation != 0 && hello.live_incarnation != hello.incarnation)
    return {"node " + from + " is already running here (incarnation " + std::to_string(hello.live_incarnation) +
              ", its link up and answering heartbeats); a second process with its identity (incarnation " +
              std::to_string(hello.incarnation) + ") is refused",
            false};  // not a fence: a restart may race its own old link's timeout; a real copy
                     // is fenced by its lineage
  return {};
}

void peer_links::first_attempt_done(link& l) {
  if (l.attempted) return;
  l.attempted = true;
  if (--unattempted_ == 0) join_->fulfiller->fulfill();
}

kj::Promise<void> peer_links::joined() { return join_->promise.addBranch(); }

std::string peer_links::not_serving() const {
  if (links_.empty()) return "";
  auto self = "node " + std::to_string(self_);
  std::string fences, refusals;
  for (auto& l : links_) {
    if (!l->fenced_why.empty()) fences += (fences.empty() ? "" : "; ") + l->fenced_why;
    else if (l->state == "refused") refusals += (refusals.empty() ? "" : "; ") + l->detail;
  }
  if (!fences.empty()) return self + " serves nothing: " + fences;
  auto frozen_ms = steady_us() / 1000 - last_tick_ms_;
  if (confirmed_ && last_tick_ms_ != 0 && frozen_ms > cfg_.down_after_ms)
    return self + " was frozen for " + std::to_string(frozen_ms) + " ms: it serves nothing until a peer accepts it again";
  if (confirmed_) return "";
  if (unattempted_ > 0) return self + " is joining the cluster (asking its peers)";
  return self + " serves nothing until a peer accepts it: " +
         (refusals.empty() ? "no peer reachable yet (a member serves only once a peer has confirmed its cluster "
                             "file and data directory)"
                           : refusals);
}

uint64_t peer_links::live_incarnation(uint32_t node) const {
  for (auto& l : links_)
    if (l->member->id == node && l->state == "up") return l->incarnation;
  return 0;
}

std::string peer_links::lineage_text() const {
  std::string out;
  for (auto& t : role_.lineage) out += (out.empty() ? "" : ",") + t;
  return out;
}

hello_verdict peer_links::accept_lineage(uint32_t node, uint64_t generation, const std::string& lineage) {
  auto verdict = judge_lineage(node, generation, lineage);
  // Raft traffic goes only to members accepted here, and stops for one fenced here unless
  // the link to it is up (another process claiming it must not cut the one accepted).
  if (role_.raft_gate && verdict.refused.empty()) role_.raft_gate->allow(node);
  if (role_.raft_gate && verdict.fenced && live_incarnation(node) == 0) role_.raft_gate->withdraw(node);
  return verdict;
}

hello_verdict peer_links::judge_lineage(uint32_t node, uint64_t generation, const std::string& lineage) {
  generation = std::max<uint64_t>(generation, 1);
  std::vector<std::string> tokens;
  for (size_t at = 0; at < lineage.size();) {
    auto comma = lineage.find(',', at);
    if (comma == std::string::npos) comma = lineage.size();
    tokens.push_back(lineage.substr(at, comma - at));
    at = comma + 1;
  }
  auto who = "node " + std::to_string(node);
  constexpr uint64_t generation_max = uint64_t{1} << 48;
  bool well_formed = generation <= generation_max && tokens.size() <= directory_identity::lineage_max;
  for (auto& t : tokens)
    well_formed = well_formed && t.size() == 16 && std::all_of(t.begin(), t.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
  if (!well_formed) return {who + " sent a malformed generation or lineage"};
  auto known = records_.find(node);
  if (known != records_.end()) {
    auto& r = known->second;
    if (generation < r.generation)
      return {who + " runs generation " + std::to_string(generation) + " of its data directory, but generation " +
                std::to_string(r.generation) + " was accepted here: that directory was replaced by `holdfast restore` "
                "(or `holdfast cluster replace`) and must not serve again",
              true};
    if (generation == r.generation && !r.token.empty() &&
        std::find(tokens.begin(), tokens.end(), r.token) == tokens.end())
      return {who + "'s data directory is behind: another copy of it (generation " + std::to_string(generation) +
                ") ran since this one last linked here (a copy of a member's directory, or a second restore of one "
                "backup); it must not serve",
              true};
  }
  bool superseding = known != records_.end() && generation > known->second.generation;
  peer_record next{generation, tokens.empty() ? std::string() : tokens.back()};
  if (known == records_.end() || known->second.generation != next.generation || known->second.token != next.token) {
    auto before = records_;
    records_[node] = next;
    std::string error;
    // Durable before the hello is accepted: a record lost in a crash would let the copy it
    // fences back in.
    if (!role_.data_dir.empty() && !write_peer_records(role_.data_dir, records_, error)) {
      records_ = before;
      spdlog::error("cannot record {}'s lineage: {}", who, error);
      return {"node " + std::to_string(self_) + " cannot record " + who + "'s lineage: " + error};
    }
  }
  if (superseding) {
    spdlog::warn("{} now runs generation {} of its data directory (restored): its older connections go", who,
                 generation);
    if (on_superseded) on_superseded(node);
    if (auto* l = find(node); l && l->interrupt) {
      auto cut = kj::mv(l->interrupt);
      cut->fulfill(who + " was restored (generation " + std::to_string(generation) + ")");
    }
  }
  return {};
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
