#include "cluster/rpc_server.hpp"

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <kj/async-io.h>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <cstring>
#include <future>
#include <list>
#include <thread>

#include "protocol/codec.hpp"
#include "protocol/log.hpp"

namespace holdfast {

// Completes one RPC call from any thread.
template <class T>
struct completion {
  kj::Own<kj::CrossThreadPromiseFulfiller<T>> fulfiller;
  void fulfill(T value) { fulfiller->fulfill(std::move(value)); }
};
using hold_completion = std::shared_ptr<completion<std::vector<hold_result>>>;
using sku_completion = std::shared_ptr<completion<sku_result>>;
using skus_completion = std::shared_ptr<completion<std::vector<sku_result>>>;

}  // namespace holdfast

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::hold_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::sku_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::skus_completion)

namespace holdfast {
namespace {

// Asks the directory and completes the RPC call with its answer, or with `late` when
// none comes within the timeout.
template <class Result, class Atom, class Request>
void ask(caf::event_based_actor* self, const directory_actor& directory,
         std::chrono::milliseconds timeout, Atom atom, Request request,
         std::shared_ptr<completion<Result>> done, Result late) {
  self->request(directory, timeout, atom, std::move(request))
    .then([done](Result& r) { done->fulfill(std::move(r)); },
          [done, late = std::move(late)](caf::error&) mutable { done->fulfill(std::move(late)); });
}

caf::behavior bridge_behavior(caf::event_based_actor* self, directory_actor directory,
                              int64_t request_timeout_ms) {
  auto timeout = std::chrono::milliseconds(request_timeout_ms);
  auto timed_out = "no answer within " + std::to_string(request_timeout_ms) + " ms";
  return {
    [=](hold_ops_atom, std::vector<hold_op>& ops, hold_completion& done) {
      std::vector<hold_result> late(ops.size(), make_hold_error(code::outcome_unknown, timed_out));
      ask(self, directory, timeout, hold_ops_atom_v, std::move(ops), done, std::move(late));
    },
    [=](create_batch_atom, std::vector<sku_op>& ops, skus_completion& done) {
      std::vector<sku_result> late(ops.size(), make_sku_error(code::outcome_unknown, timed_out));
      ask(self, directory, timeout, create_batch_atom_v, std::move(ops), done, std::move(late));
    },
    [=](sku_op_atom, sku_op& op, sku_completion& done) {
      ask(self, directory, timeout, sku_op_atom_v, std::move(op), done,
          make_sku_error(code::outcome_unknown, timed_out));
    },
  };
}

class inventory_impl;

// One accepted connection's bookkeeping, shared by its stream wrapper, its Inventory
// object and the sweeper. Network thread only.
struct connection_state {
  int64_t last_read_ms = 0;
  int64_t frame_started_ms = 0;   // 0: between frames
  int64_t write_started_ms = 0;   // when the oldest unfinished write began
  size_t writes_pending = 0;
  size_t inflight_ops = 0;
  kj::Own<kj::PromiseFulfiller<void>> close;  // fulfil to drop the connection
  kj::Own<kj::PromiseFulfiller<void>> resume_reading;  // set while reading is paused

  // The Cap'n Proto framing of what was read: where the current frame is, so a frame
  // begun and never finished is noticed.
  enum class phase { count, sizes, body } at = phase::count;
  uint32_t word = 0;     // little-endian bytes of the header word being read
  int word_bytes = 0;
  uint32_t segments = 0, sizes_read = 0;
  uint64_t body_left = 0;
  int pad_left = 0;  // the segment table's padding to a whole word, before the body
  int64_t paused_since_ms = 0;  // reading paused behind a stuck write: not the peer's time
  // The first 16 bytes of a frame's body: the root pointer and the first data word,
  // which holds an RPC message's kind.
  kj::byte head[16];
  size_t head_bytes = 0;
  // Questions the peer asked (calls, bootstraps) and has not finished: Cap'n Proto keeps
  // each one's answer until the peer's Finish, so they are memory the peer holds here.
  int64_t unfinished = 0;

