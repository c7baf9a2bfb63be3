#include "cluster/rpc_server.hpp"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <future>
#include <iostream>
#include <thread>

#include "protocol/codec.hpp"

namespace holdfast {

// Completes one RPC call from any thread.
template <class T>
struct completion {
  kj::Own<kj::CrossThreadPromiseFulfiller<T>> fulfiller;
  void fulfill(T value) { fulfiller->fulfill(std::move(value)); }
};
using hold_completion = std::shared_ptr<completion<std::vector<hold_result>>>;
using sku_completion = std::shared_ptr<completion<sku_result>>;

}  // namespace holdfast

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::hold_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::sku_completion)

namespace holdfast {
namespace {

caf::behavior bridge_behavior(caf::event_based_actor* self, directory_actor directory,
                              int64_t request_timeout_ms) {
  auto timeout = std::chrono::milliseconds(request_timeout_ms);
  auto timed_out = "no answer within " + std::to_string(request_timeout_ms) + " ms";
  return {
    [=](hold_ops_atom, std::vector<hold_op>& ops, hold_completion& done) {
      auto n = ops.size();
      self->request(directory, timeout, hold_ops_atom_v, std::move(ops))
        .then([done](std::vector<hold_result>& rs) { done->fulfill(std::move(rs)); },
              [done, n, timed_out](caf::error&) {
                done->fulfill(
                  std::vector<hold_result>(n, make_hold_error(code::outcome_unknown, timed_out)));
              });
    },
    [=](sku_op_atom, sku_op& op, sku_completion& done) {
      self->request(directory, timeout, sku_op_atom_v, std::move(op))
        .then([done](sku_result& r) { done->fulfill(std::move(r)); },
              [done, timed_out](caf::error&) {
                done->fulfill(make_sku_error(code::outcome_unknown, timed_out));
              });
    },
  };
}

std::string str(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

class inventory_impl final : public wire::Inventory::Server {
public:
  inventory_impl(caf::actor bridge, const server_options& options)
    : bridge_(std::move(bridge)), options_(options) {}

  kj::Promise<void> createSku(CreateSkuContext ctx) override {
    auto p = ctx.getParams();
    return sku_call(ctx, {sku_op_kind::create, str(p.getSku()), p.getStock(), p.getPriceCents()});
  }
  kj::Promise<void> querySku(QuerySkuContext ctx) override {
    return sku_call(ctx, {sku_op_kind::query, str(ctx.getParams().getSku()), 0, 0});
  }
  kj::Promise<void> restock(RestockContext ctx) override {
    auto p = ctx.getParams();
    return sku_call(ctx, {sku_op_kind::restock, str(p.getSku()), p.getQty(), 0});
  }
  kj::Promise<void> adjust(AdjustContext ctx) override {
    auto p = ctx.getParams();
    return sku_call(ctx, {sku_op_kind::adjust, str(p.getSku()), p.getOnHand(), 0});
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

  kj::Promise<void> reserveBatch(ReserveBatchContext ctx) override {
    auto list = ctx.getParams().getRequests();
    return batch(ctx, list.size(), [&](std::vector<hold_op>& ops) {
      for (auto r : list) ops.push_back(codec::read_reserve(r));
    });
  }
  kj::Promise<void> confirmBatch(ConfirmBatchContext ctx) override {
    auto list = ctx.getParams().getHolds();
    return batch(ctx, list.size(), [&](std::vector<hold_op>& ops) {
      for (auto r : list) ops.push_back(codec::read_ref(r, hold_op_kind::confirm));
    });
  }
  kj::Promise<void> releaseBatch(ReleaseBatchContext ctx) override {
    auto list = ctx.getParams().getHolds();
    return batch(ctx, list.size(), [&](std::vector<hold_op>& ops) {
      for (auto r : list) ops.push_back(codec::read_ref(r, hold_op_kind::release));
    });
  }

private:
  void admit() {
    if (inflight_ >= options_.inflight_max)
      throw KJ_EXCEPTION(OVERLOADED, "node has too many calls in flight; back off");
    ++inflight_;
  }

  kj::Promise<std::vector<hold_result>> hold_ops(std::vector<hold_op> ops) {
    admit();
    auto paf = kj::newPromiseAndCrossThreadFulfiller<std::vector<hold_result>>();
    auto done = std::make_shared<completion<std::vector<hold_result>>>();
    done->fulfiller = kj::mv(paf.fulfiller);
    caf::anon_send(bridge_, hold_ops_atom_v, std::move(ops), std::move(done));
    return paf.promise.attach(kj::defer([this] { --inflight_; }));
  }

  template <class Context>
  kj::Promise<void> one_hold(Context& ctx, hold_op op) {
    return hold_ops({std::move(op)}).then([ctx](std::vector<hold_result> rs) mutable {
      codec::write(ctx.getResults().initResult(), rs.at(0));
    });
  }

  template <class Context, class Fill>
  kj::Promise<void> batch(Context& ctx, size_t n, Fill fill) {
    if (n > options_.limits.batch_size_max) {
      auto out = ctx.getResults().initResults(n);
      auto why = make_hold_error(code::invalid, "batch larger than " +
                                                  std::to_string(options_.limits.batch_size_max));
      for (size_t i = 0; i < n; ++i) codec::write(out[i], why);
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

  template <class Context>
  kj::Promise<void> sku_call(Context& ctx, sku_op op) {
    admit();
    auto paf = kj::newPromiseAndCrossThreadFulfiller<sku_result>();
    auto done = std::make_shared<completion<sku_result>>();
    done->fulfiller = kj::mv(paf.fulfiller);
    caf::anon_send(bridge_, sku_op_atom_v, std::move(op), std::move(done));
    return paf.promise.attach(kj::defer([this] { --inflight_; }))
      .then([ctx](sku_result r) mutable { codec::write(ctx.getResults().initResult(), r); });
  }

  caf::actor bridge_;
  server_options options_;
  size_t inflight_ = 0;  // network thread only
};

// One accepted connection: its RPC system lives until the peer disconnects.
struct accepted_connection {
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  accepted_connection(kj::Own<kj::AsyncIoStream>&& s, capnp::Capability::Client bootstrap,
                      capnp::ReaderOptions reader_options)
    : stream(kj::mv(s)),
      network(*stream, capnp::rpc::twoparty::Side::SERVER, reader_options),
      rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
};

class quiet_errors final : public kj::TaskSet::ErrorHandler {
public:
  // A peer that sends garbage or vanishes loses its own connection; nobody else notices.
  void taskFailed(kj::Exception&&) override {}
};

}  // namespace

caf::actor spawn_bridge(caf::actor_system& sys, directory_actor directory,
                        int64_t request_timeout_ms) {
  return sys.spawn(bridge_behavior, std::move(directory), request_timeout_ms);
}

struct rpc_server::impl {
  caf::actor bridge;
  server_options options;
  std::thread thread;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_fulfiller;
  std::mutex mutex;

  void run(std::promise<std::string>& bound) {
    try {
      auto io = kj::setupAsyncIo();
      auto address = io.provider->getNetwork().parseAddress(options.listen).wait(io.waitScope);
      auto listener = address->listen();
      std::string host = options.listen.substr(0, options.listen.rfind(':'));
      auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
      {
        std::lock_guard<std::mutex> guard(mutex);
        stop_fulfiller = kj::mv(stop.fulfiller);
      }
      bound.set_value(host + ":" + std::to_string(listener->getPort()));
      capnp::Capability::Client bootstrap = kj::heap<inventory_impl>(bridge, options);
      capnp::ReaderOptions reader_options;
      reader_options.traversalLimitInWords = options.frame_words_max;
      reader_options.nestingLimit = 16;
      quiet_errors errors;
      kj::TaskSet connections(errors);
      std::function<kj::Promise<void>()> accept_next = [&]() -> kj::Promise<void> {
        return listener->accept().then([&](kj::Own<kj::AsyncIoStream>&& stream) {
          auto conn = kj::heap<accepted_connection>(kj::mv(stream), bootstrap, reader_options);
          auto done = conn->network.onDisconnect();
          connections.add(done.attach(kj::mv(conn)));
          return accept_next();
        });
      };
      stop.promise.exclusiveJoin(accept_next()).wait(io.waitScope);
    } catch (const kj::Exception& e) {
      try {
        bound.set_value("");
      } catch (...) {
      }
      std::cerr << "holdfast: network thread: " << e.getDescription().cStr() << "\n";
    }
  }
};

rpc_server::rpc_server(caf::actor bridge, server_options options)
  : impl_(std::make_unique<impl>()) {
  impl_->bridge = std::move(bridge);
  impl_->options = std::move(options);
}

rpc_server::~rpc_server() { stop(); }

std::string rpc_server::start(std::string& error) {
  std::promise<std::string> bound;
  auto result = bound.get_future();
  impl_->thread = std::thread([this, &bound] { impl_->run(bound); });
  auto address = result.get();
  if (address.empty()) {
    error = "cannot listen on " + impl_->options.listen;
    impl_->thread.join();
  }
  return address;
}

void rpc_server::stop() {
  if (!impl_->thread.joinable()) return;
  {
    std::lock_guard<std::mutex> guard(impl_->mutex);
    if (impl_->stop_fulfiller) impl_->stop_fulfiller->fulfill();
  }
  impl_->thread.join();
}

}  // namespace holdfast
