// Every type and atom that travels in a CAF message inside a node, listed once.
// It lives in persistence/ because that is the lowest module that sees CAF; actors/
// and cluster/ include it from here.
#pragma once

#include <caf/atom.hpp>
#include <caf/type_id.hpp>

#include "persistence/records.hpp"
#include "protocol/domain.hpp"

namespace holdfast {
struct write_batch;
struct store_stats;
}  // namespace holdfast

CAF_BEGIN_TYPE_ID_BLOCK(holdfast, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(holdfast, (holdfast::hold_op))
  CAF_ADD_TYPE_ID(holdfast, (holdfast::hold_result))
  CAF_ADD_TYPE_ID(holdfast, (holdfast::sku_op))
  CAF_ADD_TYPE_ID(holdfast, (holdfast::sku_result))
  CAF_ADD_TYPE_ID(holdfast, (std::vector<holdfast::hold_op>))
  CAF_ADD_TYPE_ID(holdfast, (std::vector<holdfast::hold_result>))
  CAF_ADD_TYPE_ID(holdfast, (holdfast::write_batch))
  CAF_ADD_TYPE_ID(holdfast, (holdfast::store_stats))

  CAF_ADD_ATOM(holdfast, holdfast, write_atom, "write")
  CAF_ADD_ATOM(holdfast, holdfast, durable_atom, "durable")
  CAF_ADD_ATOM(holdfast, holdfast, write_failed_atom, "wfailed")
  CAF_ADD_ATOM(holdfast, holdfast, flush_atom, "flush")
  CAF_ADD_ATOM(holdfast, holdfast, stats_atom, "stats")
  CAF_ADD_ATOM(holdfast, holdfast, hold_ops_atom, "holdops")
  CAF_ADD_ATOM(holdfast, holdfast, sku_op_atom, "skuop")
  CAF_ADD_ATOM(holdfast, holdfast, expire_atom, "expire")
  CAF_ADD_ATOM(holdfast, holdfast, passivate_atom, "passivate")
  CAF_ADD_ATOM(holdfast, holdfast, wake_atom, "wake")
  CAF_ADD_ATOM(holdfast, holdfast, idle_check_atom, "idlecheck")
  CAF_ADD_ATOM(holdfast, holdfast, recover_atom, "recover")
  CAF_ADD_ATOM(holdfast, holdfast, backup_atom, "backup")
CAF_END_TYPE_ID_BLOCK(holdfast)
