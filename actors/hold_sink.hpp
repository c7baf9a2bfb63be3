// Where the answers to one batch of hold operations go: straight to whoever asked (the
// network thread's RPC call, a directory request), from whichever actor answers, on any
// thread. The SKU actor that applied the batch delivers to the sink once its change is
// durable; nothing relays the answer back through the directory.
//
// A sink is delivered to at most once. One destroyed unanswered (the message carrying it
// was dropped: the actor it was sent to stopped first) answers every operation
// `unavailable`, so no caller waits for its deadline; such an operation was never
// applied (an actor applies a message whole or not at all), so a retry is safe. (The
// sinks of batches already at the store are the store's to answer, with their real
// outcome, whatever becomes of the SKU actor that sent them.)
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>

#include "protocol/domain.hpp"

namespace holdfast {

class hold_sink {
public:
  using answer = std::function<void(std::vector<hold_result>)>;
  // `n` operations; `f` gets their answers, in order, exactly once.
  hold_sink(size_t n, answer f) : n_(n), f_(std::move(f)) {}
  ~hold_sink();
  hold_sink(const hold_sink&) = delete;
  hold_sink& operator=(const hold_sink&) = delete;
  void deliver(std::vector<hold_result> results);
  size_t size() const { return n_; }

private:
  size_t n_;
  answer f_;
  std::atomic<bool> delivered_{false};
};
using hold_sink_ptr = std::shared_ptr<hold_sink>;

inline hold_sink_ptr make_hold_sink(size_t n, hold_sink::answer f) {
  return std::make_shared<hold_sink>(n, std::move(f));
}

// One batch split among several SKUs' actors: `part(slots)` is the sink of the
// operations at those positions; `whole` hears every answer once each part has. The
// positions not given to any part are answered by `prefilled` (refusals the splitter
// made itself).
class hold_gather {
public:
  hold_gather(hold_sink_ptr whole, std::vector<hold_result> prefilled, size_t parts);
  static hold_sink_ptr part(const std::shared_ptr<hold_gather>& g, std::vector<size_t> slots);

private:
  hold_sink_ptr whole_;
  std::vector<hold_result> results_;
  std::atomic<size_t> remaining_;
};

// A reserve refused as hold_conflict because its id is held on another SKU, which the
// answer does not describe yet: the directory asks that SKU's actor for the hold.
inline bool needs_owner(const hold_op& op, const hold_result& r) {
  return op.kind == hold_op_kind::reserve && r.status == code::hold_conflict && r.hold.sku != op.sku &&
         r.hold.qty == 0;
}

}  // namespace holdfast

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::hold_sink_ptr)
