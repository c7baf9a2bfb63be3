// A queue that threads outside a KJ event loop fill and the loop drains: put() from any
// thread wakes the loop; take() on the loop's thread hands over what is queued, or keeps
// `wake` to be fulfilled by the next put(). The order actors' hold calls and payments
// reach KJ this way (no thread ever blocks on the other).
#pragma once

#include <kj/async.h>

#include <mutex>
#include <vector>

namespace holdfast {

template <class T>
class kj_inbox {
public:
  void put(T item) {
    std::lock_guard<std::mutex> guard(mutex_);
    queued_.push_back(std::move(item));
    if (wake_) {
      wake_->fulfill();
      wake_ = nullptr;
    }
  }
  std::vector<T> take(kj::Own<kj::CrossThreadPromiseFulfiller<void>>& wake) {
    std::lock_guard<std::mutex> guard(mutex_);
    std::vector<T> out;
    out.swap(queued_);
    if (out.empty()) wake_ = kj::mv(wake);
    return out;
  }
  // Loop thread: a promise that resolves with the next items (at once when some wait).
  kj::Promise<std::vector<T>> next() {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    auto items = take(paf.fulfiller);
    if (!items.empty()) return kj::mv(items);
    return paf.promise.then([this] { return next(); });
  }

private:
  std::mutex mutex_;
  std::vector<T> queued_;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake_;
};

}  // namespace holdfast
