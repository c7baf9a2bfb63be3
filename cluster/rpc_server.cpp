#include "cluster/rpc_server.hpp"

#include <capnp/rpc-twoparty.h>
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
#include "cluster/client.hpp"
#include "cluster/frame_watcher.hpp"
#include "cluster/http_endpoint.hpp"
#include "gateway/webhook.hpp"
#include "cluster/peer_links.hpp"
#include "cluster/order_wire.hpp"
#include "cluster/router.hpp"
#include "protocol/codec.hpp"
#include "protocol/log.hpp"

namespace holdfast {

// Completes one RPC call from any thread.
template <class T>
struct completion {
  kj::Own<kj::CrossThreadPromiseFulfiller<T>> fulfiller;
  void fulfill(T value) { fulfiller->fulfill(std::move(value)); }
};
using sku_completion = std::shared_ptr<completion<sku_result>>;
using skus_completion = std::shared_ptr<completion<std::vector<sku_result>>>;
using stats_completion = std::shared_ptr<completion<directory_stats>>;
using page_completion = std::shared_ptr<completion<sku_page>>;
using carts_completion = std::shared_ptr<completion<std::vector<cart_result>>>;
using orders_completion = std::shared_ptr<completion<std::vector<order_result>>>;

}  // namespace holdfast

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::sku_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::skus_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::stats_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::page_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::carts_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::orders_completion)

namespace holdfast {
namespace {

// Asks the directory and completes the RPC call with its answer, or with `failed` when
// the actor system reports an error. The deadline is the network thread's (local_node):
// a CAF request timeout costs a wake-up of CAF's clock thread at every request.
template <class Result, class Directory, class Atom, class Request, class Failed>
void ask(caf::event_based_actor* self, const Directory& directory, Atom atom, Request request,
         std::shared_ptr<completion<Result>> done, Failed failed) {
  self->request(directory, caf::infinite, atom, std::move(request))
    .then([done](Result& r) { done->fulfill(std::move(r)); },
          [done, failed](caf::error& e) mutable { done->fulfill(failed("the node's actors failed: " + caf::to_string(e))); });
}

caf::behavior bridge_behavior(caf::event_based_actor* self, directory_actor directory,
                              cart_directory_actor carts, order_directory_actor orders) {
  return {
    [=](order_ops_atom, std::vector<order_op>& ops, orders_completion& done) {
      auto n = ops.size();
      ask(self, orders, order_ops_atom_v, std::move(ops), done, [n](const std::string& why) {
        return std::vector<order_result>(n, order_result{code::outcome_unknown, why, {}});
      });
    },
    [=](cart_ops_atom, std::vector<cart_op>& ops, carts_completion& done) {
      auto n = ops.size();
      ask(self, carts, cart_ops_atom_v, std::move(ops), done, [n](const std::string& why) {
        return std::vector<cart_result>(n, make_cart_error(code::outcome_unknown, why));
      });
    },
    [=](create_batch_atom, std::vector<sku_op>& ops, skus_completion& done) {
      auto n = ops.size();
      ask(self, directory, create_batch_atom_v, std::move(ops), done, [n](const std::string& why) {
        return std::vector<sku_result>(n, make_sku_error(code::outcome_unknown, why));
      });
    },
    [=](sku_op_atom, sku_op& op, sku_completion& done) {
      ask(self, directory, sku_op_atom_v, std::move(op), done,
          [](const std::string& why) { return make_sku_error(code::outcome_unknown, why); });
    },
    [=](list_skus_atom, sku_list_query& query, page_completion& done) {
      ask(self, directory, list_skus_atom_v, std::move(query), done, [](const std::string& why) {
        sku_page p;
        p.partial = why;
        return p;
      });
    },
    [=](stats_atom, int, stats_completion& done) {
      self->request(directory, caf::infinite, stats_atom_v)
        .then([done](directory_stats& s) { done->fulfill(s); },
              [done](caf::error&) { done->fulfill(directory_stats{-1, 0, 0, 0}); });
    },
  };
}

class inventory_impl;

// Forwards everything to the stream it wraps; the wrappers below change only reading.
class forwarding_stream : public kj::AsyncIoStream {
public:
  explicit forwarding_stream(kj::Own<kj::AsyncIoStream> inner) : inner_(kj::mv(inner)) {}
  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return inner_->tryRead(buffer, min_bytes, max_bytes);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override { return inner_->write(buffer, size); }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner_->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }

protected:
  kj::Own<kj::AsyncIoStream> inner_;
};

// A stream that notes when its first byte arrives: a peer-port connection that says
// nothing is a flood's, and is the first to give its handshake slot away.
class first_byte_stream final : public forwarding_stream {
public:
  first_byte_stream(kj::Own<kj::AsyncIoStream> inner, std::shared_ptr<bool> heard)
    : forwarding_stream(kj::mv(inner)), heard_(std::move(heard)) {}
  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return inner_->tryRead(buffer, min_bytes, max_bytes).then([heard = heard_](size_t n) {
      if (n > 0) *heard = true;
      return n;
    });
  }

private:
  std::shared_ptr<bool> heard_;
};

