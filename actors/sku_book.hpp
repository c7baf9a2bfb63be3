// The SKU state machine: one SKU's stock, its active holds and their deadlines, and
// the rules of reserve / confirm / release / expire. Plain C++, no CAF: the sku actor
// owns one book and is the only caller; the micro-benchmarks drive it directly.
//
// Every call that changes something records the change in an `sku_change`; `seal`
// turns it into the mutations of one write batch. Memory runs ahead of the disk: a
// hold that ended stays in `finishing` until the store reports its batch durable, so
// a repeated call gets the same answer whether or not the batch has landed yet.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/hold_claims.hpp"
#include "persistence/storage.hpp"

namespace holdfast {

struct sku_book_policy {
  // A wall clock that moved back more than this since the last look means the clock was
  // stepped: every active hold's deadline is cut to at most now + its ttl.
  int64_t clock_step_tolerance_ms = 1'000;
  // Holds ended by expiry in one change at most: a backlog of overdue holds is written
  // in bounded batches (the timer comes back at once for the rest), so no batch grows
  // too large to commit when storage is tight, and calls never wait behind one.
  size_t expire_batch_max = 256;
  // `hold list` with a state filter reads at most this many finished holds per page.
  size_t hold_list_scan_max = holdfast::hold_list_scan_max;
};

// The changes one handled message makes; becomes one write batch.
struct sku_change {
  uint64_t seq = 0;  // the batch's seq if it writes anything
  int64_t now_ms = 0;
  std::vector<mutation> mutations;
  bool dirty = false;  // the SKU snapshot changed
  const storage* env = nullptr;
  std::unique_ptr<storage::read_view> view;  // one read transaction for the whole message

  sku_change(uint64_t s, int64_t now, const storage* e) : seq(s), now_ms(now), env(e) {}
  storage::read_view& reads() {
    if (!view) view = env->read();
    return *view;
  }
};

class sku_book {
public:
  // `claims` may be null when a single book runs alone (benchmarks).
  sku_book(std::string sku, sku_book_policy policy, hold_claims* claims = nullptr);
  ~sku_book();

  // Rebuilds memory from the last committed state. Returns why not (a storage error,
  // a record that fails its checksum or invariants, holds that disagree with the
  // counters), empty on success.
  // `known`: the SKU record as just read by the caller (the directory, which reads it
  // to decide whether to spawn at all), so that it is not read twice.
  std::string load(const storage& env, const sku_record* known = nullptr);
  // Cuts every active hold's deadline to at most now + its ttl, as changes: after a
  // restart or a step of the wall clock, no hold outlives its ttl measured from now.
  void clamp_deadlines(sku_change& c);

  bool exists() const { return exists_; }
  const sku_record& record() const { return record_; }
  size_t active_holds() const { return active_.size(); }
  size_t buyers_remembered() const { return buyers_.size(); }  // users of a per-user limit in memory
  // The earliest deadline of an active hold, 0 if none.
  int64_t earliest_deadline_ms();
  // Empty when the counters obey their invariants and agree with the active holds.
  std::string broken_invariant() const;

  // Ends holds whose deadline is at or before now, at most `max` of them (0: the
  // policy's expire_batch_max); earliest_deadline_ms() tells whether more are due.
  void expire_due(int64_t now_ms, sku_change& c, size_t max = 0);
  hold_result apply(const hold_op& op, int64_t now_ms, sku_change& c);
  sku_result apply(const sku_op& op, sku_change& c);
  sku_result snapshot(code status = code::ok) const;
  // list_holds: one page of this SKU's holds, the book's (active, and ended but not yet
  // durable) over storage's (finished, and changed since the last snapshot).
  sku_result list_holds(const sku_op& op, const storage& env) const;

