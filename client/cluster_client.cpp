#include "client/cluster_client.hpp"

#include <kj/debug.h>

#include <map>

#include "client/router.hpp"
#include "protocol/limits.hpp"

namespace holdfast {

struct cluster_client::impl final : transport {
  struct member {
    member_address address;
    kj::Own<client> connection;  // null while (re)connecting
    bool dialing = false;
    std::string last_error = "not connected yet";
    kj::Canceler calls;
  };
  kj::AsyncIoProvider& io;
  client_options options;
  std::vector<member_address> addresses;
  std::map<uint32_t, std::unique_ptr<member>> nodes;
  std::unique_ptr<router> route;
  // Replicated SKUs: the group's leader as last learned (0: none known; SKU calls then go
  // to any connected member, which forwards them), and whether a search for it runs.
  bool replicated = false;
  uint32_t leader = 0;
  bool searching = false;
  uint64_t given_up = 0;     // times the leader was given up: older searches' answers are stale
  uint32_t failed_last = 0;  // the member whose SKU call failed last
  // False once the client is gone: answers of calls that outlive it touch nothing.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  struct errors final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  } error_handler;
  kj::TaskSet tasks{error_handler};

  ~impl() noexcept override { *alive = false; }
  impl(kj::AsyncIoProvider& p, std::vector<member_address> members, client_options o)
    : io(p), options(std::move(o)), addresses(std::move(members)) {
    std::vector<uint32_t> ids;
    for (auto& m : addresses) {
      ids.push_back(m.id);
      auto n = std::make_unique<member>();
      n->address = m;
      nodes[m.id] = std::move(n);
    }
    route = std::make_unique<router>(placement(ids), 0, *this, local_calls{});
  }

  // Replicated SKUs: SKU calls go to the leader the client knows, else to a connected member
  // other than the one that failed last (it forwards them), and the leader is looked for:
  // after an answer that says it may be gone, and every leader_check_interval_ms (a leader
  // that stepped down forwards, and answers ok through another hop).
  void lead_skus() {
    replicated = true;
    route->lead_skus_by([this]() -> uint32_t {
      if (leader != 0) return leader;
      search_leader();
      uint32_t fallback = 0;
      for (auto& [id, m] : nodes)
        if (m->connection && (fallback == 0 || fallback == failed_last)) fallback = id;
      return fallback != 0 ? fallback : nodes.begin()->first;  // none connected: unavailable, and redials
    });
    search_leader();
    tasks.add(recheck());
  }
  kj::Promise<void> recheck() {
    return io.getTimer().afterDelay(leader_check_interval_ms * kj::MILLISECONDS).then([this] {
      search_leader();
      return recheck();
    });
  }

  // Asks every connected member who leads: a serving leader that serves calls, the highest
  // term winning; each ask waits leader_ask_timeout_ms at most. Asked again (limits.hpp)
  // while nobody does. A search that began before the leader was last given up is not
  // believed.
  void search_leader(int attempt = 0) {
    if (!replicated || (searching && attempt == 0)) return;
    searching = true;
    using found = std::pair<uint32_t, uint64_t>;  // (member, term); member 0: not the leader
    auto asks = kj::heapArrayBuilder<kj::Promise<found>>(nodes.size());
    for (auto& [id, m] : nodes) {
      auto* c = usable(id);
      if (!c) {
        asks.add(found{0, 0});
        continue;
      }
      asks.add(c->status()
                 .then(
                   [id = id](node_status s) {
                     bool leads = s.raft.serving && s.raft.state == "leader" && s.not_serving.empty();
                     return leads ? found{id, s.raft.term} : found{0, 0};
                   },
                   [](kj::Exception&&) { return found{0, 0}; })
                 .exclusiveJoin(
                   io.getTimer().afterDelay(leader_ask_timeout_ms * kj::MILLISECONDS).then([] { return found{0, 0}; })));
    }
    auto began = given_up;
    tasks.add(kj::joinPromises(asks.finish()).then([this, attempt, began](kj::Array<found> answers) {
      found best{0, 0};
      for (auto& f : answers)
        if (f.first != 0 && f.second >= best.second) best = f;
      if (best.first != 0 && began == given_up) {
        leader = best.first;
      } else if (attempt < leader_search_attempts_max) {
        return io.getTimer().afterDelay(leader_search_interval_ms * kj::MILLISECONDS).then([this, attempt] {
          search_leader(attempt + 1);
        });
      }
      searching = false;
      return kj::Promise<void>(kj::READY_NOW);
    }));
  }

