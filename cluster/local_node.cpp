#include "cluster/local_node.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

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

}  // namespace

caf::actor spawn_bridge(caf::actor_system& sys, directory_actor directory, cart_directory_actor carts,
                        order_directory_actor orders) {
  return sys.spawn(bridge_behavior, std::move(directory), std::move(carts), std::move(orders));
}

}  // namespace holdfast
