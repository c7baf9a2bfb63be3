#include "harness/linearizability.hpp"

#include <algorithm>
#include <map>
#include <unordered_set>

namespace holdfast {
namespace {

// The model's state; a function of which calls were linearized (each call's effect is
// fixed), so the cache keys on those alone.
struct model {
  int64_t free = 0;
  std::vector<uint8_t> hold;  // per hold: 0 none, 1 active, 2 confirmed, 3 released
};

// Applies call `c` (hold index `h`) when the model allows its answer; false leaves `m` as it was.
bool apply(model& m, const lin_call& c, size_t h) {
  switch (c.kind) {
    case lin_call::reserve:
      if (c.answer == lin_call::out_of_stock) return m.free < c.qty;
      if (m.hold[h] != 0 || m.free < c.qty) return false;  // unknown: linearized as applied
      m.free -= c.qty;
      m.hold[h] = 1;
      return true;
    case lin_call::confirm:
      if (m.hold[h] != 1) return false;
      m.hold[h] = 2;
      return true;
    case lin_call::release:
      if (m.hold[h] != 1) return false;
      m.hold[h] = 3;
      m.free += c.qty;
      return true;
  }
  return false;
}

void undo(model& m, const lin_call& c, size_t h) {
  switch (c.kind) {
    case lin_call::reserve:
      if (c.answer == lin_call::out_of_stock) return;
      m.free += c.qty;
      m.hold[h] = 0;
      return;
    case lin_call::confirm: m.hold[h] = 1; return;
    case lin_call::release:
      m.hold[h] = 1;
      m.free -= c.qty;
      return;
  }
}

struct bits_hash {
  size_t operator()(const std::vector<uint64_t>& b) const {
    uint64_t x = 0xcbf29ce484222325ULL;
    for (auto w : b) x = (x ^ w) * 0x100000001b3ULL;
    return static_cast<size_t>(x);
  }
};

}  // namespace

lin_verdict check_linearizable(int64_t stock, const std::vector<lin_call>& history, uint64_t budget) {
  lin_verdict v;
  const size_t n = history.size();
  // The hold each call is about.
  std::map<std::string, size_t> holds;
  std::vector<size_t> hold_of(n);
  for (size_t i = 0; i < n; ++i) hold_of[i] = holds.emplace(history[i].hold, holds.size()).first->second;
  // Events in time order, a call's sending before any answer at the same moment (its
  // interval includes its ends); an unknown call has no answer event. A doubly linked list
  // the search lifts calls out of.
  struct event {
    double at;
    bool is_call;
    size_t op;
    int prev, next;
  };
  std::vector<event> ev;
  for (size_t i = 0; i < n; ++i) {
    ev.push_back({history[i].sent, true, i, 0, 0});
    if (history[i].answer != lin_call::unknown) ev.push_back({history[i].answered, false, i, 0, 0});
  }
  std::stable_sort(ev.begin(), ev.end(), [](const event& a, const event& b) {
    return a.at != b.at ? a.at < b.at : (a.is_call && !b.is_call);
  });
  const int head = static_cast<int>(ev.size());  // a sentinel before the first event
  ev.push_back({0, false, 0, -1, -1});
  std::vector<int> call_at(n, -1), answer_at(n, -1);
  for (int i = 0; i < head; ++i) {
    ev[i].prev = i == 0 ? head : i - 1;
    ev[i].next = i + 1 < head ? i + 1 : -1;
    (ev[i].is_call ? call_at : answer_at)[ev[i].op] = i;
  }
  ev[head].next = head > 0 ? 0 : -1;
  auto unlink = [&](int i) {
    ev[ev[i].prev].next = ev[i].next;
    if (ev[i].next >= 0) ev[ev[i].next].prev = ev[i].prev;
  };
  auto relink = [&](int i) {
    ev[ev[i].prev].next = i;
    if (ev[i].next >= 0) ev[ev[i].next].prev = i;
  };
  size_t determinate = 0;
  for (auto& c : history) determinate += c.answer != lin_call::unknown;

  model m;
  m.free = stock;
  m.hold.assign(holds.size(), 0);
  std::vector<uint64_t> linearized((n + 63) / 64, 0);
  std::unordered_set<std::vector<uint64_t>, bits_hash> seen;
  std::vector<std::pair<int, size_t>> stack;  // (the call's event, op)
  size_t done = 0;  // determinate calls linearized
  int at = ev[head].next;
  while (done < determinate) {
    if (++v.steps > budget) {
      v.decided = false;
      v.linearizable = true;
      v.detail = "not decided within " + std::to_string(budget) + " steps";
      return v;
    }
    // Past the last event with determinate calls left: only unknown calls remain ahead,
    // so the calls left cannot be placed here: back up.
    bool back = at < 0 || !ev[at].is_call;
    if (!back) {
      size_t op = ev[at].op;
      auto& c = history[op];
      bool placed = false;
      if (apply(m, c, hold_of[op])) {
        linearized[op / 64] |= uint64_t{1} << (op % 64);
        if (seen.insert(linearized).second) {
          stack.push_back({at, op});
          unlink(at);
          if (answer_at[op] >= 0) unlink(answer_at[op]);
          done += c.answer != lin_call::unknown;
          at = ev[head].next;
          placed = true;
        } else {
          linearized[op / 64] &= ~(uint64_t{1} << (op % 64));
          undo(m, c, hold_of[op]);
        }
      }
      if (!placed) at = ev[at].next;
      continue;
    }
    // An answer came before any order placed its call: undo the latest placement and try
    // the next call after it.
    if (stack.empty()) {
      size_t op = at >= 0 ? ev[at].op : 0;
      auto& c = history[op];
      v.linearizable = false;
      v.detail = "no order of the calls explains the answers; stuck at " +
                 std::string(c.kind == lin_call::reserve ? "reserve " : c.kind == lin_call::confirm ? "confirm " : "release ") +
                 c.hold + " (" + std::string(c.answer == lin_call::ok ? "ok" : c.answer == lin_call::out_of_stock ? "out_of_stock" : "unknown") +
                 ", sent at " + std::to_string(c.sent) + " s)";
      return v;
    }
    auto [call, op] = stack.back();
    stack.pop_back();
    auto& c = history[op];
    done -= c.answer != lin_call::unknown;
    if (answer_at[op] >= 0) relink(answer_at[op]);
    relink(call);
    linearized[op / 64] &= ~(uint64_t{1} << (op % 64));
    undo(m, c, hold_of[op]);
    at = ev[call].next;
  }
  v.linearizable = true;
  v.detail = std::to_string(n) + " calls, " + std::to_string(n - determinate) + " of them unanswered";
  return v;
}

}  // namespace holdfast
