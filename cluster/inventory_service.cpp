#include "cluster/inventory_service.hpp"

#include <chrono>
#include <capnp/rpc-twoparty.h>
#include <capnp/schema.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/compat/tls.h>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <signal.h>
#include <unistd.h>
#include <atomic>
#include <cstring>
#include <deque>
#include <future>
#include <list>
#include <set>
#include <thread>
#include "cluster/certs.hpp"
#include "client/client.hpp"
#include "cluster/frame_watcher.hpp"
#include "cluster/http_endpoint.hpp"
#include "gateway/webhook.hpp"
#include "cluster/peer_links.hpp"
#include "protocol/order_wire.hpp"
#include <type_traits>

#include "client/router.hpp"
#include "protocol/codec.hpp"
#include "protocol/log.hpp"

namespace holdfast::net {
namespace {

// Answers `ops` with `mine(owned ops)` for the operations this node owns and `foreign`
// for the rest: a peer forwarded them here, so the members disagree about placement, and
// serving them would make a second owner.
const std::string& entity_key(const hold_op& op) { return op.sku; }
const std::string& entity_key(const sku_op& op) { return op.sku; }
const std::string& entity_key(const cart_op& op) { return op.user; }
const std::string& entity_key(const order_op& op) { return op.order_id; }

// Whether this node serves `op` when a peer forwards it: placement's owner, or (replicated
// SKUs) always: the replica group's gate answers for itself when this node does not lead.
template <class Op>
bool serves_here(const router& route, const Op& op) {
  if constexpr (std::is_same_v<Op, hold_op> || std::is_same_v<Op, sku_op>)
    if (route.replicated_skus()) return true;
  return entity_key(op).empty() || route.owner(entity_key(op)) == route.self();
}

template <class Op, class Result, class Mine, class Foreign>
kj::Promise<std::vector<Result>> owned_only(const router& route, std::vector<Op> ops, Mine mine,
                                            Foreign foreign) {
  std::vector<size_t> kept;
  std::vector<Op> owned;
  for (size_t i = 0; i < ops.size(); ++i)
    if (serves_here(route, ops[i])) {
      kept.push_back(i);
      owned.push_back(std::move(ops[i]));
    }
  if (kept.size() == ops.size()) return mine(std::move(owned));
  auto n = ops.size();
  std::vector<Result> out(n, foreign("node " + std::to_string(route.self()) +
                                     " does not own this entity here; do the members run the same "
                                     "cluster file?"));
  if (owned.empty()) return out;
  return mine(std::move(owned)).then([out = std::move(out), kept](std::vector<Result> rs) mutable {
    for (size_t j = 0; j < kept.size() && j < rs.size(); ++j) out[kept[j]] = std::move(rs[j]);
    return std::move(out);
  });
}

class inventory_impl final : public wire::Inventory::Server {
public:
  // `from_peer`: the calls were forwarded by another member; they are served here, never
  // forwarded again.
  inventory_impl(network_context& net, connection_ptr conn, bool from_peer)
    : options_(net.options), node_(net), conn_(std::move(conn)),
      from_peer_(from_peer) {}

  // Every call, counted by method as it answers or fails (holdfast_rpc_calls_total).
  DispatchCallResult dispatchCall(uint64_t interface_id, uint16_t method_id,
                                  capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context) override {
    // Clients' calls only: a call a peer forwarded was counted by the member that took it.
    if (from_peer_ || interface_id != capnp::typeId<wire::Inventory>() || method_id >= node_.rpc_calls.size())
      return wire::Inventory::Server::dispatchCall(interface_id, method_id, context);
    auto* counts = &node_.rpc_calls[method_id];  // sized once, never moves
    auto r = [&] {
      try {  // admission refuses (OVERLOADED) by throwing before the method's promise exists
        return wire::Inventory::Server::dispatchCall(interface_id, method_id, context);
      } catch (...) {
        ++counts->failed;
        throw;
      }
    }();
    r.promise = r.promise.then([counts] { ++counts->answered; },
                               [counts](kj::Exception&& e) {
                                 ++counts->failed;
                                 kj::throwFatalException(kj::mv(e));
                               });
    return r;
  }

  kj::Promise<void> createSku(CreateSkuContext ctx) override {
    auto p = ctx.getParams();
    return sku_call(ctx, {sku_op_kind::create, codec::str(p.getSku()), p.getStock(),
                          p.getPriceCents(), codec::str(p.getTitle()), p.getLimitPerUser()});
  }
  kj::Promise<void> querySku(QuerySkuContext ctx) override {
    return sku_call(ctx, {sku_op_kind::query, codec::str(ctx.getParams().getSku()), 0, 0, {}});
  }
  kj::Promise<void> restock(RestockContext ctx) override {
    auto p = ctx.getParams();
    return sku_call(ctx, {sku_op_kind::restock, codec::str(p.getSku()), p.getQty(), 0, {}});
  }
  kj::Promise<void> adjust(AdjustContext ctx) override {
    auto p = ctx.getParams();
    return sku_call(ctx, {sku_op_kind::adjust, codec::str(p.getSku()), p.getOnHand(), 0, {}});
  }

  kj::Promise<void> setPrice(SetPriceContext ctx) override {
    auto p = ctx.getParams();
    return sku_call(ctx, {sku_op_kind::set_price, codec::str(p.getSku()), 0, p.getPriceCents(), {}, 0});
  }

