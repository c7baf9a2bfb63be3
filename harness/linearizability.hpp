// A linearizability check of one SKU's history (Wing & Gong's search with Lowe's cache of
// visited configurations), as `holdfast chaos` records it for its linearizable SKU: holds
// reserved, then confirmed or released once each, no restock and no expiry within the
// history (the run gives those holds deadlines past its end). Each call has the interval the
// client saw, from sending to its answer; a call whose answer never came (outcome_unknown, a
// lost connection) may have taken effect at any moment after it was sent, or never.
// Answers that say nothing was done (unavailable, and other refusals) are left out.
//
// The model: `stock` units; reserve(h, q) is ok when at least q are free (they are held),
// out_of_stock when fewer are; confirm(h) and release(h) are ok on an active hold (a
// release frees its units). The history is linearizable when some order of the calls, each
// at a moment within its interval, gives every answer the model gives.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace holdfast {

struct lin_call {
  enum kind_t { reserve, confirm, release } kind = reserve;
  enum answer_t { ok, out_of_stock, unknown } answer = ok;
  std::string hold;
  int64_t qty = 0;
  double sent = 0, answered = std::numeric_limits<double>::infinity();  // seconds; unknown: infinity
};

struct lin_verdict {
  bool linearizable = false;
  bool decided = true;      // false: the search ran out of its budget (no verdict)
  std::string detail;       // why not, or what was checked
  uint64_t steps = 0;
};

lin_verdict check_linearizable(int64_t stock, const std::vector<lin_call>& history, uint64_t budget = 20'000'000);

}  // namespace holdfast