  // An answer from `node` for the SKU group that says its leader may be gone: look for the
  // next one.
  void heard(uint32_t node, code status) {
    if (!replicated || (status != code::unavailable && status != code::outcome_unknown)) return;
    failed_last = node;
    if (node != leader && leader != 0) return;  // through another member: the leader may be fine
    leader = 0;
    ++given_up;
    search_leader();
  }

  kj::Promise<void> dial(member& m) {
    m.dialing = true;
    return client::connect(io, m.address.client, options)
      .then(
        [&m](kj::Own<client> c) {
          m.connection = kj::mv(c);
          m.dialing = false;
        },
        [&m](kj::Exception&& e) {
          m.last_error = describe(e);
          m.dialing = false;
        });
  }

  // The member's connection, or null with a redial started.
  client* usable(uint32_t id) {
    auto& m = *nodes.at(id);
    if (!m.connection && !m.dialing) tasks.add(dial(m));
    return m.connection.get();
  }

  // A lost connection is dropped, so the next call redials.
  static void note_failure(member& m, const kj::Exception& e) {
    if (e.getType() != kj::Exception::Type::DISCONNECTED) return;
    m.last_error = describe(e);
    m.connection = nullptr;
  }
  template <class T>
  kj::Promise<T> watch(member& m, kj::Promise<T> call) {
    return call.catch_([&m](kj::Exception&& e) -> kj::Promise<T> {
      note_failure(m, e);
      return kj::mv(e);
    });
  }

  std::string who(uint32_t id) { return "node " + std::to_string(id) + " (" + nodes.at(id)->address.client + ")"; }