// A stream whose first byte was already read (to tell TLS from plaintext): it is given back
// first.
class prefixed_stream final : public forwarding_stream {
public:
  prefixed_stream(kj::Own<kj::AsyncIoStream> inner, kj::byte first) : forwarding_stream(kj::mv(inner)), first_(first) {}
  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    if (!pending_ || max_bytes == 0) return inner_->tryRead(buffer, min_bytes, max_bytes);
    pending_ = false;
    auto* out = static_cast<kj::byte*>(buffer);
    out[0] = first_;
    if (min_bytes <= 1) return size_t{1};
    return inner_->tryRead(out + 1, min_bytes - 1, max_bytes - 1).then([](size_t n) { return n + 1; });
  }

private:
  kj::byte first_;
  bool pending_ = true;
};

// Reads and drops what `s` sends until it closes (at most 1 MiB).
kj::Promise<void> drain(kj::AsyncIoStream& s, size_t budget = 1 << 20) {
  auto buffer = kj::heapArray<kj::byte>(4096);
  auto read = s.tryRead(buffer.begin(), 1, buffer.size());
  return read.then([&s, budget](size_t n) -> kj::Promise<void> {
    if (n == 0 || n >= budget) return kj::READY_NOW;
    return drain(s, budget - n);
  }).attach(kj::mv(buffer));
}

// A Cap'n Proto RPC Abort message with `why`, framed for the wire.
kj::Array<capnp::word> abort_frame(const std::string& why) {
  capnp::MallocMessageBuilder message;
  auto abort = message.initRoot<capnp::rpc::Message>().initAbort();
  abort.setReason(why);
  abort.setType(capnp::rpc::Exception::Type::OVERLOADED);
  return capnp::messageToFlatArray(message);
}

// The host part of "host:port" (IPv6 in brackets too).
std::string host_of(const std::string& address) {
  auto colon = address.rfind(':');
  auto host = colon == std::string::npos ? address : address.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  return host;
}

// One accepted connection's bookkeeping, shared by its stream wrapper, its Inventory
// object and the sweeper. Network thread only.
struct connection_state {
  explicit connection_state(int64_t now_ms) : frames(now_ms) {}
  frame_watcher frames;           // what was read: frames, last byte, questions open
  int64_t write_started_ms = 0;   // when the oldest unfinished write began
  size_t writes_pending = 0;
  size_t inflight_ops = 0;
  kj::Own<kj::PromiseFulfiller<void>> close;  // fulfil to drop the connection
  kj::Own<kj::PromiseFulfiller<void>> resume_reading;  // set while reading is paused
  int64_t paused_since_ms = 0;  // reading paused behind a stuck write: not the peer's time
  // Past this many unfinished questions, nothing more is read from the connection: the
  // sweeper closes it. (Reading on until the sweep let a fast client put thousands more
  // past the limit.)
  int64_t unfinished_max = INT64_MAX;
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
class watched_stream final : public forwarding_stream {
public:
  watched_stream(kj::Own<kj::AsyncIoStream> inner, connection_ptr state)
    : forwarding_stream(kj::mv(inner)), state_(std::move(state)) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    if (state_->frames.unfinished() > state_->unfinished_max) return kj::Promise<size_t>(kj::NEVER_DONE);
    if (state_->writes_pending > 0) {
      auto paf = kj::newPromiseAndFulfiller<void>();
      state_->resume_reading = kj::mv(paf.fulfiller);
      state_->paused_since_ms = steady_ms();
      return paf.promise.then(
        [this, buffer, min_bytes, max_bytes] { return tryRead(buffer, min_bytes, max_bytes); });
    }
    return inner_->tryRead(buffer, min_bytes, max_bytes).then([this, buffer](size_t n) {
      state_->frames.take(static_cast<const kj::byte*>(buffer), n, steady_ms());
      return n;
    });
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return watch(inner_->write(buffer, size));
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return watch(inner_->write(pieces));
  }

private:
  kj::Promise<void> watch(kj::Promise<void> written) {
    if (state_->writes_pending++ == 0) state_->write_started_ms = steady_ms();
    return written.attach(kj::defer([state = state_] {
      if (--state->writes_pending > 0) return;
      state->write_started_ms = 0;
      if (state->resume_reading) {
        // The time reading was paused is the node's, not the peer's: a frame begun
        // before the pause gets it back.
        if (state->paused_since_ms != 0) state->frames.paused_for(steady_ms() - state->paused_since_ms);
        state->paused_since_ms = 0;
        auto resume = kj::mv(state->resume_reading);
        resume->fulfill();
      }
    }));
  }

  connection_ptr state_;
};