  void take(const kj::byte* p, size_t n, int64_t now_ms) {
    if (n > 0) last_read_ms = now_ms;
    while (n > 0) {
      if (at == phase::body && pad_left > 0) {
        ++p;
        --n;
        if (--pad_left == 0 && body_left == 0) end_frame();
        continue;
      }
      if (at == phase::body) {
        auto step = static_cast<size_t>(std::min<uint64_t>(body_left, n));
        auto keep = std::min(step, sizeof head - head_bytes);
        memcpy(head + head_bytes, p, keep);
        head_bytes += keep;
        body_left -= step;
        p += step;
        n -= step;
        if (body_left == 0) end_frame();
        continue;
      }
      if (at == phase::count && word_bytes == 0) frame_started_ms = now_ms;
      word |= uint32_t{*p++} << (8 * word_bytes);
      --n;
      if (++word_bytes < 4) continue;
      auto value = word;
      word = 0;
      word_bytes = 0;
      if (at == phase::count) {
        segments = value + 1;
        sizes_read = 0;
        body_left = 0;
        at = phase::sizes;
        continue;
      }
      body_left += uint64_t{value} * 8;
      if (++sizes_read < segments) continue;
      // The segment table is padded to a whole word; the body starts after it.
      pad_left = segments % 2 == 0 ? 4 : 0;
      at = phase::body;
      if (body_left == 0 && pad_left == 0) end_frame();
    }
  }
  void end_frame() {
    count_message();
    at = phase::count;
    frame_started_ms = 0;
    head_bytes = 0;
  }
  // Counts calls and bootstraps up and finishes down. A root that is not where Cap'n
  // Proto's own writers put it (right after the root pointer) counts as a question.
  void count_message() {
    uint64_t root = 0;
    uint16_t kind = capnp::rpc::Message::CALL;
    if (head_bytes == sizeof head) {
      memcpy(&root, head, 8);
      if ((root & 3) == 0 && (root >> 2 & 0x3fffffff) == 0) memcpy(&kind, head + 8, 2);
    }
    if (kind == capnp::rpc::Message::CALL || kind == capnp::rpc::Message::BOOTSTRAP) ++unfinished;
    else if (kind == capnp::rpc::Message::FINISH && unfinished > 0) --unfinished;
  }
};
using connection_ptr = std::shared_ptr<connection_state>;

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

// The socket of one connection, watched: what it reads (for the timeouts) and what it
// cannot write. While an answer waits for the client to read, no more requests are
// read from it, so a client that never reads cannot make the node queue answers.
class watched_stream final : public kj::AsyncIoStream {
public:
  watched_stream(kj::Own<kj::AsyncIoStream> inner, connection_ptr state)
    : inner_(kj::mv(inner)), state_(std::move(state)) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    if (state_->writes_pending > 0) {
      auto paf = kj::newPromiseAndFulfiller<void>();
      state_->resume_reading = kj::mv(paf.fulfiller);
      state_->paused_since_ms = steady_ms();
      return paf.promise.then(
        [this, buffer, min_bytes, max_bytes] { return tryRead(buffer, min_bytes, max_bytes); });
    }
    return inner_->tryRead(buffer, min_bytes, max_bytes).then([this, buffer](size_t n) {
      state_->take(static_cast<const kj::byte*>(buffer), n, steady_ms());
      return n;
    });
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return watch(inner_->write(buffer, size));
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return watch(inner_->write(pieces));
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }

private:
  kj::Promise<void> watch(kj::Promise<void> written) {
    if (state_->writes_pending++ == 0) state_->write_started_ms = steady_ms();
    return written.attach(kj::defer([state = state_] {
      if (--state->writes_pending > 0) return;
      state->write_started_ms = 0;
      if (state->resume_reading) {
        // The time reading was paused is the node's, not the peer's: a frame begun
        // before the pause gets it back.
        if (state->frame_started_ms != 0 && state->paused_since_ms != 0)
          state->frame_started_ms += steady_ms() - state->paused_since_ms;
        state->paused_since_ms = 0;
        auto resume = kj::mv(state->resume_reading);
        resume->fulfill();
      }
    }));
  }

