#include "actors/hold_sink.hpp"

namespace holdfast {

hold_sink::~hold_sink() {
  if (!delivered_.exchange(true))
    f_(std::vector<hold_result>(n_, make_hold_error(code::unavailable, "the sku actor stopped before answering")));
}

void hold_sink::deliver(std::vector<hold_result> results) {
  if (delivered_.exchange(true)) return;
  results.resize(n_, make_hold_error(code::unavailable, "no answer"));
  f_(std::move(results));
}

hold_gather::hold_gather(hold_sink_ptr whole, std::vector<hold_result> prefilled, size_t parts)
  : whole_(std::move(whole)), results_(std::move(prefilled)), remaining_(parts) {}

hold_sink_ptr hold_gather::part(const std::shared_ptr<hold_gather>& g, std::vector<size_t> slots) {
  auto n = slots.size();
  return make_hold_sink(n, [g, slots = std::move(slots)](std::vector<hold_result> rs) {
    // Each part writes only its own slots; the last one (acq_rel) sees all of them.
    for (size_t j = 0; j < slots.size(); ++j) g->results_[slots[j]] = std::move(rs[j]);
    if (g->remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) g->whole_->deliver(std::move(g->results_));
  });
}

}  // namespace holdfast