// This node's own actors, reached through the bridge, each call answered by its deadline
// (`--request-timeout-ms`) on the network thread's own timer: outcome_unknown then.
struct local_node {
  local_node(caf::actor b, directory_actor d, kj::Timer& t, int64_t timeout)
    : bridge(std::move(b)), directory(std::move(d)), timer(t), timeout_ms(timeout) {}
  caf::actor bridge;
  directory_actor directory;  // hold operations, answered through sinks
  kj::Timer& timer;
  int64_t timeout_ms;
  // Operations whose caller was answered outcome_unknown at the deadline while they still
  // wait in the actors (a stalled fsync): they count against --inflight-max until the real
  // answer comes, so retrying callers cannot queue more than the limit.
  size_t late_ops = 0;
  struct quiet final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}  // the caller was answered already
  };
  quiet quiet_errors;
  kj::TaskSet lingering{quiet_errors};

  // `send` hands the completion to the actors; the answer fulfills it from their thread.
  template <class Result, class Send, class Late>
  kj::Promise<Result> await(Send send, size_t n, Late late) {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<Result>();
    auto done = std::make_shared<completion<Result>>();
    done->fulfiller = kj::mv(paf.fulfiller);
    send(std::move(done));
    auto why = "no answer within " + std::to_string(timeout_ms) + " ms";
    auto reply = paf.promise.fork();
    auto was_late = std::make_shared<bool>(false);
    lingering.add(reply.addBranch().ignoreResult().attach(kj::defer([this, n, was_late] {
      if (*was_late) late_ops -= n;
    })));
    return reply.addBranch().exclusiveJoin(
      timer.atTime(kj::systemPreciseMonotonicClock().now() + timeout_ms * kj::MILLISECONDS)
        .then([this, n, was_late, late, why = std::move(why)]() mutable {
          *was_late = true;
          late_ops += n;
          return late(why);
        }));
  }

  // Through the bridge, which asks an actor and fulfills with its reply.
  template <class Result, class Atom, class Ops, class Late>
  kj::Promise<Result> ask(Atom atom, Ops ops, size_t n, Late late) {
    return await<Result>(
      [&](std::shared_ptr<completion<Result>> done) { caf::anon_send(bridge, atom, std::move(ops), std::move(done)); },
      n, std::move(late));
  }

  // Straight to the directory; the SKU actors fulfill the call through its sink.
  kj::Promise<std::vector<hold_result>> holds(std::vector<hold_op> ops) {
    auto n = ops.size();
    return await<std::vector<hold_result>>(
      [&](std::shared_ptr<completion<std::vector<hold_result>>> done) {
        caf::anon_send(directory, hold_ops_atom_v, std::move(ops),
                       make_hold_sink(n, [done](std::vector<hold_result> rs) { done->fulfill(std::move(rs)); }));
      },
      n, [n](const std::string& why) { return std::vector<hold_result>(n, make_hold_error(code::outcome_unknown, why)); });
  }

  // One operation of any kind, or many creates.
  kj::Promise<std::vector<sku_result>> skus(std::vector<sku_op> ops) {
    if (ops.size() == 1 && ops.front().kind != sku_op_kind::create)
      return ask<sku_result>(sku_op_atom_v, std::move(ops.front()), 1,
                             [](const std::string& why) { return make_sku_error(code::outcome_unknown, why); })
        .then([](sku_result r) {
          std::vector<sku_result> out;
          out.push_back(std::move(r));
          return out;
        });
    auto n = ops.size();
    return ask<std::vector<sku_result>>(create_batch_atom_v, std::move(ops), n, [n](const std::string& why) {
      return std::vector<sku_result>(n, make_sku_error(code::outcome_unknown, why));
    });
  }

  kj::Promise<sku_page> list(sku_list_query query) {
    return ask<sku_page>(list_skus_atom_v, std::move(query), 1, [](const std::string& why) {
      sku_page p;
      p.partial = why;
      return p;
    });
  }

  kj::Promise<std::vector<cart_result>> carts(std::vector<cart_op> ops) {
    auto n = ops.size();
    return ask<std::vector<cart_result>>(cart_ops_atom_v, std::move(ops), n, [n](const std::string& why) {
      return std::vector<cart_result>(n, make_cart_error(code::outcome_unknown, why));
    });
  }

  kj::Promise<std::vector<order_result>> orders(std::vector<order_op> ops) {
    auto n = ops.size();
    return ask<std::vector<order_result>>(order_ops_atom_v, std::move(ops), n, [n](const std::string& why) {
      return std::vector<order_result>(n, order_result{code::outcome_unknown, why, {}});
    });
  }

  kj::Promise<directory_stats> stats() {
    return ask<directory_stats>(stats_atom_v, 0, 0, [](const std::string&) { return directory_stats{-1, 0, 0, 0}; });
  }
};

// What every connection of a server shares; network thread only.
struct network_context {
  local_node local;
  const server_options& options;
  size_t inflight_ops = 0;
  uint64_t calls_total = 0;
  std::deque<std::pair<int64_t, uint64_t>> samples;  // (steady ms, calls_total)
  int64_t started_ms = 0;
  // In a cluster only.
  const cluster_role* role = nullptr;
  peer_links* links = nullptr;
  router* route = nullptr;
  // Inbound peer connections; `from` is set by an accepted hello.
  struct inbound {
    uint32_t from = 0;
    kj::Own<kj::PromiseFulfiller<void>> close;
    std::string source;           // the dialer's host
    bool handshaken = false;      // TLS done: it holds a certificate of the cluster CA
    std::shared_ptr<bool> heard = std::make_shared<bool>(false);  // a byte arrived
    void drop() {
      if (!close) return;
      auto c = kj::mv(close);
      c->fulfill();
    }
  };
  std::list<std::shared_ptr<inbound>> peers_in;

  network_context(caf::actor bridge, kj::Timer& timer, const server_options& o)
    : local{std::move(bridge), o.directory, timer, o.request_timeout_ms}, options(o) {}