  kj::Own<kj::AsyncIoStream> inner_;
  connection_ptr state_;
};

// Counts shared by every connection of a server; network thread only.
struct admission {
  size_t inflight_ops = 0;
};

class inventory_impl final : public wire::Inventory::Server {
public:
  inventory_impl(caf::actor bridge, const server_options& options, admission& node,
                 connection_ptr conn)
    : bridge_(std::move(bridge)), options_(options), node_(node), conn_(std::move(conn)) {}

  kj::Promise<void> createSku(CreateSkuContext ctx) override {
    auto p = ctx.getParams();
    return sku_call(ctx, {sku_op_kind::create, codec::str(p.getSku()), p.getStock(),
                          p.getPriceCents()});
  }
  kj::Promise<void> querySku(QuerySkuContext ctx) override {
    return sku_call(ctx, {sku_op_kind::query, codec::str(ctx.getParams().getSku()), 0, 0});
  }
  kj::Promise<void> restock(RestockContext ctx) override {
    auto p = ctx.getParams();
    return sku_call(ctx, {sku_op_kind::restock, codec::str(p.getSku()), p.getQty(), 0});
  }
  kj::Promise<void> adjust(AdjustContext ctx) override {
    auto p = ctx.getParams();
    return sku_call(ctx, {sku_op_kind::adjust, codec::str(p.getSku()), p.getOnHand(), 0});
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

  kj::Promise<void> createSkuBatch(CreateSkuBatchContext ctx) override {
    auto list = ctx.getParams().getRequests();
    if (list.size() > options_.limits.batch_size_max) {
      ctx.getResults().setRefused("batch of " + std::to_string(list.size()) +
                                  " operations exceeds " +
                                  std::to_string(options_.limits.batch_size_max));
      return kj::READY_NOW;
    }
    std::vector<sku_op> ops;
    ops.reserve(list.size());
    for (auto r : list)
      ops.push_back({sku_op_kind::create, codec::str(r.getSku()), r.getStock(), r.getPriceCents()});
    auto admitted = admit(ops.size());
    auto paf = kj::newPromiseAndCrossThreadFulfiller<std::vector<sku_result>>();
    auto done = std::make_shared<completion<std::vector<sku_result>>>();
    done->fulfiller = kj::mv(paf.fulfiller);
    caf::anon_send(bridge_, create_batch_atom_v, std::move(ops), std::move(done));
    return paf.promise.attach(kj::mv(admitted)).then([ctx](std::vector<sku_result> rs) mutable {
      auto out = ctx.getResults().initResults(rs.size());
      for (size_t i = 0; i < rs.size(); ++i) codec::write(out[i], rs[i]);
    });
  }

private:
  // Admits `n` operations or throws OVERLOADED; the returned object gives them back.
  kj::Own<void> admit(size_t n) {
    if (node_.inflight_ops + n > options_.inflight_max)
      throw KJ_EXCEPTION(OVERLOADED, "node has too many operations in flight; back off");
    if (conn_->inflight_ops + n > options_.connection_inflight_max)
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
    auto paf = kj::newPromiseAndCrossThreadFulfiller<std::vector<hold_result>>();
    auto done = std::make_shared<completion<std::vector<hold_result>>>();
    done->fulfiller = kj::mv(paf.fulfiller);
    caf::anon_send(bridge_, hold_ops_atom_v, std::move(ops), std::move(done));
    return paf.promise.attach(kj::mv(admitted));
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
      // Refused whole, before anything is decoded: one error, however many items.
      ctx.getResults().setRefused("batch of " + std::to_string(n) + " operations exceeds " +
                                  std::to_string(options_.limits.batch_size_max));
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
    auto admitted = admit(1);
    auto paf = kj::newPromiseAndCrossThreadFulfiller<sku_result>();
    auto done = std::make_shared<completion<sku_result>>();
    done->fulfiller = kj::mv(paf.fulfiller);
    caf::anon_send(bridge_, sku_op_atom_v, std::move(op), std::move(done));
    return paf.promise.attach(kj::mv(admitted))
      .then([ctx](sku_result r) mutable { codec::write(ctx.getResults().initResult(), r); });
  }

  caf::actor bridge_;
  const server_options& options_;
  admission& node_;
  connection_ptr conn_;
};

// One accepted connection: its RPC system lives until the peer disconnects or the
// sweeper closes it.
struct accepted_connection {
  watched_stream stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  accepted_connection(kj::Own<kj::AsyncIoStream>&& s, connection_ptr state,
                      capnp::Capability::Client bootstrap, capnp::ReaderOptions reader_options)
    : stream(kj::mv(s), std::move(state)),
      network(stream, capnp::rpc::twoparty::Side::SERVER, reader_options),
      rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
};

class connection_errors final : public kj::TaskSet::ErrorHandler {
public:
  // A peer that sends garbage or vanishes loses its own connection; nobody else notices.
  void taskFailed(kj::Exception&& e) override {
    uint64_t suppressed = 0;
    if (limit_.allow(suppressed))
      spdlog::debug("connection ended: {} ({} more suppressed)", e.getDescription().cStr(),
                    suppressed);
  }

private:
  rate_limit limit_;
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
  mutable std::mutex mutex;
  counters stats;  // under mutex