  kj::Promise<void> reserve(ReserveContext ctx) override {
    return one_hold(ctx, codec::read_reserve(ctx.getParams().getRequest()));
  }
  kj::Promise<void> confirm(ConfirmContext ctx) override {
    return one_hold(ctx, codec::read_ref(ctx.getParams().getHold(), hold_op_kind::confirm));
  }
  kj::Promise<void> release(ReleaseContext ctx) override {
    return one_hold(ctx, codec::read_ref(ctx.getParams().getHold(), hold_op_kind::release));
  }
  kj::Promise<void> queryHold(QueryHoldContext ctx) override {
    return one_hold(ctx, codec::read_ref(ctx.getParams().getHold(), hold_op_kind::query));
  }

  kj::Promise<void> extend(ExtendContext ctx) override {
    return one_hold(ctx, codec::read_ref(ctx.getParams().getHold(), hold_op_kind::extend));
  }
  kj::Promise<void> returnHold(ReturnHoldContext ctx) override {
    return one_hold(ctx, codec::read_ref(ctx.getParams().getHold(), hold_op_kind::return_hold));
  }
  kj::Promise<void> returnBatch(ReturnBatchContext ctx) override { return ref_batch(ctx, hold_op_kind::return_hold); }
  kj::Promise<void> extendBatch(ExtendBatchContext ctx) override { return ref_batch(ctx, hold_op_kind::extend); }

  kj::Promise<void> listHolds(ListHoldsContext ctx) override {
    auto q = ctx.getParams().getQuery();
    sku_op op{sku_op_kind::list_holds, codec::str(q.getSku()), 0, 0, {}};
    op.state = codec::str(q.getState());
    op.after = codec::str(q.getAfter());
    op.limit = q.getLimit();
    return sku_call(ctx, std::move(op), [](auto results, const sku_result& r) {
      auto holds = results.initHolds(r.holds.size());
      for (size_t i = 0; i < r.holds.size(); ++i) codec::write(holds[i], r.holds[i]);
      results.setNext(r.next);
    });
  }

  kj::Promise<void> listSkus(ListSkusContext ctx) override {
    auto in = ctx.getParams().getQuery();
    auto query = codec::read(in);
    auto why = forbidden(role::client);
    if (!why.empty()) why = "forbidden: " + why;
    else why = validate(query);
    if (!why.empty()) {
      sku_page refused;
      refused.invalid = why;
      codec::write(ctx.getResults().initPage(), refused);
      return kj::READY_NOW;
    }
    if (query.limit == 0) query.limit = sku_list_limit_default;
    // A page costs about what `limit` queries do (rows read, merged and encoded), so it is
    // admitted as that many operations: a flood of pages cannot starve the node.
    auto admitted = admit(query.limit);
    node_.calls_total += 1;
    auto page = in.getLocalOnly() || !node_.route ? node_.local_list(std::move(query))
                                                  : node_.route->list_skus(std::move(query));
    return page.then([ctx](sku_page p) mutable { codec::write(ctx.getResults().initPage(), p); })
      .attach(kj::mv(admitted));
  }

  kj::Promise<void> reserveBatch(ReserveBatchContext ctx) override {
    auto list = ctx.getParams().getRequests();
    return batch(ctx, hold_op_kind::reserve, list.size(), [&](std::vector<hold_op>& ops) {
      for (auto r : list) ops.push_back(codec::read_reserve(r));
    });
  }
  kj::Promise<void> confirmBatch(ConfirmBatchContext ctx) override { return ref_batch(ctx, hold_op_kind::confirm); }
  kj::Promise<void> releaseBatch(ReleaseBatchContext ctx) override { return ref_batch(ctx, hold_op_kind::release); }

  kj::Promise<void> createSkuBatch(CreateSkuBatchContext ctx) override {
    auto list = ctx.getParams().getRequests();
    if (list.size() > options_.limits.batch_size_max) {
      ctx.getResults().setRefused("batch of " + std::to_string(list.size()) +
                                  " operations exceeds " +
                                  std::to_string(options_.limits.batch_size_max));
      return kj::READY_NOW;
    }
    if (auto why = forbidden(role::admin); !why.empty()) {
      auto out = ctx.getResults().initResults(list.size());
      for (auto r : out) r.setForbidden(why);
      return kj::READY_NOW;
    }
    std::vector<sku_op> ops;
    ops.reserve(list.size());
    for (auto r : list)
      ops.push_back({sku_op_kind::create, codec::str(r.getSku()), r.getStock(), r.getPriceCents(),
                     codec::str(r.getTitle()), r.getLimitPerUser()});
    return sku_ops(std::move(ops)).then([ctx](std::vector<sku_result> rs) mutable {
      auto out = ctx.getResults().initResults(rs.size());
      for (size_t i = 0; i < rs.size(); ++i) codec::write(out[i], rs[i]);
    });
  }

  kj::Promise<void> cartOps(CartOpsContext ctx) override {
    return entity_batch<cart_op, cart_result>(
      ctx, [this](const cart_op& op) { return validate(op, options_.limits); }, [](const cart_op&) { return role::client; },
      [this](std::vector<cart_op> ops) { return cart_ops(std::move(ops)); },
      [](code c, std::string why) { return make_cart_error(c, std::move(why)); });
  }