  void sample(int64_t now_ms) {
    samples.emplace_back(now_ms, calls_total);
    while (samples.size() > 2 && now_ms - samples[1].first >= 1000) samples.pop_front();
  }
  double calls_per_second() const {
    if (samples.size() < 2) return 0;
    auto& a = samples.front();
    auto& b = samples.back();
    return b.first > a.first ? (b.second - a.second) * 1000.0 / (b.first - a.first) : 0;
  }
  // This node's own page of the catalog; a node that may not serve answers none, and says
  // why in `partial`.
  kj::Promise<sku_page> local_list(sku_list_query query) {
    auto who = "node " + std::to_string(role ? role->self : 0);
    if (links) {
      if (auto why = links->not_serving(); !why.empty()) {
        sku_page p;
        p.partial = who + ": " + why;
        return p;
      }
    }
    return local.list(std::move(query)).then([who](sku_page p) {
      if (!p.partial.empty()) p.partial = who + ": " + p.partial;
      return p;
    });
  }
  void close_peers(const std::set<uint32_t>& from) {
    for (auto& p : peers_in)
      if (from.count(p->from) && p->close) {
        auto close = kj::mv(p->close);
        close->fulfill();
      }
  }
};

// Answers `ops` with `mine(owned ops)` for the operations this node owns and `foreign`
// for the rest: a peer forwarded them here, so the members disagree about placement, and
// serving them would make a second owner.
const std::string& entity_key(const hold_op& op) { return op.sku; }
const std::string& entity_key(const sku_op& op) { return op.sku; }
const std::string& entity_key(const cart_op& op) { return op.user; }
const std::string& entity_key(const order_op& op) { return op.order_id; }