  void count(uint64_t counters::*field) {
    std::lock_guard<std::mutex> guard(mutex);
    ++(stats.*field);
  }

  void run(std::shared_ptr<std::promise<std::string>> bound) {
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
      bound->set_value(host + ":" + std::to_string(listener->getPort()));
      bound.reset();
      serve(io, *listener, kj::mv(stop.promise));
    } catch (const kj::Exception& e) {
      if (bound) bound->set_value("");
      spdlog::error("network thread: {}", e.getDescription().cStr());
    }
  }

  void serve(kj::AsyncIoContext& io, kj::ConnectionReceiver& listener, kj::Promise<void> stopped) {
    capnp::ReaderOptions reader_options;
    reader_options.traversalLimitInWords = options.frame_words_max;
    reader_options.nestingLimit = 16;
    admission node;
    std::list<connection_ptr> open;
    connection_errors errors;
    kj::TaskSet connections(errors);
    rate_limit accept_log, close_log;
    auto& timer = io.provider->getTimer();

    std::function<kj::Promise<void>()> accept_next = [&]() -> kj::Promise<void> {
      // accept() may throw at once (EMFILE when the socket was already readable):
      // evalNow turns that into a rejection the handler below sees.
      return kj::evalNow([&] { return listener.accept(); }).then(
        [&](kj::Own<kj::AsyncIoStream>&& stream) -> kj::Promise<void> {
          if (open.size() >= options.connections_max) {
            count(&counters::refused_connections);
            uint64_t suppressed = 0;
            if (accept_log.allow(suppressed))
              spdlog::warn("refusing a connection: {} open (--connections-max); {} more refused",
                           open.size(), suppressed);
            return accept_next();  // `stream` closes here
          }
          count(&counters::accepted);
          auto state = std::make_shared<connection_state>();
          state->last_read_ms = steady_ms();
          auto closed = kj::newPromiseAndFulfiller<void>();
          state->close = kj::mv(closed.fulfiller);
          auto position = open.insert(open.end(), state);
          capnp::Capability::Client bootstrap =
            kj::heap<inventory_impl>(bridge, options, node, state);
          auto conn = kj::heap<accepted_connection>(kj::mv(stream), state, kj::mv(bootstrap),
                                                    reader_options);
          auto done = conn->network.onDisconnect().exclusiveJoin(kj::mv(closed.promise));
          spdlog::trace("connection {} accepted", static_cast<void*>(state.get()));
          connections.add(done.attach(kj::mv(conn), kj::defer([&open, position] {
            spdlog::trace("connection {} gone", static_cast<void*>(position->get()));
            open.erase(position);
          })));
          return accept_next();
        },
        [&](kj::Exception&& e) -> kj::Promise<void> {
          // EMFILE, ENFILE, ENOBUFS...: the listener stays; try again shortly, when
          // closed connections (idle or refused) have given descriptors back.
          count(&counters::accept_errors);
          uint64_t suppressed = 0;
          if (accept_log.allow(suppressed))
            spdlog::error("accept: {} ({} more suppressed); retrying", e.getDescription().cStr(),
                          suppressed);
          return timer.afterDelay(100 * kj::MILLISECONDS).then([&] { return accept_next(); });
        });
    };

    // Closes connections that are idle, stuck in the middle of a frame, or not reading
    // their answers.
    std::function<kj::Promise<void>()> sweep = [&]() -> kj::Promise<void> {
      return timer.afterDelay(250 * kj::MILLISECONDS).then([&]() -> kj::Promise<void> {
        auto now = steady_ms();
        for (auto& c : open) {
          if (!c->close) continue;
          spdlog::trace("connection {}: frame_started {} ms ago, {} writes pending for {} ms, {} ops "
                        "in flight, last read {} ms ago",
                        static_cast<void*>(c.get()), c->frame_started_ms ? now - c->frame_started_ms : 0, c->writes_pending,
                        c->write_started_ms ? now - c->write_started_ms : 0, c->inflight_ops,
                        now - c->last_read_ms);
          uint64_t counters::*why = nullptr;
          if (c->frame_started_ms != 0 && now - c->frame_started_ms > options.frame_timeout_ms)
            why = &counters::closed_frame;
          else if (c->unfinished > static_cast<int64_t>(options.connection_unfinished_max))
            why = &counters::closed_unfinished;
          else if (c->writes_pending > 0 && now - c->write_started_ms > options.write_stall_timeout_ms)
            why = &counters::closed_stalled;
          else if (c->frame_started_ms == 0 && c->inflight_ops == 0 && c->writes_pending == 0 &&
                   now - c->last_read_ms > options.idle_timeout_ms)
            why = &counters::closed_idle;
          if (!why) continue;
          count(why);
          uint64_t suppressed = 0;
          if (close_log.allow(suppressed))
            spdlog::info("closing a connection: {} ({} more closed since the last line)",
                         why == &counters::closed_frame       ? "a frame begun and not finished"
                         : why == &counters::closed_stalled   ? "its answers are not being read"
                         : why == &counters::closed_unfinished ? "too many calls never finished"
                                                              : "idle",
                         suppressed);
          auto close = kj::mv(c->close);
          close->fulfill();
        }
        return sweep();
      });
    };

    stopped.exclusiveJoin(accept_next()).exclusiveJoin(sweep()).wait(io.waitScope);
  }
};

rpc_server::rpc_server(caf::actor bridge, server_options options)
  : impl_(std::make_unique<impl>()) {
  impl_->bridge = std::move(bridge);
  impl_->options = std::move(options);
}

rpc_server::~rpc_server() { stop(); }

std::string rpc_server::start(std::string& error) {
  // Shared with the network thread, which may still hold it after start() returned.
  auto bound = std::make_shared<std::promise<std::string>>();
  auto result = bound->get_future();
  impl_->thread = std::thread([this, bound] { impl_->run(bound); });
  auto address = result.get();
  if (address.empty()) {
    error = "cannot listen on " + impl_->options.listen;
    impl_->thread.join();
  }
  return address;
}

rpc_server::counters rpc_server::stats() const {
  std::lock_guard<std::mutex> guard(impl_->mutex);
  return impl_->stats;
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
