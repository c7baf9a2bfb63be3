// The entity actors' message types and atoms, listed once, numbered after the store's.
#pragma once

#include "persistence/type_ids.hpp"
#include "protocol/domain.hpp"

namespace holdfast {
struct order_record;
struct order_op;
struct order_result;
struct payment_request;
struct payment_reply;
}  // namespace holdfast

CAF_BEGIN_TYPE_ID_BLOCK(holdfast_actors, caf::id_block::holdfast_persistence_last_type_id + 1)
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::hold_op))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::hold_result))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::sku_op))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::sku_result))
  CAF_ADD_TYPE_ID(holdfast_actors, (std::vector<holdfast::hold_op>))
  CAF_ADD_TYPE_ID(holdfast_actors, (std::vector<holdfast::hold_result>))
  CAF_ADD_TYPE_ID(holdfast_actors, (std::vector<holdfast::sku_op>))
  CAF_ADD_TYPE_ID(holdfast_actors, (std::vector<holdfast::sku_result>))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::sku_list_query))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::sku_page))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::cart_op))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::cart_result))
  CAF_ADD_TYPE_ID(holdfast_actors, (std::vector<holdfast::cart_op>))
  CAF_ADD_TYPE_ID(holdfast_actors, (std::vector<holdfast::cart_result>))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::order_record))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::order_op))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::order_result))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::payment_request))
  CAF_ADD_TYPE_ID(holdfast_actors, (holdfast::payment_reply))
  CAF_ADD_TYPE_ID(holdfast_actors, (std::vector<holdfast::order_op>))
  CAF_ADD_TYPE_ID(holdfast_actors, (std::vector<holdfast::order_result>))

  CAF_ADD_ATOM(holdfast_actors, holdfast, hold_ops_atom, "holdops")
  CAF_ADD_ATOM(holdfast_actors, holdfast, sku_op_atom, "skuop")
  CAF_ADD_ATOM(holdfast_actors, holdfast, expire_atom, "expire")
  CAF_ADD_ATOM(holdfast_actors, holdfast, passivate_atom, "passivate")
  CAF_ADD_ATOM(holdfast_actors, holdfast, wake_atom, "wake")
  CAF_ADD_ATOM(holdfast_actors, holdfast, idle_check_atom, "idlecheck")
  CAF_ADD_ATOM(holdfast_actors, holdfast, recover_atom, "recover")
  CAF_ADD_ATOM(holdfast_actors, holdfast, create_batch_atom, "createbat")
  CAF_ADD_ATOM(holdfast_actors, holdfast, routed_results_atom, "routedres")
  CAF_ADD_ATOM(holdfast_actors, holdfast, passivated_atom, "passivated")
  CAF_ADD_ATOM(holdfast_actors, holdfast, list_skus_atom, "listskus")
  CAF_ADD_ATOM(holdfast_actors, holdfast, cart_op_atom, "cartop")
  CAF_ADD_ATOM(holdfast_actors, holdfast, cart_ops_atom, "cartops")
  CAF_ADD_ATOM(holdfast_actors, holdfast, order_place_atom, "ordplace")
  CAF_ADD_ATOM(holdfast_actors, holdfast, order_op_atom, "ordop")
  CAF_ADD_ATOM(holdfast_actors, holdfast, order_step_atom, "ordstep")
  CAF_ADD_ATOM(holdfast_actors, holdfast, order_holds_atom, "ordholds")
  CAF_ADD_ATOM(holdfast_actors, holdfast, order_payment_atom, "ordpay")
  CAF_ADD_ATOM(holdfast_actors, holdfast, order_ops_atom, "ordops")
  CAF_ADD_ATOM(holdfast_actors, holdfast, conflicts_atom, "conflicts")
  CAF_ADD_ATOM(holdfast_actors, holdfast, lead_atom, "lead")
  CAF_ADD_ATOM(holdfast_actors, holdfast, follow_atom, "follow")
  CAF_ADD_ATOM(holdfast_actors, holdfast, barrier_atom, "barrier")
CAF_END_TYPE_ID_BLOCK(holdfast_actors)
