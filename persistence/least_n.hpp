// The first `max` of a stream of items by an order, kept in a bounded max-heap: one
// comparison per item once full, no copy of the rest. Pages of a listing use it (a hot
// SKU's million holds, of which a page wants a hundred).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace holdfast {

template <class T, class Less>
class least_n {
public:
  least_n(size_t max, Less less) : max_(max), less_(less) { kept_.reserve(max); }
  void offer(const T& x) {
    if (kept_.size() < max_) {
      kept_.push_back(x);
      std::push_heap(kept_.begin(), kept_.end(), less_);
      return;
    }
    more_ = true;
    if (max_ == 0 || !less_(x, kept_.front())) return;
    std::pop_heap(kept_.begin(), kept_.end(), less_);
    kept_.back() = x;
    std::push_heap(kept_.begin(), kept_.end(), less_);
  }
  // True when more than `max` were offered: some wait for a later page.
  bool more() const { return more_; }
  // The kept items, least first.
  std::vector<T> sorted() && {
    std::sort_heap(kept_.begin(), kept_.end(), less_);
    return std::move(kept_);
  }

private:
  size_t max_;
  Less less_;
  std::vector<T> kept_;  // a heap: the greatest kept on top
  bool more_ = false;
};

}  // namespace holdfast