  kj::Promise<void> orderOps(OrderOpsContext ctx) override {
    return entity_batch<order_op, order_result>(
      ctx,
      [this](const order_op& op) -> std::string {
        // Placing is the checkout's (a member's), not a client's.
        if (op.kind == order_op_kind::place && !from_peer_) return "orders are placed by checkout";
        return validate(op, options_.limits);
      },
      [](const order_op& op) { return needed(op.kind); },
      [this](std::vector<order_op> ops) { return order_ops(std::move(ops)); },
      [](code c, std::string why) { return order_result{c, std::move(why), {}}; });
  }

  // A batch of entity operations from the wire: each checked (`refused` says why not, or
  // ""), the sound ones run by `run`, every answer written in the caller's order.
  template <class Op, class Result, class Context, class Refused, class Need, class Run, class Invalid>
  kj::Promise<void> entity_batch(Context ctx, Refused refused, Need need, Run run, Invalid invalid) {
    auto list = ctx.getParams().getOps();
    // Cart and order operations carry whole carts and orders: fewer in a batch
    // (protocol/limits.hpp), so the answer fits one frame.
    auto most = std::min(options_.limits.batch_size_max, entity_batch_max);
    if (list.size() > most) {
      ctx.getResults().setRefused("batch of " + std::to_string(list.size()) + " operations exceeds " +
                                  std::to_string(most));
      return kj::READY_NOW;
    }
    auto out = std::make_shared<std::vector<Result>>(list.size());
    std::vector<size_t> at;
    std::vector<Op> ops;
    for (unsigned i = 0; i < list.size(); ++i) {
      auto op = codec::read(list[i]);
      if (auto why = forbidden(need(op)); !why.empty()) {
        (*out)[i] = invalid(code::forbidden, why);
        continue;
      }
      if (auto why = refused(op); !why.empty()) {
        (*out)[i] = invalid(code::invalid, why);
        continue;
      }
      at.push_back(i);
      ops.push_back(std::move(op));
    }
    auto write = [ctx, out]() mutable {
      auto results = ctx.getResults().initResults(static_cast<unsigned>(out->size()));
      for (unsigned i = 0; i < out->size(); ++i) codec::write(results[i], (*out)[i]);
    };
    if (ops.empty()) {
      write();
      return kj::READY_NOW;
    }
    auto admitted = admit(ops.size());
    node_.calls_total += ops.size();
    return run(std::move(ops))
      .then([out, at = std::move(at), write](std::vector<Result> rs) mutable {
        for (size_t j = 0; j < at.size() && j < rs.size(); ++j) (*out)[at[j]] = std::move(rs[j]);
        write();
      })
      .attach(kj::mv(admitted));
  }

  kj::Promise<void> checkout(CheckoutContext ctx) override {
    auto p = ctx.getParams();
    auto user = codec::str(p.getUser()), card = codec::str(p.getCard()), key = codec::str(p.getKey());
    auto refuse = [ctx](std::string why, code status = code::invalid) mutable {
      checkout_result r;
      r.status = status;
      r.message = std::move(why);
      codec::write(ctx.getResults().initResult(), r);
      return kj::READY_NOW;
    };
    if (auto why = forbidden(role::client); !why.empty()) return refuse(why, code::forbidden);
    if (auto why = validate(cart_op{cart_op_kind::view, user, {}, 0, 0, 0, {}}, options_.limits); !why.empty())
      return refuse(why);
    auto printable = [](const std::string& s) {
      return std::none_of(s.begin(), s.end(), [](char ch) {
        auto c = static_cast<unsigned char>(ch);
        return c < 0x21 || c == 0x7f;
      });
    };
    if (card.empty() || card.size() > card_bytes_max || !valid_utf8(card) || !printable(card))
      return refuse("a card token of 1.." + std::to_string(card_bytes_max) +
                    " bytes, without whitespace or control characters, is required");
    if (key.empty() || key.size() > idempotency_key_bytes_max || !valid_utf8(key) || !printable(key))
      return refuse("an idempotency key of 1.." + std::to_string(idempotency_key_bytes_max) +
                    " bytes, without whitespace or control characters, is required");
    auto admitted = admit(1);
    node_.calls_total += 1;
    return checkout(std::move(user), std::move(card), std::move(key))
      .then([ctx](checkout_result r) mutable { codec::write(ctx.getResults().initResult(), r); })
      .attach(kj::mv(admitted));
  }