  // The mutations of the change's write batch: its holds' new states, then the SKU
  // record. Empty when the change changed nothing.
  std::vector<mutation> seal(sku_change& c);
  // Batches up to `seq` are durable: storage answers for their finished holds from now
  // on, and the hold-id index for their new holds.
  void durable(uint64_t seq);
  // Gives back the claims of reserves in changes from `from` on that will never be
  // durable: a change not written (it broke an invariant), or batches that failed.
  void release_claims(uint64_t from = 0);

private:
  struct active_hold {
    int64_t qty;
    int64_t deadline_ms;
    int64_t ttl_ms;
    int64_t lease_ms;  // max(ttl_ms, every extend's ttl): a restart cuts to now + this
  };
  // A hold in the deadline heap: its deadline and its id's hash in active_, 16 bytes (a
  // copy of the id made an entry 40 bytes and cost a 48-byte allocation per reserve). It stands for any active
  // hold with that hash and that deadline: each has its own entry, and whichever of them
  // an entry finds is due when it reaches the top.
  struct deadline_entry {
    int64_t deadline_ms;
    uint32_t hash;
    bool operator>(const deadline_entry& o) const { return deadline_ms > o.deadline_ms; }
  };
  // The id of an active hold `e` stands for, null if none (the entry is stale).
  const std::string* deadline_holder(const deadline_entry& e) const;
  // Open addressing in one array (persistence/overlay.hpp): no node per hold, which
  // with a million holds was a tenth of the CPU on row 1b and most of an SKU's load.
  using active_map = flat_string_map<active_hold>;

  hold_record to_record(const std::string& hold_id, const active_hold& h, hold_state state) const;
  hold_result reserve(const hold_op& op, int64_t now_ms, sku_change& c);
  hold_result end_hold(const hold_op& op, sku_change& c);
  hold_record extend(const std::string& hold_id, active_hold& h, int64_t ttl_ms, sku_change& c);
  hold_result give_back(hold_record done, sku_change& c);
  hold_result repeated(const hold_record& done, const hold_op& op) const;
  // Ends the active hold `hold_id` (it must be active).
  hold_record finish(const std::string& hold_id, hold_state to, sku_change& c);
  // ok, not_found, or why the finished hold could not be read (never a miss).
  store_status find_finished(const std::string& hold_id, hold_record& out, sku_change& c);
  void push_deadline(int64_t deadline_ms, uint32_t hash);
  void rebuild_deadlines();
  void drop_stale_deadlines();
  // A per-user limit counts each user's units in active holds and bought.
  struct buyer {
    int64_t held = 0;
    int64_t bought = 0;  // as in the user's buyer record (persistence/records.hpp)
    uint64_t written_seq = 0;  // the batch that last wrote the record
  };
  // The user's counts, read from storage the first time; null when unreadable.
  store_status find_buyer(const std::string& user, const storage& env, buyer*& out);
  hold_result over_limit(const std::string& user, const buyer& b, int64_t qty) const;

  std::string sku_;
  sku_book_policy policy_;
  bool exists_ = false;
  sku_record record_;
  active_map active_;
  // Min-heap of active holds by deadline. Holds that end early leave their entry
  // behind; it is skipped when it reaches the top and the heap is rebuilt when stale
  // entries outnumber live ones.
  std::vector<deadline_entry, table_allocator<deadline_entry>> deadlines_;
  // Finished in memory, not yet durable: hold id -> (seq that makes it durable, record).
  std::unordered_map<std::string, std::pair<uint64_t, hold_record>> finishing_;
  std::deque<std::pair<uint64_t, std::string>> finishing_order_;  // (seq, hold id), seq order
  hold_claims* claims_;
  // This SKU's number in the claims' index, given at its first claim (a number is kept
  // for ever: SKUs only read or restocked get none).
  uint32_t number_ = UINT32_MAX;
  // Hold ids claimed by reserves whose batch is not yet durable: (seq, the id's std::hash).
  std::deque<std::pair<uint64_t, size_t>> claimed_;
  int64_t last_now_ms_ = 0;  // the latest wall-clock time seen, to notice a step back
  // The user of each active hold that named one (most do not: no entry, no cost).
  flat_string_map<std::string> hold_users_;
  // SKUs with a per-user limit: the users seen. One is dropped only when it holds
  // nothing and its record is durable (memory runs ahead of the disk: a re-read of a
  // record still in flight would be behind).
  flat_string_map<buyer> buyers_;
  uint64_t durable_seq_ = 0;
};

}  // namespace holdfast