  kj::Promise<std::vector<hold_result>> hold_ops(uint32_t node, std::vector<hold_op> ops) override {
    auto* c = usable(node);
    auto& m = *nodes.at(node);
    if (!c) {
      heard(node, code::unavailable);
      return std::vector<hold_result>(ops.size(),
                                      make_hold_error(code::unavailable, who(node) + ": " + m.last_error));
    }
    auto n = ops.size();
    bool query = n > 0 && ops.front().kind == hold_op_kind::query;
    return answer_all(watch(m, c->submit(std::move(ops))), n, query, who(node), m.calls)
      .then([this, node, alive = alive](std::vector<hold_result> rs) {
        if (*alive)
          for (auto& r : rs) heard(node, r.status);
        return rs;
      });
  }
  // One operation naming its SKU: straight into the owner's auto-batching, without the
  // router's split and gather (what a caller making single calls pays per call).
  kj::Promise<hold_result> one(hold_op op) {
    auto node = route->sku_owner(op.sku);
    auto* c = usable(node);
    auto& m = *nodes.at(node);
    if (!c) {
      heard(node, code::unavailable);
      return make_hold_error(code::unavailable, who(node) + ": " + m.last_error);
    }
    bool query = op.kind == hold_op_kind::query;
    kj::Promise<hold_result> call = nullptr;
    switch (op.kind) {
      case hold_op_kind::reserve: call = c->reserve(op); break;
      case hold_op_kind::confirm: call = c->confirm(op.hold_id, op.sku); break;
      case hold_op_kind::release: call = c->release(op.hold_id, op.sku); break;
      case hold_op_kind::query: call = c->query_hold(op.hold_id, op.sku); break;
      case hold_op_kind::extend: call = c->extend(op.hold_id, op.ttl_ms, op.sku); break;
      case hold_op_kind::return_hold: call = c->return_hold(op.hold_id, op.sku); break;
    }
    return call
      .catch_([this, &m, node, query, alive = alive](kj::Exception&& e) {
        if (!*alive) return make_hold_error(code::unavailable, "the client is gone");
        note_failure(m, e);
        auto [status, message] = failed_call(e, query, who(node));
        return make_hold_error(status, message);
      })
      .then([this, node, alive = alive](hold_result r) {
        if (*alive) heard(node, r.status);
        return r;
      });
  }
  kj::Promise<std::vector<sku_result>> sku_ops(uint32_t node, std::vector<sku_op> ops) override {
    auto* c = usable(node);
    auto& m = *nodes.at(node);
    if (!c) {
      heard(node, code::unavailable);
      return std::vector<sku_result>(ops.size(),
                                     make_sku_error(code::unavailable, who(node) + ": " + m.last_error));
    }
    return forward_skus(*c, std::move(ops), who(node), m.calls)
      .then([this, node, alive = alive](std::vector<sku_result> rs) {
        if (*alive)
          for (auto& r : rs) heard(node, r.status);
        return rs;
      });
  }
  kj::Promise<sku_page> list_skus(uint32_t node, sku_list_query query) override {
    auto* c = usable(node);
    auto& m = *nodes.at(node);
    if (!c) {
      heard(node, code::unavailable);
      sku_page p;
      p.partial = who(node) + ": " + m.last_error;
      return p;
    }
    return forward_list(*c, std::move(query), who(node), m.calls).then([this, node, alive = alive](sku_page p) {
      if (*alive && !p.partial.empty()) heard(node, code::unavailable);
      return p;
    });
  }
  kj::Promise<std::vector<cart_result>> cart_ops(uint32_t node, std::vector<cart_op> ops) override {
    auto* c = usable(node);
    auto& m = *nodes.at(node);
    if (!c)
      return std::vector<cart_result>(ops.size(),
                                      make_cart_error(code::unavailable, who(node) + ": " + m.last_error));
    return forward_carts(*c, std::move(ops), who(node), m.calls);
  }
  kj::Promise<std::vector<order_result>> order_ops(uint32_t node, std::vector<order_op> ops) override {
    auto* c = usable(node);
    auto& m = *nodes.at(node);
    if (!c) return std::vector<order_result>(ops.size(), order_result{code::unavailable, who(node) + ": " + m.last_error, {}});
    return forward_orders(*c, std::move(ops), who(node), m.calls);
  }
};

cluster_client::cluster_client(kj::AsyncIoProvider& io, std::vector<member_address> members,
                               client_options options)
  : impl_(std::make_unique<impl>(io, std::move(members), std::move(options))) {}
cluster_client::~cluster_client() = default;

kj::Promise<kj::Own<cluster_client>> cluster_client::connect(kj::AsyncIoProvider& io,
                                                             const cluster_config& cfg,
                                                             client_options options) {
  std::vector<member_address> members;
  for (auto& m : cfg.members) members.push_back({m.id, m.client});
  cluster_tls_defaults(options, cfg);
  auto c = kj::heap<cluster_client>(io, std::move(members), options);
  // Dial everyone now; calls made before a dial finishes answer unavailable.
  auto dials = kj::heapArrayBuilder<kj::Promise<void>>(c->impl_->nodes.size());
  for (auto& [id, m] : c->impl_->nodes) dials.add(c->impl_->dial(*m));
  bool replicated = cfg.replicas > 1;
  return kj::joinPromises(dials.finish()).then([c = kj::mv(c), replicated]() mutable {
    if (replicated) c->impl_->lead_skus();
    return kj::mv(c);
  });
}

kj::Promise<kj::Own<cluster_client>> cluster_client::discover(kj::AsyncIoProvider& io,
                                                              const std::string& any_node,
                                                              client_options options) {
  return client::connect(io, any_node, options).then([&io, options](kj::Own<client> seed) {
    auto& s = *seed;
    auto members = s.members();
    // Whether its SKUs are replicated: the seed says so in its status.
    return members.then([&s](std::vector<member_address> ms) {
      // A seed that does not say: routed by placement (the members forward).
      return s.status().then([](node_status st) { return st.raft.present; }, [](kj::Exception&&) { return false; })
        .then([ms = std::move(ms)](bool replicated) mutable { return std::make_pair(std::move(ms), replicated); });
    }).attach(kj::mv(seed)).then([&io, options](std::pair<std::vector<member_address>, bool> found) {
      auto& [ms, replicated] = found;
      if (ms.empty()) throw KJ_EXCEPTION(FAILED, "that node is not in a cluster (no members)");
      auto c = kj::heap<cluster_client>(io, std::move(ms), options);
      auto dials = kj::heapArrayBuilder<kj::Promise<void>>(c->impl_->nodes.size());
      for (auto& [id, m] : c->impl_->nodes) dials.add(c->impl_->dial(*m));
      return kj::joinPromises(dials.finish()).then([c = kj::mv(c), replicated = replicated]() mutable {
        if (replicated) c->impl_->lead_skus();
        return kj::mv(c);
      });
    });
  });
}

namespace {
kj::Promise<hold_result> first(kj::Promise<std::vector<hold_result>> p) {
  return p.then([](std::vector<hold_result> rs) { return std::move(rs.at(0)); });
}
}  // namespace

kj::Promise<hold_result> cluster_client::reserve(const hold_op& op) {
  hold_op copy = op;
  copy.kind = hold_op_kind::reserve;
  return impl_->one(std::move(copy));
}
kj::Promise<hold_result> cluster_client::confirm(const std::string& id, const std::string& sku) {
  if (sku.empty()) return first(submit({hold_ref(hold_op_kind::confirm, id, sku)}));
  return impl_->one(hold_ref(hold_op_kind::confirm, id, sku));
}
kj::Promise<hold_result> cluster_client::release(const std::string& id, const std::string& sku) {
  if (sku.empty()) return first(submit({hold_ref(hold_op_kind::release, id, sku)}));
  return impl_->one(hold_ref(hold_op_kind::release, id, sku));
}
kj::Promise<hold_result> cluster_client::query_hold(const std::string& id, const std::string& sku) {
  if (sku.empty()) return first(submit({hold_ref(hold_op_kind::query, id, sku)}));
  return impl_->one(hold_ref(hold_op_kind::query, id, sku));
}
kj::Promise<std::vector<hold_result>> cluster_client::submit(std::vector<hold_op> ops) {
  return impl_->route->holds(std::move(ops));
}
kj::Promise<std::vector<sku_result>> cluster_client::skus(std::vector<sku_op> ops) {
  return impl_->route->skus(std::move(ops));
}
kj::Promise<std::vector<cart_result>> cluster_client::carts(std::vector<cart_op> ops) {
  return impl_->route->carts(std::move(ops));
}

kj::Promise<sku_page> cluster_client::list_skus(sku_list_query query) {
  return impl_->route->list_skus(std::move(query));
}
uint32_t cluster_client::owner(const std::string& sku) const { return impl_->route->owner(sku); }
uint32_t cluster_client::sku_leader() const { return impl_->replicated ? impl_->leader : 0; }
const std::vector<member_address>& cluster_client::members() const { return impl_->addresses; }
client::batching cluster_client::batched() const {
  client::batching sum;
  for (auto& [id, m] : impl_->nodes)
    if (m->connection) {
      auto b = m->connection->batched();
      sum.batches += b.batches;
      sum.ops += b.ops;
    }
  return sum;
}

}  // namespace holdfast