  kj::Promise<void> status(StatusContext ctx) override {
    // Admitted like any call: a flood of them meets --inflight-max and
    // --connection-inflight-max (OVERLOADED) rather than queueing without bound.
    auto admitted = admit(1);
    node_.calls_total += 1;
    return node_.directory_counters().then([this, ctx](directory_stats s) mutable {
      auto out = ctx.getResults().initStatus();
      auto& net = node_;
      out.setSkusActive(s.active_actors);
      out.setCallsTotal(net.calls_total);
      out.setCallsPerSecond(net.calls_per_second());
      out.setStartedMs(net.started_ms);
      out.setVersion(options_.version);
      if (!net.role) return;
      out.setNodeId(net.role->self);
      out.setIncarnation(net.role->incarnation);
      out.setCluster(net.role->config.name);
      out.setFileHash(net.role->config.hash);
      out.setClusterId(net.role->config.id);
      out.setGeneration(net.role->generation);
      if (net.links) out.setNotServing(net.links->not_serving());
      if (options_.raft_status) {
        auto g = options_.raft_status();
        auto r = out.initRaft();
        r.setPresent(true);
        r.setState(g.state);
        r.setServing(g.serving);
        r.setTerm(g.term);
        r.setCommitIndex(g.commit_index);
        r.setLastApplied(g.last_applied);
        r.setLeader(g.leader);
        r.setSnapshotIndex(g.snapshot_index);
        r.setSnapshotsTaken(g.snapshots_taken);
        r.setStatesInstalled(g.states_installed);
        auto fs = r.initFollowers(static_cast<unsigned>(g.followers.size()));
        for (unsigned i = 0; i < g.followers.size(); ++i) {
          fs[i].setNode(g.followers[i].node);
          fs[i].setMatchIndex(g.followers[i].match_index);
          fs[i].setLag(g.followers[i].lag);
          fs[i].setReplica(g.followers[i].replica);
        }
        r.setReplica(g.replica);
        auto vs = r.initServers(static_cast<unsigned>(g.servers.size()));
        for (unsigned i = 0; i < g.servers.size(); ++i) {
          vs[i].setReplica(g.servers[i].replica);
          vs[i].setNode(g.servers[i].node);
          vs[i].setRole(g.servers[i].role);
          vs[i].setAddress(g.servers[i].address);
        }
      }
      out.setForwardedTotal(net.route ? net.route->forwarded() : 0);
      auto links = net.links ? net.links->status() : std::vector<link_status>{};
      auto list = out.initLinks(static_cast<unsigned>(links.size()));
      for (unsigned i = 0; i < links.size(); ++i) {
        auto& l = links[i];
        list[i].setNode(l.node);
        list[i].setState(l.state);
        list[i].setDetail(l.detail);
        list[i].setIncarnation(l.incarnation);
        list[i].setRttMicros(l.rtt_us);
        list[i].setSinceMs(l.since_ms);
        list[i].setForwarded(l.forwarded);
        list[i].setDowns(l.downs);
        list[i].setGeneration(l.generation);
      }
    }).attach(kj::mv(admitted));
  }

