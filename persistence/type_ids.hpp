// The store's message types and atoms, listed once. actors/type_ids.hpp continues the
// numbering with the entity actors' messages.
#pragma once

#include <caf/atom.hpp>
#include <caf/type_id.hpp>

#include "persistence/records.hpp"

namespace holdfast {
struct write_batch;
struct store_stats;
}  // namespace holdfast

CAF_BEGIN_TYPE_ID_BLOCK(holdfast_persistence, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(holdfast_persistence, (holdfast::write_batch))
  CAF_ADD_TYPE_ID(holdfast_persistence, (holdfast::store_stats))

  CAF_ADD_ATOM(holdfast_persistence, holdfast, write_atom, "write")
  CAF_ADD_ATOM(holdfast_persistence, holdfast, durable_atom, "durable")
  CAF_ADD_ATOM(holdfast_persistence, holdfast, write_failed_atom, "wfailed")
  CAF_ADD_ATOM(holdfast_persistence, holdfast, flush_atom, "flush")
  CAF_ADD_ATOM(holdfast_persistence, holdfast, stats_atom, "stats")
  CAF_ADD_ATOM(holdfast_persistence, holdfast, collect_atom, "collect")
CAF_END_TYPE_ID_BLOCK(holdfast_persistence)
