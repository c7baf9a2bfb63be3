// This node's own actors as the network thread reaches them (cluster/rpc_server.cpp,
// cluster/inventory_service.cpp): hold operations straight to the SKU directory, answered
// through a reply sink; everything else through the bridge actor, which asks the actor
// and fulfills a cross-thread promise. Each call is answered by its deadline on the
// network thread's own timer (outcome_unknown then). The only place besides
// rpc_server.cpp where KJ and CAF meet.
#pragma once

#include <kj/async.h>
#include <kj/timer.h>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/send.hpp>

#include <memory>
#include <string>
#include <vector>

#include "actors/hold_sink.hpp"
#include "cluster/rpc_server.hpp"

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

namespace holdfast::net {

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
    // Late: a change may still be applied (outcome_unknown); a query changes nothing and
    // is simply unavailable.
    std::vector<bool> queries(n);
    for (size_t i = 0; i < n; ++i) queries[i] = ops[i].kind == hold_op_kind::query;
    return await<std::vector<hold_result>>(
      [&](std::shared_ptr<completion<std::vector<hold_result>>> done) {
        caf::anon_send(directory, hold_ops_atom_v, std::move(ops),
                       make_hold_sink(n, [done](std::vector<hold_result> rs) { done->fulfill(std::move(rs)); }));
      },
      n, [queries = std::move(queries)](const std::string& why) {
        std::vector<hold_result> late;
        late.reserve(queries.size());
        for (bool query : queries)
          late.push_back(make_hold_error(query ? code::unavailable : code::outcome_unknown, why));
        return late;
      });
  }

  // One operation of any kind, or many creates.
  kj::Promise<std::vector<sku_result>> skus(std::vector<sku_op> ops) {
    if (ops.size() == 1 && ops.front().kind != sku_op_kind::create) {
      auto late = reads_only(ops.front().kind) ? code::unavailable : code::outcome_unknown;
      return ask<sku_result>(sku_op_atom_v, std::move(ops.front()), 1,
                             [late](const std::string& why) { return make_sku_error(late, why); })
        .then([](sku_result r) {
          std::vector<sku_result> out;
          out.push_back(std::move(r));
          return out;
        });
    }
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

}  // namespace holdfast::net