template <class Op, class Result, class Mine, class Foreign>
kj::Promise<std::vector<Result>> owned_only(const router& route, std::vector<Op> ops, Mine mine,
                                            Foreign foreign) {
  std::vector<size_t> kept;
  std::vector<Op> owned;
  for (size_t i = 0; i < ops.size(); ++i)
    if (entity_key(ops[i]).empty() || route.owner(entity_key(ops[i])) == route.self()) {
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
  kj::Promise<void> returnBatch(ReturnBatchContext ctx) override {
    auto list = ctx.getParams().getHolds();
    return batch(ctx, list.size(), [&](std::vector<hold_op>& ops) {
      for (auto r : list) ops.push_back(codec::read_ref(r, hold_op_kind::return_hold));
    });
  }
  kj::Promise<void> extendBatch(ExtendBatchContext ctx) override {
    auto list = ctx.getParams().getHolds();
    return batch(ctx, list.size(), [&](std::vector<hold_op>& ops) {
      for (auto r : list) ops.push_back(codec::read_ref(r, hold_op_kind::extend));
    });
  }

  kj::Promise<void> listSkus(ListSkusContext ctx) override {
    auto in = ctx.getParams().getQuery();
    auto query = codec::read(in);
    if (auto why = validate(query); !why.empty()) {
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
      ops.push_back({sku_op_kind::create, codec::str(r.getSku()), r.getStock(), r.getPriceCents(),
                     codec::str(r.getTitle()), r.getLimitPerUser()});
    return sku_ops(std::move(ops)).then([ctx](std::vector<sku_result> rs) mutable {
      auto out = ctx.getResults().initResults(rs.size());
      for (size_t i = 0; i < rs.size(); ++i) codec::write(out[i], rs[i]);
    });
  }

  kj::Promise<void> cartOps(CartOpsContext ctx) override {
    return entity_batch<cart_op, cart_result>(
      ctx, [this](const cart_op& op) { return validate(op, options_.limits); },
      [this](std::vector<cart_op> ops) { return cart_ops(std::move(ops)); },
      [](std::string why) { return make_cart_error(code::invalid, std::move(why)); });
  }

  kj::Promise<void> orderOps(OrderOpsContext ctx) override {
    return entity_batch<order_op, order_result>(
      ctx,
      [this](const order_op& op) -> std::string {
        // Placing is the checkout's (a member's), not a client's.
        if (op.kind == order_op_kind::place && !from_peer_) return "orders are placed by checkout";
        return validate(op, options_.limits);
      },
      [this](std::vector<order_op> ops) { return order_ops(std::move(ops)); },
      [](std::string why) { return order_result{code::invalid, std::move(why), {}}; });
  }

  // A batch of entity operations from the wire: each checked (`refused` says why not, or
  // ""), the sound ones run by `run`, every answer written in the caller's order.
  template <class Op, class Result, class Context, class Refused, class Run, class Invalid>
  kj::Promise<void> entity_batch(Context ctx, Refused refused, Run run, Invalid invalid) {
    auto list = ctx.getParams().getOps();
    if (list.size() > options_.limits.batch_size_max) {
      ctx.getResults().setRefused("batch of " + std::to_string(list.size()) + " operations exceeds " +
                                  std::to_string(options_.limits.batch_size_max));
      return kj::READY_NOW;
    }
    auto out = std::make_shared<std::vector<Result>>(list.size());
    std::vector<size_t> at;
    std::vector<Op> ops;
    for (unsigned i = 0; i < list.size(); ++i) {
      auto op = codec::read(list[i]);
      if (auto why = refused(op); !why.empty()) {
        (*out)[i] = invalid(why);
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
    auto refuse = [ctx](std::string why) mutable {
      checkout_result r;
      r.status = code::invalid;
      r.message = std::move(why);
      codec::write(ctx.getResults().initResult(), r);
      return kj::READY_NOW;
    };
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
    auto stats = node_.local.stats();
    return stats.then([this, ctx](directory_stats s) mutable {
      auto out = ctx.getResults().initStatus();
      auto& net = node_;
      out.setSkusActive(s.active_actors);
      out.setCallsTotal(net.calls_total);
      out.setCallsPerSecond(net.calls_per_second());
      out.setStartedMs(net.started_ms);
      if (!net.role) return;
      out.setNodeId(net.role->self);
      out.setIncarnation(net.role->incarnation);
      out.setCluster(net.role->config.name);
      out.setFileHash(net.role->config.hash);
      out.setClusterId(net.role->config.id);
      out.setGeneration(net.role->generation);
      if (net.links) out.setNotServing(net.links->not_serving());
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
    });
  }

  kj::Promise<void> orderEvents(OrderEventsContext ctx) override {
    auto p = ctx.getParams();
    auto out = ctx.getResults();
    if (node_.role) out.setNode(node_.role->self);
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
    if (!node_.role || !node_.role->fault_hooks || !node_.links) {
      ctx.getResults().setRefused("fault hooks are off: the node runs without --fault-hooks");
      return kj::READY_NOW;
    }
    std::set<uint32_t> peers;
    for (auto id : ctx.getParams().getPeers())
      if (id != node_.role->self && node_.role->config.member(id)) peers.insert(id);
    node_.links->partition(peers);
    node_.close_peers(peers);
    return kj::READY_NOW;
  }

private:
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
    return local_holds(std::move(ops)).attach(kj::mv(admitted));
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
    std::vector<sku_op> ops;
    ops.push_back(std::move(op));
    return sku_ops(std::move(ops)).then([ctx](std::vector<sku_result> rs) mutable {
      codec::write(ctx.getResults().initResult(), rs.at(0));
    });
  }

  const server_options& options_;
  network_context& node_;
  connection_ptr conn_;
  bool from_peer_;
};

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
    out.setInventory(kj::heap<inventory_impl>(net_, std::move(conn), true));
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

node_hold_calls::~node_hold_calls() noexcept = default;

void node_hold_calls::holds(std::vector<hold_op> ops, std::function<void(std::vector<hold_result>)> done) {
  inbox_.put({std::move(ops), std::move(done)});
}

caf::actor spawn_bridge(caf::actor_system& sys, directory_actor directory, cart_directory_actor carts,
                        order_directory_actor orders) {
  return sys.spawn(bridge_behavior, std::move(directory), std::move(carts), std::move(orders));
}

struct rpc_server::impl {
  caf::actor bridge;
  server_options options;
  std::thread thread;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_fulfiller;
  mutable std::mutex mutex;
  counters stats;  // under mutex
  std::string start_error;  // under mutex
  std::string http_address;  // under mutex
  std::atomic<bool> failed{false};

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
      // Bound once the cluster's part is ready too (its peer port, its TLS material).
      serve(io, *listener, kj::mv(stop.promise), [&] {
        bound->set_value(host + ":" + std::to_string(listener->getPort()));
        bound.reset();
      });
    } catch (const kj::Exception& e) {
      std::string why = e.getDescription().cStr();
      if (bound) {
        {
          std::lock_guard<std::mutex> guard(mutex);
          start_error = why;
        }
        bound->set_value("");
        return;
      }
      // The node would stay up serving nothing: stop it, with the reason in its log.
      spdlog::critical("network thread failed, stopping the node: {}", why);
      failed = true;
      ::kill(::getpid(), SIGTERM);
    }
  }

  void serve(kj::AsyncIoContext& io, kj::ConnectionReceiver& listener, kj::Promise<void> stopped,
             const std::function<void()>& ready) {
    capnp::ReaderOptions reader_options;
    reader_options.traversalLimitInWords = options.frame_words_max;
    reader_options.nestingLimit = 16;
    network_context net(bridge, io.provider->getTimer(), options);
    net.started_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
    std::list<connection_ptr> open;
    connection_errors errors;
    rate_limit accept_log, close_log;
    auto& timer = io.provider->getTimer();

    // A cluster member: TLS, the peer port, its links and the router.
    const cluster_role* role = options.cluster.get();
    kj::Own<kj::TlsCertificate> ca;
    kj::Own<kj::TlsKeypair> keypair;
    kj::Own<kj::TlsContext> peer_tls, client_tls;
    kj::Own<peer_links> links;
    kj::Own<router> route;
    kj::Own<kj::ConnectionReceiver> peer_listener;
    auto handshake_timeout = (role ? role->config.connect_timeout_ms : 10'000) * kj::MILLISECONDS;
    auto handshake = [&](auto wrapped) {
      return wrapped.exclusiveJoin(timer.afterDelay(handshake_timeout).then([]() -> decltype(wrapped) {
        return KJ_EXCEPTION(DISCONNECTED, "TLS handshake not finished in time");
      }));
    };
    if (role) {
      auto& cfg = role->config;
      auto* me = cfg.member(role->self);
      if (!cfg.ca.empty()) {
        ca = kj::heap<kj::TlsCertificate>(read_pem_file(cfg.path_of(cfg.ca)));
        keypair = kj::heap<kj::TlsKeypair>(
          kj::TlsKeypair{kj::TlsPrivateKey(read_pem_file(cfg.path_of(me->key))),
                         kj::TlsCertificate(read_pem_file(cfg.path_of(me->cert)))});
        kj::TlsContext::Options peer_options;
        peer_options.useSystemTrustStore = false;
        peer_options.verifyClients = true;
        peer_options.trustedCertificates = kj::arrayPtr(ca.get(), 1);
        peer_options.defaultKeypair = *keypair;
        peer_tls = kj::heap<kj::TlsContext>(kj::mv(peer_options));
        if (cfg.client_tls) {
          kj::TlsContext::Options client_options;
          client_options.useSystemTrustStore = false;
          client_options.defaultKeypair = *keypair;
          client_tls = kj::heap<kj::TlsContext>(kj::mv(client_options));
        }
      }
      peer_listener = io.provider->getNetwork().parseAddress(me->peer).wait(io.waitScope)->listen();
      links = kj::heap<peer_links>(*io.provider, *role, peer_tls.get());
      links->on_superseded = [&net](uint32_t node) { net.close_peers({node}); };
      std::vector<uint32_t> ids;
      for (auto& m : cfg.members) ids.push_back(m.id);
      local_calls local{[&net](std::vector<hold_op> ops) { return net.local.holds(std::move(ops)); },
                        [&net](std::vector<sku_op> ops) { return net.local.skus(std::move(ops)); },
                        [&net](sku_list_query q) { return net.local_list(std::move(q)); },
                        [&net](std::vector<cart_op> ops) { return net.local.carts(std::move(ops)); },
                        [&net](std::vector<order_op> ops) { return net.local.orders(std::move(ops)); }};
      route = kj::heap<router>(placement(ids), role->self, *links, std::move(local));
      net.role = role;
      net.links = links.get();
      net.route = route.get();
      links->start();
      spdlog::info("node {} of cluster \"{}\" (file hash {}), peers on {}{}", role->self, cfg.name,
                   cfg.hash, me->peer, peer_tls ? " (mutual TLS)" : " (PLAINTEXT)");
    }
    // The order actors' hold calls, run here through the router (or this node's actors).
    kj::TaskSet outbound_calls(errors);
    std::function<kj::Promise<void>()> drain_outbound;
    if (options.outbound) {
      drain_outbound = [&]() -> kj::Promise<void> {
        return options.outbound->inbox().next().then([&](std::vector<node_hold_calls::call> calls) {
          for (auto& c : calls) {
            auto n = c.ops.size();
            kj::Promise<std::vector<hold_result>> p = nullptr;
            auto why = links ? links->not_serving() : std::string();
            if (!why.empty()) p = std::vector<hold_result>(n, make_hold_error(code::unavailable, why));
            else if (route) p = route->holds(std::move(c.ops));
            else p = net.local.holds(std::move(c.ops));
            outbound_calls.add(p.then([done = std::move(c.done)](std::vector<hold_result> rs) { done(std::move(rs)); }));
          }
          return kj::evalLater([&] { return drain_outbound(); });
        });
      };
      outbound_calls.add(drain_outbound());
    }
    kj::TaskSet connections(errors);
    kj::TaskSet peer_connections(errors);
    // The peer port under a flood (any host can connect; only the cluster CA's certificates
    // get through the handshake). Handshakes not yet done are bounded, and a full table
    // gives the slot of its oldest silent connection (else its oldest) to the newcomer, so
    // a member, whose TLS hello arrives at once, is never starved by connections that say
    // nothing. A host that is not a member's holds at most a few slots; done handshakes
    // (members with certificates) have slots of their own.
    const size_t members = role ? role->config.members.size() : 0;
    const size_t handshakes_max = 64, handshakes_per_stranger_max = 8;
    const size_t established_max = 8 + 4 * members;
    std::set<std::string> member_hosts;
    for (size_t i = 0; role && i < members; ++i) member_hosts.insert(host_of(role->config.members[i].peer));
    rate_limit refuse_log;
    auto refuse = [&](const char* why) {
      count(&counters::refused_connections);
      uint64_t suppressed = 0;
      if (refuse_log.allow(suppressed))
        spdlog::warn("peer port: {} ({} more since the last line)", why, suppressed);
    };
    // Makes room for a connection from `source`; false when it is refused.
    auto admit_peer = [&](const std::string& source) {
      size_t pending = 0, from_source = 0, established = 0;
      std::shared_ptr<network_context::inbound> oldest, oldest_silent;
      for (auto& p : net.peers_in) {
        if (!p->close) continue;  // already closing
        if (p->handshaken) {
          ++established;
          continue;
        }
        ++pending;
        if (p->source == source) ++from_source;
        if (!oldest) oldest = p;
        if (!*p->heard && !oldest_silent) oldest_silent = p;
      }
      if (!member_hosts.count(source) && from_source >= handshakes_per_stranger_max) {
        refuse("too many handshakes from a host that is not a member's; refused");
        return false;
      }
      if (established >= established_max) {
        refuse("too many member connections; refused");
        return false;
      }
      if (pending >= handshakes_max) {
        refuse("handshake table full; the oldest silent connection gave its slot away");
        (oldest_silent ? oldest_silent : oldest)->drop();
      }
      return true;
    };
    // Accepts peers: TLS (their certificate must chain to the cluster CA), then the Peer
    // interface, whose hello decides whether they get anything more.
    std::function<kj::Promise<void>()> accept_peer = [&]() -> kj::Promise<void> {
      return kj::evalNow([&] { return peer_listener->acceptAuthenticated(); })
        .then(
          [&](kj::AuthenticatedStream&& raw) -> kj::Promise<void> {
            std::string source;
            KJ_IF_MAYBE(address, kj::dynamicDowncastIfAvailable<kj::NetworkPeerIdentity>(*raw.peerIdentity)) {
              source = host_of(address->getAddress().toString().cStr());
            }
            if (!admit_peer(source)) return accept_peer();  // `raw` closes here
            auto in = std::make_shared<network_context::inbound>();
            auto closed = kj::newPromiseAndFulfiller<void>();
            in->close = kj::mv(closed.fulfiller);
            in->source = source;
            raw.stream = kj::heap<first_byte_stream>(kj::mv(raw.stream), in->heard);
            auto position = net.peers_in.insert(net.peers_in.end(), in);
            kj::Promise<kj::AuthenticatedStream> ready =
              peer_tls ? handshake(peer_tls->wrapServer(kj::mv(raw)))
                       : kj::Promise<kj::AuthenticatedStream>(kj::mv(raw));
            auto served = ready.then([&, in](kj::AuthenticatedStream&& s) {
              in->handshaken = true;
              std::string name;
              if (peer_tls) {
                auto& id = kj::downcast<kj::TlsPeerIdentity>(*s.peerIdentity);
                if (id.hasCertificate()) name = id.getCommonName().cStr();
              }
              auto state = std::make_shared<connection_state>(0);
              capnp::Capability::Client bootstrap = kj::heap<peer_impl>(net, in, name);
              auto conn = kj::heap<accepted_connection>(kj::mv(s.stream), state, kj::mv(bootstrap),
                                                        reader_options);
              auto done = conn->network.onDisconnect();
              return done.attach(kj::mv(conn));
            });
            peer_connections.add(served.exclusiveJoin(kj::mv(closed.promise))
                                   .attach(kj::defer([&net, position] { net.peers_in.erase(position); })));
            return accept_peer();
          },
          [&](kj::Exception&& e) -> kj::Promise<void> {
            count(&counters::accept_errors);
            return timer.afterDelay(100 * kj::MILLISECONDS).then([&] { return accept_peer(); });
          });
    };

    // A client the node will not serve is told why in a Cap'n Proto Abort (type
    // OVERLOADED: nothing it sent was applied), not left to guess from a closed socket
    // (which a client must read as outcome_unknown). At most 64 such answers at once, each
    // within a second; past that the socket just closes.
    size_t telling_now = 0;
    kj::TaskSet telling(errors);
    auto tell_and_close = [&](kj::Own<kj::AsyncIoStream> stream, const std::string& why) {
      if (telling_now >= 64) return;
      ++telling_now;
      auto frame = abort_frame(why);
      auto bytes = frame.asBytes();
      // After the Abort, what the client sent is read and dropped until it closes: closing
      // with unread bytes would send a reset, which can destroy the Abort in flight.
      auto written = stream->write(bytes.begin(), bytes.size()).then([s = stream.get()] {
        s->shutdownWrite();
        return drain(*s);
      });
      telling.add(written.exclusiveJoin(timer.afterDelay(1 * kj::SECONDS))
                    .attach(kj::mv(frame), kj::mv(stream), kj::defer([&telling_now] { --telling_now; })));
    };
    // A TLS port: the first byte of a TLS client is a handshake record (22). Anything else
    // is a plaintext client, told to use TLS.
    auto tls_or_tell = [&](kj::Own<kj::AsyncIoStream> stream) -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
      auto first = kj::heapArray<kj::byte>(1);
      auto read = stream->tryRead(first.begin(), 1, 1);
      return read.then([&, stream = kj::mv(stream), first = kj::mv(first)](size_t n) mutable
                       -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
        if (n == 1 && first[0] == 22) return kj::Own<kj::AsyncIoStream>(kj::heap<prefixed_stream>(kj::mv(stream), first[0]));
        if (n == 1)
          tell_and_close(kj::mv(stream), std::string(refused_connection_text) +
                                           "this node accepts only TLS clients (client_tls in the cluster file): "
                                           "connect with the cluster CA (--tls-ca ca.pem)");
        return KJ_EXCEPTION(DISCONNECTED, "not a TLS client");
      });
    };

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
            // A TLS client would read a plaintext answer as a broken handshake: it is only closed.
            if (!client_tls)
              tell_and_close(kj::mv(stream), refused_connection_text + std::to_string(open.size()) +
                                               " connections open (--connections-max); back off and retry");
            return accept_next();
          }
          count(&counters::accepted);
          auto state = std::make_shared<connection_state>(steady_ms());
          state->unfinished_max = static_cast<int64_t>(options.connection_unfinished_max);
          auto closed = kj::newPromiseAndFulfiller<void>();
          state->close = kj::mv(closed.fulfiller);
          auto position = open.insert(open.end(), state);
          kj::Promise<kj::Own<kj::AsyncIoStream>> ready =
            client_tls ? handshake(tls_or_tell(kj::mv(stream)).then([&](kj::Own<kj::AsyncIoStream>&& s) {
              return client_tls->wrapServer(kj::mv(s));
            }))
                       : kj::Promise<kj::Own<kj::AsyncIoStream>>(kj::mv(stream));
          auto serve_it = ready.then([&, state](kj::Own<kj::AsyncIoStream>&& s) {
            capnp::Capability::Client bootstrap = kj::heap<inventory_impl>(net, state, false);
            auto conn = kj::heap<accepted_connection>(kj::mv(s), state, kj::mv(bootstrap),
                                                      reader_options);
            auto done = conn->network.onDisconnect();
            spdlog::trace("connection {} accepted", static_cast<void*>(state.get()));
            return done.attach(kj::mv(conn));
          });
          connections.add(serve_it.exclusiveJoin(kj::mv(closed.promise))
                            .attach(kj::defer([&open, position] {
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
        net.sample(now);
        for (auto& c : open) {
          if (!c->close) continue;
          spdlog::trace("connection {}: frame_started {} ms ago, {} writes pending for {} ms, {} ops "
                        "in flight, last read {} ms ago",
                        static_cast<void*>(c.get()), c->frames.frame_started_ms() ? now - c->frames.frame_started_ms() : 0, c->writes_pending,
                        c->write_started_ms ? now - c->write_started_ms : 0, c->inflight_ops,
                        now - c->frames.last_read_ms());
          uint64_t counters::*why = nullptr;
          if (c->frames.frame_started_ms() != 0 && now - c->frames.frame_started_ms() > options.frame_timeout_ms)
            why = &counters::closed_frame;
          // Silent since it connected: not a client (or a stuck one); its slot is worth
          // more to the next connection than the idle timeout's patience.
          else if (!c->frames.ever_read() && now - c->frames.last_read_ms() > options.frame_timeout_ms)
            why = &counters::closed_frame;
          else if (c->frames.unfinished() > static_cast<int64_t>(options.connection_unfinished_max))
            why = &counters::closed_unfinished;
          else if (c->writes_pending > 0 && now - c->write_started_ms > options.write_stall_timeout_ms)
            why = &counters::closed_stalled;
          else if (c->frames.frame_started_ms() == 0 && c->inflight_ops == 0 && c->writes_pending == 0 &&
                   now - c->frames.last_read_ms() > options.idle_timeout_ms)
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

    // Peers are answered at once; clients learn the node listens once every link made its
    // first attempt (at most connect_timeout_ms), so a node its peers refuse never serves a
    // first call before it knows.
    auto peers_accepted = (peer_listener ? accept_peer() : kj::Promise<void>(kj::NEVER_DONE)).fork();
    if (links)
      links->joined()
        .exclusiveJoin(timer.afterDelay((role->config.connect_timeout_ms + 250) * kj::MILLISECONDS))
        .wait(io.waitScope);
    // The HTTP endpoint: payment webhooks, passed to their orders' owners.
    kj::Own<kj::HttpHeaderTable> http_table;
    kj::Own<http_endpoint> http_service;
    kj::Own<kj::HttpServer> http_server;
    kj::Own<kj::ConnectionReceiver> http_listener;
    kj::Promise<void> http_served = kj::NEVER_DONE;
    size_t http_open = 0;
    kj::TaskSet http_connections(errors);
    std::function<kj::Promise<void>()> accept_http;
    if (!options.http_listen.empty()) {
      kj::HttpHeaderTable::Builder builder;
      auto signature = builder.add(webhook_signature_header);
      http_table = builder.build();
      auto to_orders = [&](std::vector<order_op> ops) -> kj::Promise<std::vector<order_result>> {
        if (auto why = links ? links->not_serving() : std::string(); !why.empty())
          return std::vector<order_result>(ops.size(), order_result{code::unavailable, why, {}});
        if (route) return route->orders(std::move(ops));
        return net.local.orders(std::move(ops));
      };
      http_service = kj::heap<http_endpoint>(*http_table, signature, options.webhook_secret, to_orders, options.limits,
                                             timer, options.frame_timeout_ms);
      http_server = kj::heap<kj::HttpServer>(timer, *http_table, *http_service);
      http_listener = io.provider->getNetwork().parseAddress(options.http_listen).wait(io.waitScope)->listen();
      {
        std::lock_guard<std::mutex> guard(mutex);
        http_address = options.http_listen.substr(0, options.http_listen.rfind(':')) + ":" +
                       std::to_string(http_listener->getPort());
      }
      // Each connection counted: at most connections_max open at once; one more is
      // closed at once (a webhook sender retries; a flood cannot take every fd).
      accept_http = [&]() -> kj::Promise<void> {
        return http_listener->accept().then([&](kj::Own<kj::AsyncIoStream> stream) {
          if (http_open >= options.connections_max) {
            count(&counters::refused_connections);
            return accept_http();
          }
          ++http_open;
          http_connections.add(http_server->listenHttp(kj::mv(stream)).attach(kj::defer([&] { --http_open; })));
          return accept_http();
        });
      };
      http_served = accept_http();
    }
    ready();
    auto serving = stopped.exclusiveJoin(kj::mv(http_served)).exclusiveJoin(accept_next()).exclusiveJoin(sweep()).exclusiveJoin(peers_accepted.addBranch());
    serving.wait(io.waitScope);
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
    impl_->thread.join();
    error = "cannot serve on " + impl_->options.listen + ": " + impl_->start_error;
  }
  return address;
}

bool rpc_server::failed() const { return impl_->failed; }

std::string rpc_server::http_address() const {
  std::lock_guard<std::mutex> guard(impl_->mutex);
  return impl_->http_address;
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