  kj::Promise<void> orderEvents(OrderEventsContext ctx) override {
    auto p = ctx.getParams();
    auto out = ctx.getResults();
    if (node_.role) out.setNode(node_.role->self);
    if (auto why = forbidden(role::client); !why.empty()) {
      out.setRefused("forbidden: " + why);
      return kj::READY_NOW;
    }
    if (!options_.order_events) {
      out.setRefused("this node keeps no order events");
      return kj::READY_NOW;
    }
    auto limit = std::min<size_t>(std::max<uint32_t>(p.getLimit(), 1), order_events_limit_max);
    auto page = options_.order_events(p.getFrom(), limit);
    if (!page.error.empty()) {
      out.setRefused(page.error);
      return kj::READY_NOW;
    }
    out.setNext(page.next);
    auto list = out.initEvents(static_cast<unsigned>(page.events.size()));
    for (unsigned i = 0; i < list.size(); ++i) {
      list[i].setSeq(page.events[i].seq);
      codec::write(list[i].initOrder(), page.events[i].order);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> listOrders(ListOrdersContext ctx) override {
    auto q = ctx.getParams().getQuery();
    auto out = ctx.getResults();
    if (node_.role) out.setNode(node_.role->self);
    if (auto why = forbidden(role::client); !why.empty()) {
      out.setRefused("forbidden: " + why);
      return kj::READY_NOW;
    }
    if (!options_.list_orders) {
      out.setRefused("this node keeps no orders");
      return kj::READY_NOW;
    }
    order_list_query query{codec::str(q.getUser()), codec::str(q.getState()), codec::str(q.getAfter()), q.getLimit()};
    auto why = validate(query);
    if (!why.empty()) {
      out.setRefused(why);
      return kj::READY_NOW;
    }
    auto page = options_.list_orders(query);
    if (!page.error.empty()) {
      out.setRefused(page.error);
      return kj::READY_NOW;
    }
    out.setNext(page.next);
    auto list = out.initOrders(static_cast<unsigned>(page.orders.size()));
    for (unsigned i = 0; i < list.size(); ++i) codec::write(list[i], page.orders[i]);
    return kj::READY_NOW;
  }

  kj::Promise<void> members(MembersContext ctx) override {
    auto out = ctx.getResults();
    if (!node_.role) return kj::READY_NOW;
    auto& cfg = node_.role->config;
    out.setCluster(cfg.name);
    out.setFileHash(cfg.hash);
    auto list = out.initMembers(static_cast<unsigned>(cfg.members.size()));
    for (unsigned i = 0; i < cfg.members.size(); ++i) {
      list[i].setId(cfg.members[i].id);
      list[i].setClient(cfg.members[i].client);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> faultPartition(FaultPartitionContext ctx) override {
    if (auto why = forbidden(role::admin); !why.empty()) {
      ctx.getResults().setRefused("forbidden: " + why);
      return kj::READY_NOW;
    }
    if (!node_.role || !node_.role->fault_hooks || !node_.links) {
      ctx.getResults().setRefused("fault hooks are off: the node runs without --fault-hooks");
      return kj::READY_NOW;
    }
    std::set<uint32_t> peers;
    for (auto id : ctx.getParams().getPeers())
      if (id != node_.role->self && node_.role->config.member(id)) peers.insert(id);
    node_.links->partition(peers);
    node_.close_peers(peers);
    if (options_.raft_partition) options_.raft_partition(peers);
    return kj::READY_NOW;
  }

  // Why an admin's call about the SKU group's replicas is refused here ("" when it is not):
  // `wired`: this node has a replica; `member`: a node the call names (0: none).
  std::string replica_call_refused(bool wired, uint32_t member = 0) {
    if (auto why = forbidden(role::admin); !why.empty()) return "forbidden: " + why;
    if (!wired) return "the SKUs are not replicated in this cluster";
    if (member != 0 && (!node_.role || !node_.role->config.member(member)))
      return "node " + std::to_string(member) + " is not a member of this cluster";
    return "";
  }

  // The replica answers on its own thread: a promise here, and the function that fulfils it
  // from there.
  template <typename T>
  static std::pair<kj::Promise<T>, std::function<void(T)>> replica_answer() {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<T>();
    auto fulfiller = std::make_shared<kj::Own<kj::CrossThreadPromiseFulfiller<T>>>(kj::mv(paf.fulfiller));
    return {kj::mv(paf.promise), [fulfiller](T value) { (*fulfiller)->fulfill(kj::mv(value)); }};
  }

  kj::Promise<void> transferLeadership(TransferLeadershipContext ctx) override {
    uint32_t to = ctx.getParams().getTo();
    if (auto refused = replica_call_refused(bool(options_.raft_transfer), to); !refused.empty()) {
      ctx.getResults().setRefused(refused);
      return kj::READY_NOW;
    }
    // Answered within an election timeout.
    using answer = std::pair<uint32_t, std::string>;
    auto [promise, fulfil] = replica_answer<answer>();
    options_.raft_transfer(to, [fulfil = fulfil](uint32_t leader, std::string why) { fulfil({leader, std::move(why)}); });
    return promise.then([ctx](answer a) mutable {
      auto out = ctx.getResults();
      out.setLeader(a.first);
      out.setRefused(a.second);
    });
  }

  kj::Promise<void> replaceReplica(ReplaceReplicaContext ctx) override {
    uint32_t node = ctx.getParams().getNode();
    if (auto refused = replica_call_refused(bool(options_.raft_replace), node); !refused.empty()) {
      ctx.getResults().setRefused(refused);
      return kj::READY_NOW;
    }
    using answer = std::pair<uint64_t, std::string>;
    auto [promise, fulfil] = replica_answer<answer>();
    options_.raft_replace(node, [fulfil = fulfil](uint64_t replica, std::string why) { fulfil({replica, std::move(why)}); });
    return promise.then([ctx](answer a) mutable {
      auto out = ctx.getResults();
      out.setReplica(a.first);
      out.setRefused(a.second);
    });
  }

  kj::Promise<void> promoteReplica(PromoteReplicaContext ctx) override {
    if (auto refused = replica_call_refused(bool(options_.raft_promote)); !refused.empty()) {
      ctx.getResults().setRefused(refused);
      return kj::READY_NOW;
    }
    auto [promise, fulfil] = replica_answer<std::string>();
    options_.raft_promote(ctx.getParams().getReplica(), fulfil);
    return promise.then([ctx](std::string why) mutable { ctx.getResults().setRefused(why); });
  }

  kj::Promise<void> login(LoginContext ctx) override {
    auto out = ctx.getResults();
    if (!options_.tokens) {  // no roles: every connection may do everything
      out.setRole(to_string(conn_->granted));
      return kj::READY_NOW;
    }
    auto* entry = options_.tokens->find(codec::str(ctx.getParams().getToken()));
    if (!entry) {
      ++node_.logins_refused;
      static rate_limit limit;
      uint64_t suppressed = 0;
      if (limit.allow(suppressed)) spdlog::warn("a login with an unknown token was refused ({} more)", suppressed);
      out.setRefused("unknown token");
      out.setRole(to_string(conn_->granted));
      return kj::READY_NOW;
    }
    conn_->granted = entry->granted;
    out.setRole(to_string(entry->granted));
    return kj::READY_NOW;
  }

private:
  // Why this connection may not make a call that needs `need` ("" when it may). Calls a
  // peer forwarded were checked by the member that took them.
  std::string forbidden(role need) {
    if (from_peer_ || may(conn_->granted, need)) return {};
    ++node_.forbidden_total;
    return forbidden_text(conn_->granted, need);
  }

  // Why this node may not serve entities now, or "" (peer_links::not_serving).
  std::string not_serving() const { return node_.links ? node_.links->not_serving() : std::string(); }

  kj::Promise<std::vector<hold_result>> local_holds(std::vector<hold_op> ops) {
    if (auto why = not_serving(); !why.empty())
      return std::vector<hold_result>(ops.size(), make_hold_error(code::unavailable, why));
    if (!node_.route) return node_.local.holds(std::move(ops));
    if (!from_peer_) return node_.route->holds(std::move(ops));
    return owned_only<hold_op, hold_result>(
      *node_.route, std::move(ops), [this](std::vector<hold_op> o) { return node_.local.holds(std::move(o)); },
      [](std::string why) { return make_hold_error(code::unavailable, std::move(why)); });
  }

  kj::Promise<std::vector<sku_result>> sku_ops(std::vector<sku_op> ops) {
    auto admitted = admit(ops.size());
    node_.calls_total += ops.size();
    kj::Promise<std::vector<sku_result>> p = nullptr;
    if (auto why = not_serving(); !why.empty())
      p = std::vector<sku_result>(ops.size(), make_sku_error(code::unavailable, why));
    else if (!node_.route) p = node_.local.skus(std::move(ops));
    else if (!from_peer_) p = node_.route->skus(std::move(ops));
    else
      p = owned_only<sku_op, sku_result>(
        *node_.route, std::move(ops), [this](std::vector<sku_op> o) { return node_.local.skus(std::move(o)); },
        [](std::string why) { return make_sku_error(code::unavailable, std::move(why)); });
    return p.attach(kj::mv(admitted));
  }

  // Cart operations to their users' owners. The member that took the call first asks
  // the owners of the SKUs that adds and sets name: a cart holds only SKUs that exist.
  kj::Promise<std::vector<cart_result>> cart_ops(std::vector<cart_op> ops) {
    if (auto why = not_serving(); !why.empty())
      return std::vector<cart_result>(ops.size(), make_cart_error(code::unavailable, why));
    auto send = [this](std::vector<cart_op> o) -> kj::Promise<std::vector<cart_result>> {
      if (!node_.route) return node_.local.carts(std::move(o));
      if (!from_peer_) return node_.route->carts(std::move(o));
      return owned_only<cart_op, cart_result>(
        *node_.route, std::move(o), [this](std::vector<cart_op> x) { return node_.local.carts(std::move(x)); },
        [](std::string why) { return make_cart_error(code::unavailable, std::move(why)); });
    };
    if (from_peer_) return send(std::move(ops));
    std::vector<std::string> named;
    for (auto& op : ops)
      if ((op.kind == cart_op_kind::add || (op.kind == cart_op_kind::set && op.qty > 0)) &&
          std::find(named.begin(), named.end(), op.sku) == named.end())
        named.push_back(op.sku);
    if (named.empty()) return send(std::move(ops));
    auto checks = kj::heapArrayBuilder<kj::Promise<std::vector<sku_result>>>(named.size());
    for (auto& sku : named) {
      std::vector<sku_op> query{sku_op{sku_op_kind::query, sku, 0, 0, {}, 0}};
      checks.add(node_.route ? node_.route->skus(std::move(query)) : node_.local.skus(std::move(query)));
    }
    return kj::joinPromises(checks.finish())
      .then([this, ops = std::move(ops), named = std::move(named), send](
              kj::Array<std::vector<sku_result>> found) mutable -> kj::Promise<std::vector<cart_result>> {
        std::vector<cart_result> out(ops.size());
        std::vector<size_t> at;
        std::vector<cart_op> checked;
        for (size_t i = 0; i < ops.size(); ++i) {
          auto it = std::find(named.begin(), named.end(), ops[i].sku);
          bool checks_sku = ops[i].kind == cart_op_kind::add || (ops[i].kind == cart_op_kind::set && ops[i].qty > 0);
          if (checks_sku && it != named.end()) {
            auto& answer = found[static_cast<size_t>(it - named.begin())];
            auto status = answer.empty() ? code::unavailable : answer.front().status;
            if (status == code::unknown_sku) {
              out[i] = make_cart_error(code::unknown_sku, "sku '" + ops[i].sku + "' does not exist");
              continue;
            }
            if (status != code::ok) {
              out[i] = make_cart_error(code::unavailable, "sku '" + ops[i].sku + "' could not be checked: " +
                                                            (answer.empty() ? std::string() : answer.front().message));
              continue;
            }
            // The price the user sees now goes with the line (what a client sent is not).
            ops[i].price_cents = answer.front().sku.price_cents;
          }
          at.push_back(i);
          checked.push_back(std::move(ops[i]));
        }
        if (checked.empty()) return out;
        return send(std::move(checked)).then([out = std::move(out), at = std::move(at)](std::vector<cart_result> rs) mutable {
          for (size_t j = 0; j < at.size() && j < rs.size(); ++j) out[at[j]] = std::move(rs[j]);
          return std::move(out);
        });
      });
  }

  kj::Promise<std::vector<order_result>> order_ops(std::vector<order_op> ops) {
    if (auto why = not_serving(); !why.empty())
      return std::vector<order_result>(ops.size(), order_result{code::unavailable, why, {}});
    if (!node_.route) return node_.local.orders(std::move(ops));
    if (!from_peer_) return node_.route->orders(std::move(ops));
    return owned_only<order_op, order_result>(
      *node_.route, std::move(ops), [this](std::vector<order_op> x) { return node_.local.orders(std::move(x)); },
      [](std::string why) { return order_result{code::unavailable, std::move(why), {}}; });
  }

  kj::Promise<std::vector<sku_result>> query_sku(const std::string& sku) {
    std::vector<sku_op> q{sku_op{sku_op_kind::query, sku, 0, 0, {}, 0}};
    return node_.route ? node_.route->skus(std::move(q)) : node_.local.skus(std::move(q));
  }

  // The cart, checked line by line against its SKUs now; an order when every line can be
  // bought as it is, else the lines that cannot. The order's id comes from the user and
  // the key. The cart's lines are taken for the order (once, and only as they were read:
  // a cart changed meanwhile is not taken) before the order is placed, so one cart makes
  // one order however many checkouts race, and a checkout repeated with its key (after
  // an unknown outcome) finds the lines it took, or the order it placed.
  kj::Promise<checkout_result> checkout(std::string user, std::string card, std::string key) {
    auto order_id = checkout_order_id(user, key);
    auto cart = [this](std::vector<cart_op> ops) {
      return node_.route ? node_.route->carts(std::move(ops)) : node_.local.carts(std::move(ops));
    };
    auto place = [this, user, card, order_id](std::vector<order_line> lines) {
      order_op op;
      op.kind = order_op_kind::place;
      op.order_id = order_id;
      op.user = user;
      op.card = card;
      op.lines = std::move(lines);
      return order_ops({std::move(op)}).then([](std::vector<order_result> placed) {
        checkout_result r;
        auto& o = placed.at(0);
        if (o.status != code::ok) {
          r.status = o.status == code::outcome_unknown ? code::outcome_unknown : code::unavailable;
          r.message = "the order could not be placed (check out again with the same key): " + o.message;
          return r;
        }
        r.order = o.order;
        return r;
      });
    };
    return order_ops({order_op_on(order_op_kind::show, order_id)})
      .then([this, user, order_id, cart, place](std::vector<order_result> existing) mutable
            -> kj::Promise<checkout_result> {
        checkout_result r;
        auto& known = existing.at(0);
        if (known.status == code::ok) {
          r.order = known.order;
          return r;
        }
        if (known.status != code::unknown_order) {
          r.status = known.status == code::outcome_unknown ? code::outcome_unknown : code::unavailable;
          r.message = "the order's owner could not be asked: " + known.message;
          return r;
        }
        return cart({cart_op{cart_op_kind::view, user, {}, 0, 0, 0, {}}})
          .then([this, user, order_id, cart, place](std::vector<cart_result> viewed) mutable
                -> kj::Promise<checkout_result> {
            checkout_result r;
            auto& c = viewed.at(0);
            if (c.status != code::ok) {
              r.status = code::unavailable;
              r.message = "the cart could not be read: " + c.message;
              return r;
            }
            auto as_order = [](const std::vector<cart_line>& lines) {
              std::vector<order_line> out;
              for (auto& l : lines) out.push_back({l.sku, l.qty, l.price_cents});
              return out;
            };
            // Taken by this checkout before (its answer was lost): place what it took.
            if (c.cart.taken_by == order_id) return place(as_order(c.cart.taken));
            if (c.cart.lines.empty()) {
              r.empty_cart = true;
              return r;
            }
            auto lines = c.cart.lines;
            auto version = c.cart.version;
            auto checks = kj::heapArrayBuilder<kj::Promise<std::vector<sku_result>>>(lines.size());
            for (auto& l : lines) checks.add(query_sku(l.sku));
            return kj::joinPromises(checks.finish())
              .then([this, user, order_id, lines, version, cart, place, as_order](
                      kj::Array<std::vector<sku_result>> now) mutable -> kj::Promise<checkout_result> {
                checkout_result r;
                std::vector<checkout_line> checked;
                bool buyable = true;
                int64_t total = 0;
                for (size_t i = 0; i < lines.size(); ++i) {
                  checkout_line l{lines[i].sku, lines[i].qty, 0, 0, {}, lines[i].price_cents};
                  auto& a = now[i].at(0);
                  if (a.status == code::unknown_sku) {
                    l.problem = "unknown_sku";
                  } else if (a.status != code::ok) {
                    r.status = code::unavailable;
                    r.message = "sku '" + l.sku + "' could not be checked: " + a.message;
                    return r;
                  } else {
                    l.price_cents = a.sku.price_cents;
                    l.available = a.sku.available();
                    if (l.available < l.qty) l.problem = "sold_out";
                    // Never charged silently at another price than the cart showed.
                    else if (l.price_cents != l.cart_price_cents) l.problem = "price_changed";
                  }
                  int64_t line_total = 0;
                  if (__builtin_mul_overflow(l.qty, l.price_cents, &line_total) ||
                      __builtin_add_overflow(total, line_total, &total)) {
                    r.status = code::invalid;
                    r.message = "the order's total would overflow (line " + l.sku + ")";
                    return r;
                  }
                  buyable = buyable && l.problem.empty();
                  checked.push_back(std::move(l));
                }
                if (!buyable) {
                  r.changed = std::move(checked);
                  return r;
                }
                cart_op take{cart_op_kind::take, user, {}, 0, 0, version, order_id};
                return cart({take}).then([order_id, place, as_order](std::vector<cart_result> took) mutable
                                           -> kj::Promise<checkout_result> {
                  auto& t = took.at(0);
                  if (t.status != code::ok || t.cart.taken_by != order_id) {
                    checkout_result r;
                    r.status = t.status == code::outcome_unknown ? code::outcome_unknown : code::unavailable;
                    r.message = "the cart changed while checking out (nothing was ordered; check out again): " +
                                t.message;
                    return r;
                  }
                  return place(as_order(t.cart.taken));
                });
              });
          });
      });
  }

  // Admits `n` operations or throws OVERLOADED; the returned object gives them back.
  kj::Own<void> admit(size_t n) {
    if (node_.inflight_ops + node_.local.late_ops + n > options_.inflight_max)
      throw KJ_EXCEPTION(OVERLOADED, "node has too many operations in flight; back off");
    if (!from_peer_ && conn_->inflight_ops + n > options_.connection_inflight_max)
      throw KJ_EXCEPTION(OVERLOADED, "this connection has too many operations in flight; back off");
    node_.inflight_ops += n;
    conn_->inflight_ops += n;
    return kj::heap(kj::defer([&node = node_, conn = conn_, n] {
      node.inflight_ops -= n;
      conn->inflight_ops -= n;
    }));
  }

  kj::Promise<std::vector<hold_result>> hold_ops(std::vector<hold_op> ops) {
    auto admitted = admit(ops.size());
    node_.calls_total += ops.size();
    if (ops.empty()) return std::vector<hold_result>{};
    auto kind = ops.front().kind;  // a call's operations are all of one kind
    auto started = kind == hold_op_kind::reserve ? std::chrono::steady_clock::now()
                                                 : std::chrono::steady_clock::time_point{};
    return local_holds(std::move(ops))
      .then([&node = node_, kind, started](std::vector<hold_result> rs) {
        node.holds.answered_call(kind, rs);
        if (kind == hold_op_kind::reserve)
          node.holds.reserve_latency.record(std::chrono::duration_cast<std::chrono::microseconds>(
                                              std::chrono::steady_clock::now() - started).count());
        return rs;
      })
      .attach(kj::mv(admitted));
  }

  template <class Context>
  kj::Promise<void> one_hold(Context& ctx, hold_op op) {
    if (auto why = forbidden(needed(op.kind)); !why.empty()) {
      codec::write(ctx.getResults().initResult(), make_hold_error(code::forbidden, why));
      return kj::READY_NOW;
    }
    return hold_ops({std::move(op)}).then([ctx](std::vector<hold_result> rs) mutable {
      codec::write(ctx.getResults().initResult(), rs.at(0));
    });
  }

  template <class Context, class Fill>
  kj::Promise<void> batch(Context& ctx, hold_op_kind kind, size_t n, Fill fill) {
    if (n > options_.limits.batch_size_max) {
      // Refused whole, before anything is decoded: one error, however many items.
      ctx.getResults().setRefused("batch of " + std::to_string(n) + " operations exceeds " +
                                  std::to_string(options_.limits.batch_size_max));
      return kj::READY_NOW;
    }
    if (auto why = forbidden(needed(kind)); !why.empty()) {
      auto out = ctx.getResults().initResults(static_cast<unsigned>(n));
      for (auto r : out) r.setForbidden(why);
      return kj::READY_NOW;
    }
    std::vector<hold_op> ops;
    ops.reserve(n);
    fill(ops);
    return hold_ops(std::move(ops)).then([ctx](std::vector<hold_result> rs) mutable {
      auto out = ctx.getResults().initResults(rs.size());
      for (size_t i = 0; i < rs.size(); ++i) codec::write(out[i], rs[i]);
    });
  }

  // A batch of operations naming holds (confirm, release, extend, return).
  template <class Context>
  kj::Promise<void> ref_batch(Context& ctx, hold_op_kind kind) {
    auto list = ctx.getParams().getHolds();
    return batch(ctx, kind, list.size(), [&](std::vector<hold_op>& ops) {
      for (auto r : list) ops.push_back(codec::read_ref(r, kind));
    });
  }

  template <class Context>
  kj::Promise<void> sku_call(Context& ctx, sku_op op) {
    return sku_call(ctx, std::move(op), [](auto, const sku_result&) {});
  }
  // `more` writes what the method answers besides its result.
  template <class Context, class More>
  kj::Promise<void> sku_call(Context& ctx, sku_op op, More more) {
    if (auto why = forbidden(needed(op.kind)); !why.empty()) {
      codec::write(ctx.getResults().initResult(), make_sku_error(code::forbidden, why));
      return kj::READY_NOW;
    }
    std::vector<sku_op> ops;
    ops.push_back(std::move(op));
    return sku_ops(std::move(ops)).then([ctx, more](std::vector<sku_result> rs) mutable {
      codec::write(ctx.getResults().initResult(), rs.at(0));
      more(ctx.getResults(), rs.at(0));
    });
  }

  const server_options& options_;
  network_context& node_;
  connection_ptr conn_;
  bool from_peer_;
};

}  // namespace

std::vector<rpc_call_counts> rpc_methods() {
  std::vector<rpc_call_counts> out;
  for (auto m : capnp::Schema::from<wire::Inventory>().getMethods())
    out.push_back({m.getProto().getName().cStr(), 0, 0});
  return out;
}

kj::Own<wire::Inventory::Server> make_inventory(network_context& net, connection_ptr conn, bool from_peer) {
  return kj::heap<inventory_impl>(net, std::move(conn), from_peer);
}

}  // namespace holdfast::net
