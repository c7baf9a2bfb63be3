// The SKU state machine on its own, over a real (empty) LMDB environment for its reads.
#include "test_support.hpp"

#include <algorithm>
#include <limits>
#include <unordered_map>

#include "actors/sku_book.hpp"
#include "protocol/assert.hpp"

namespace holdfast::testing {
namespace {

class sku_book_test : public ::testing::Test {
protected:
  void SetUp() override {
    env_ = open_test_storage(dir_.path());
    ASSERT_TRUE(env_);
  }

  sku_change change() { return sku_change(++seq_, now_, env_.get()); }

  hold_op reserve(const std::string& id, int64_t ttl_ms) {
    return hold_op{hold_op_kind::reserve, "tee", id, 1, ttl_ms, {}};
  }
  hold_op release(const std::string& id) {
    return hold_op{hold_op_kind::release, "tee", id, 0, 0, {}};
  }

  static size_t count_state(const std::vector<mutation>& ms, hold_state s) {
    return static_cast<size_t>(std::count_if(ms.begin(), ms.end(), [s](const mutation& m) {
      return m.kind == mutation::put_hold && m.hold.hold.state == s;
    }));
  }

  temp_dir dir_;
  std::unique_ptr<storage> env_;
  uint64_t seq_ = 0;
  const int64_t now_ = 1'000'000;
};

// The book asserts in pairs: a reserve checks the stock it takes and the counters it
// leaves; seal checks what it writes against the invariants load() checks on reading.
TEST_F(sku_book_test, a_miscounting_reserve_fails_its_assertion_before_anything_is_sealed) {
  sku_book book("tee", {});
  auto c = change();
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 1, 100, {}}, c).status, code::ok);
  ASSERT_FALSE(book.seal(c).empty());
  auto r = change();
  arm_fault(fault_point::sku_book_miscount);
  EXPECT_THROW(book.apply(reserve("h", 60'000), now_, r), assertion_failed);
  arm_fault(fault_point::sku_book_miscount, false);
  EXPECT_NE(book.broken_invariant(), "");
  r.dirty = true;  // as if the batch had changed something else too: still never sealed
  EXPECT_THROW(book.seal(r), assertion_failed);
}

TEST_F(sku_book_test, holds_that_end_early_never_expire_and_the_rest_expire_in_time) {
  sku_book book("tee", {});
  auto c = change();
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 10'000, 100, {}}, c).status, code::ok);
  // Deadlines arrive out of order: hold i lives 1000 + (i * 7919) % 3000 ms.
  const int n = 3000;
  for (int i = 0; i < n; ++i)
    ASSERT_EQ(book.apply(reserve("h" + std::to_string(i), 1000 + (i * 7919) % n), now_, c).status,
              code::ok);
  // Five in six end early; their deadlines stay behind in the heap until it is rebuilt.
  int64_t earliest_left = 0;
  std::vector<int64_t> left;
  for (int i = 0; i < n; ++i) {
    if (i % 6 != 0) {
      ASSERT_EQ(book.apply(release("h" + std::to_string(i)), now_, c).status, code::ok);
    } else {
      left.push_back(now_ + 1000 + (i * 7919) % n);
    }
  }
  std::sort(left.begin(), left.end());
  earliest_left = left.front();
  EXPECT_EQ(book.active_holds(), left.size());
  EXPECT_EQ(book.earliest_deadline_ms(), earliest_left);
  EXPECT_EQ(book.broken_invariant(), "");
  auto ms = book.seal(c);
  EXPECT_EQ(count_state(ms, hold_state::released), static_cast<size_t>(n) - left.size());

  // Expire up to the median remaining deadline: exactly the holds due by then end.
  auto cutoff = left[left.size() / 2];
  auto due = static_cast<size_t>(std::upper_bound(left.begin(), left.end(), cutoff) - left.begin());
  auto e = change();
  book.expire_due(cutoff, e);
  EXPECT_EQ(count_state(e.mutations, hold_state::expired), due);
  EXPECT_EQ(book.active_holds(), left.size() - due);
  EXPECT_EQ(book.record().sku.reserved, static_cast<int64_t>(left.size() - due));
  EXPECT_GT(book.earliest_deadline_ms(), cutoff);
  // A released hold is not expired a second time, however late the clock.
  auto late = change();
  book.expire_due(now_ + 10 * n, late);
  EXPECT_EQ(count_state(late.mutations, hold_state::expired), left.size() - due);
  EXPECT_EQ(book.active_holds(), 0u);
  EXPECT_EQ(book.earliest_deadline_ms(), 0);
  EXPECT_EQ(book.record().sku.on_hand, 10'000);
  EXPECT_EQ(book.broken_invariant(), "");
}

// The deadline heap remembers a hold by its id's 32-bit hash and its deadline, not by a
// copy of the id: ids that share a hash must still each expire at their own deadline,
// and an entry left behind by one that ended early must never end the other before its.
TEST_F(sku_book_test, holds_whose_ids_share_a_hash_expire_each_at_its_own_deadline) {
  std::unordered_map<uint32_t, std::string> seen;
  std::string a, b;
  for (int i = 0; a.empty(); ++i) {
    ASSERT_LT(i, 4'000'000) << "no two ids with one 32-bit hash";
    auto id = "c" + std::to_string(i);
    auto [it, fresh] = seen.emplace(flat_string_map<int>::hash(id), id);
    if (!fresh) a = it->second, b = id;
  }
  auto expired_ids = [&](sku_book& book, int64_t at) {
    auto e = change();
    e.now_ms = at;
    book.expire_due(at, e);
    std::vector<std::string> ids;
    for (auto& m : e.mutations)
      if (m.kind == mutation::put_hold && m.hold.hold.state == hold_state::expired) ids.push_back(m.hold.hold.hold_id);
    return ids;
  };
  // Different deadlines, in both orders of arrival (the first one reserved is the first
  // its hash finds).
  for (bool later_first : {false, true}) {
    sku_book book("tee", {});
    auto c = change();
    ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 10, 100, {}}, c).status, code::ok);
    if (later_first) ASSERT_EQ(book.apply(reserve(b, 2'000), now_, c).status, code::ok);
    ASSERT_EQ(book.apply(reserve(a, 1'000), now_, c).status, code::ok);
    if (!later_first) ASSERT_EQ(book.apply(reserve(b, 2'000), now_, c).status, code::ok);
    book.seal(c);
    EXPECT_EQ(book.earliest_deadline_ms(), now_ + 1'000);
    EXPECT_EQ(expired_ids(book, now_ + 1'500), std::vector<std::string>{a}) << later_first;
    EXPECT_EQ(book.earliest_deadline_ms(), now_ + 2'000);
    EXPECT_EQ(expired_ids(book, now_ + 1'999), std::vector<std::string>{});
    EXPECT_EQ(expired_ids(book, now_ + 2'000), std::vector<std::string>{b});
    EXPECT_EQ(book.active_holds(), 0u);
    EXPECT_EQ(book.earliest_deadline_ms(), 0);
  }
  // The earlier one released early, or extended past the other: the entry it left behind
  // ends nothing before the other's deadline.
  for (bool extend : {false, true}) {
    sku_book book("tee", {});
    auto c = change();
    ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 10, 100, {}}, c).status, code::ok);
    ASSERT_EQ(book.apply(reserve(a, 1'000), now_, c).status, code::ok);
    ASSERT_EQ(book.apply(reserve(b, 2'000), now_, c).status, code::ok);
    auto later = hold_op{hold_op_kind::extend, "tee", a, 0, 3'000, {}};
    ASSERT_EQ(book.apply(extend ? later : release(a), now_, c).status, code::ok);
    book.seal(c);
    EXPECT_EQ(expired_ids(book, now_ + 1'000), std::vector<std::string>{}) << extend;
    EXPECT_EQ(expired_ids(book, now_ + 1'999), std::vector<std::string>{}) << extend;
    EXPECT_EQ(expired_ids(book, now_ + 2'000), std::vector<std::string>{b}) << extend;
    EXPECT_EQ(expired_ids(book, now_ + 3'000), extend ? std::vector<std::string>{a} : std::vector<std::string>{});
    EXPECT_EQ(book.active_holds(), 0u);
  }
  // One deadline, one of the two released early: the other expires once, at it.
  sku_book book("tee", {});
  auto c = change();
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 10, 100, {}}, c).status, code::ok);
  ASSERT_EQ(book.apply(reserve(a, 3'000), now_, c).status, code::ok);
  ASSERT_EQ(book.apply(reserve(b, 3'000), now_, c).status, code::ok);
  ASSERT_EQ(book.apply(release(a), now_, c).status, code::ok);
  book.seal(c);
  EXPECT_EQ(expired_ids(book, now_ + 2'999), std::vector<std::string>{});
  EXPECT_EQ(expired_ids(book, now_ + 3'000), std::vector<std::string>{b});
  EXPECT_EQ(expired_ids(book, now_ + 9'000), std::vector<std::string>{});
  EXPECT_EQ(book.record().sku.reserved, 0);
  EXPECT_EQ(book.broken_invariant(), "");
}

TEST_F(sku_book_test, seal_writes_the_changed_holds_then_the_record) {
  sku_book book("tee", {});
  auto c = change();
  book.apply(sku_op{sku_op_kind::create, "tee", 10, 100, {}}, c);
  auto created = book.seal(c);
  ASSERT_EQ(created.size(), 1u);  // the record only: no holds
  EXPECT_EQ(created[0].kind, mutation::put_sku);

  auto a = change();
  book.apply(reserve("a", 60'000), now_, a);
  book.apply(reserve("b", 60'000), now_, a);
  auto first = book.seal(a);
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first.back().kind, mutation::put_sku);
  EXPECT_EQ(first.back().sku.sku.reserved, 2);

  auto b = change();
  book.apply(release("a"), now_, b);
  book.apply(reserve("c", 60'000), now_, b);
  auto second = book.seal(b);  // only what changed: a released, c reserved
  ASSERT_EQ(second.size(), 3u);
  EXPECT_EQ(count_state(second, hold_state::released), 1u);
  EXPECT_EQ(count_state(second, hold_state::active), 1u);

  auto idle = change();
  EXPECT_TRUE(book.seal(idle).empty());  // nothing changed, nothing written
}

TEST_F(sku_book_test, an_ended_hold_answers_from_memory_until_durable) {
  sku_book book("tee", {});
  auto c = change();
  book.apply(sku_op{sku_op_kind::create, "tee", 5, 100, {}}, c);
  book.apply(reserve("h", 60'000), now_, c);
  book.seal(c);
  auto d = change();
  ASSERT_EQ(book.apply(hold_op{hold_op_kind::confirm, "tee", "h", 0, 0, {}}, now_, d).status, code::ok);
  book.seal(d);
  // Not on disk (nothing is ever committed here): memory must answer.
  auto q = change();
  auto again = book.apply(hold_op{hold_op_kind::confirm, "tee", "h", 0, 0, {}}, now_, q);
  EXPECT_EQ(again.status, code::ok);
  EXPECT_EQ(again.hold.state, hold_state::confirmed);
  EXPECT_EQ(book.apply(reserve("h", 60'000), now_, q).hold.state, hold_state::confirmed);
  book.durable(d.seq);
  // Durable: LMDB would answer now; this empty one does not know the hold.
  EXPECT_EQ(book.apply(hold_op{hold_op_kind::query, "tee", "h", 0, 0, {}}, now_, q).status,
            code::unknown_hold);
}


// A backlog of overdue holds ends in bounded batches (found by the adversarial pass: one
// batch of every overdue hold did not fit a tight disk and wedged the SKU).
TEST_F(sku_book_test, expiry_ends_at_most_a_bounded_batch_per_change) {
  sku_book_policy policy;
  policy.expire_batch_max = 100;
  sku_book book("tee", policy);
  auto c = change();
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 10'000, 100, {}}, c).status, code::ok);
  for (int i = 0; i < 250; ++i)
    ASSERT_EQ(book.apply(reserve("h" + std::to_string(i), 1'000), now_, c).status, code::ok);
  book.seal(c);
  size_t rounds = 0;
  while (book.earliest_deadline_ms() != 0 && book.earliest_deadline_ms() <= now_ + 5'000) {
    auto e = change();
    book.expire_due(now_ + 5'000, e);
    EXPECT_LE(count_state(e.mutations, hold_state::expired), 100u);
    book.seal(e);
    ASSERT_LT(++rounds, 10u);
  }
  EXPECT_EQ(rounds, 3u);
  EXPECT_EQ(book.active_holds(), 0u);
  EXPECT_EQ(book.record().sku.reserved, 0);
}


// An overdue hold that a bounded expiry batch has not reached yet has still ended: it is
// never confirmed late (found by review).
TEST_F(sku_book_test, an_overdue_hold_is_never_confirmed_however_bounded_the_expiry) {
  sku_book book("tee", {});
  auto c = change();
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 10'000, 100, {}}, c).status, code::ok);
  for (int i = 0; i < 1'000; ++i)
    ASSERT_EQ(book.apply(reserve("h" + std::to_string(i), 1'000), now_, c).status, code::ok);
  book.seal(c);
  auto late = sku_change(++seq_, now_ + 2'000, env_.get());
  book.expire_due(late.now_ms, late, 256);
  int expired = 0;
  for (int i = 0; i < 1'000; ++i) {
    auto r = book.apply(hold_op{hold_op_kind::confirm, "tee", "h" + std::to_string(i), 0, 0, {}},
                        late.now_ms, late);
    expired += r.status == code::hold_expired;
  }
  EXPECT_EQ(expired, 1'000);  // 256 by the batch, the rest at the confirm itself
  EXPECT_EQ(book.record().sku.sold, 0);
  EXPECT_EQ(book.record().sku.reserved, 0);
  auto again = sku_change(++seq_, now_ + 2'000, env_.get());
  EXPECT_EQ(book.apply(reserve("h999", 1'000), again.now_ms, again).status, code::hold_expired);
}

// create and adjust keep on_hand within on_hand_max; restock took it past (a restock's
// amount is checked at the edge, which does not know on_hand). An invalid change answers
// `invalid` and leaves the book and the batch untouched.
TEST_F(sku_book_test, restock_never_takes_on_hand_past_its_maximum) {
  sku_book book("tee", {});
  auto c = change();
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", on_hand_max - 5, 100, {}}, c).status,
            code::ok);
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::restock, "tee", 5, 0, {}}, c).status, code::ok);
  ASSERT_EQ(book.record().sku.on_hand, on_hand_max);
  book.seal(c);
  for (int64_t amount : {int64_t{1}, on_hand_max}) {
    auto past = change();
    auto r = book.apply(sku_op{sku_op_kind::restock, "tee", amount, 0, {}}, past);
    EXPECT_EQ(r.status, code::invalid);
    EXPECT_NE(r.message.find("past " + std::to_string(on_hand_max)), std::string::npos) << r.message;
    EXPECT_TRUE(book.seal(past).empty());
    EXPECT_EQ(book.record().sku.on_hand, on_hand_max);
    EXPECT_EQ(book.record().sku.stocked, on_hand_max);
  }
  // Sold units make room again.
  auto sell = change();
  ASSERT_EQ(book.apply(hold_op{hold_op_kind::reserve, "tee", "h", 10, 60'000, {}}, now_, sell).status,
            code::ok);
  ASSERT_EQ(book.apply(hold_op{hold_op_kind::confirm, "tee", "h", 0, 0, {}}, now_, sell).status,
            code::ok);
  EXPECT_EQ(book.apply(sku_op{sku_op_kind::restock, "tee", 11, 0, {}}, sell).status, code::invalid);
  EXPECT_EQ(book.apply(sku_op{sku_op_kind::restock, "tee", 10, 0, {}}, sell).status, code::ok);
  EXPECT_EQ(book.record().sku.on_hand, on_hand_max);
  EXPECT_EQ(book.broken_invariant(), "");
}

// `stocked` counts every unit ever added and only grows: restock checked it against
// overflow, an adjust upwards did not.
TEST_F(sku_book_test, no_change_overflows_the_stocked_counter) {
  const int64_t stocked_max = std::numeric_limits<int64_t>::max() / 2;
  std::vector<mutation> batch = {mutation{mutation::put_sku, {}, {}, {}}};
  auto& old = batch[0].sku.sku;
  old.sku = "tee";
  old.stocked = old.written_off = stocked_max - 10;  // a long history, nothing on hand
  std::vector<store_status> status;
  ASSERT_EQ(env_->commit({{&batch, 1}}, status), store_status::ok);
  sku_book book("tee", {});
  ASSERT_EQ(book.load(*env_), "");
  const auto before = book.record().sku;
  for (auto op : {sku_op{sku_op_kind::restock, "tee", 11, 0, {}}, sku_op{sku_op_kind::adjust, "tee", 11, 0, {}}}) {
    auto c = change();
    auto r = book.apply(op, c);
    EXPECT_EQ(r.status, code::invalid);
    EXPECT_NE(r.message.find("overflow"), std::string::npos) << r.message;
    EXPECT_TRUE(book.seal(c).empty());
    EXPECT_EQ(book.record().sku.stocked, before.stocked);
    EXPECT_EQ(book.record().sku.on_hand, 0);
  }
  auto c = change();
  EXPECT_EQ(book.apply(sku_op{sku_op_kind::adjust, "tee", 10, 0, {}}, c).status, code::ok);
  EXPECT_EQ(book.record().sku.stocked, stocked_max);
  EXPECT_EQ(book.broken_invariant(), "");
}


// extend(hold, ttl) is how an order keeps its holds while the payment is pending.
TEST_F(sku_book_test, extend_pushes_the_deadline_never_shortens_it_and_survives_a_restart) {
  auto extend = [](const std::string& id, int64_t ttl_ms) {
    return hold_op{hold_op_kind::extend, "tee", id, 0, ttl_ms, {}};
  };
  auto at = [&](int64_t now_ms) { return sku_change(++seq_, now_ms, env_.get()); };
  sku_book book("tee", {});
  auto c = at(now_);
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 5, 100, "Tee, black"}, c).status, code::ok);
  ASSERT_EQ(book.apply(reserve("h", 10'000), now_, c).status, code::ok);
  ASSERT_EQ(book.apply(reserve("short", 10'000), now_, c).status, code::ok);
  auto created = book.seal(c);

  auto e = at(now_ + 5'000);
  auto r = book.apply(extend("h", 60'000), now_ + 5'000, e);
  ASSERT_EQ(r.status, code::ok) << r.message;
  EXPECT_EQ(r.hold.deadline_ms, now_ + 65'000);
  auto extended = book.seal(e);
  EXPECT_EQ(count_state(extended, hold_state::active), 1u);

  // A repeated or shorter extend changes nothing and answers the later deadline.
  auto again = at(now_ + 6'000);
  r = book.apply(extend("h", 1'000), now_ + 6'000, again);
  EXPECT_EQ(r.status, code::ok);
  EXPECT_EQ(r.hold.deadline_ms, now_ + 65'000);
  EXPECT_TRUE(book.seal(again).empty());

  // The first deadline passing expires the other hold, not the extended one.
  auto due = at(now_ + 20'000);
  book.expire_due(now_ + 20'000, due);
  EXPECT_EQ(book.active_holds(), 1u);
  EXPECT_EQ(book.earliest_deadline_ms(), now_ + 65'000);
  auto expired = book.seal(due);
  EXPECT_EQ(count_state(expired, hold_state::expired), 1u);
  // An ended hold is not extended: it answers how it ended.
  auto late = at(now_ + 21'000);
  EXPECT_EQ(book.apply(extend("short", 60'000), now_ + 21'000, late).status, code::hold_expired);
  EXPECT_EQ(book.apply(extend("nope", 60'000), now_ + 21'000, late).status, code::unknown_hold);

  std::vector<store_status> status;
  ASSERT_EQ(env_->commit({{&created, 1}, {&extended, 1}, {&expired, 1}}, status), store_status::ok);
  sku_book reloaded("tee", {});
  ASSERT_EQ(reloaded.load(*env_), "");
  EXPECT_EQ(reloaded.record().sku.title, "Tee, black");
  EXPECT_EQ(reloaded.active_holds(), 1u);
  EXPECT_EQ(reloaded.earliest_deadline_ms(), now_ + 65'000);
  // A clock step back cuts deadlines to now + the longest ttl the hold got, so the
  // extend is not lost to a restart on a machine whose clock went back.
  auto stepped = at(now_ - 100'000);
  reloaded.clamp_deadlines(stepped);
  EXPECT_EQ(reloaded.earliest_deadline_ms(), now_ - 100'000 + 60'000);
  EXPECT_EQ(reloaded.broken_invariant(), "");

  // A hold past its deadline, not yet swept, is not brought back by an extend.
  auto overdue = at(now_ - 100'000 + 60'001);
  EXPECT_EQ(reloaded.apply(extend("h", 60'000), now_ - 100'000 + 60'001, overdue).status,
            code::hold_expired);
  EXPECT_EQ(reloaded.active_holds(), 0u);
}


// "2 per customer": a user's active holds plus purchases never pass the limit, a
// reserve must name its user, and the purchases survive a reload from storage.
TEST_F(sku_book_test, a_per_user_limit_counts_holds_and_purchases_across_a_reload) {
  auto mine = [](const std::string& id, int64_t qty, const std::string& user) {
    return hold_op{hold_op_kind::reserve, "tee", id, qty, 60'000, user};
  };
  auto end = [](hold_op_kind k, const std::string& id) { return hold_op{k, "tee", id, 0, 0, {}}; };
  sku_book book("tee", {});
  auto c = change();
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 100, 100, "Tee", 2}, c).status, code::ok);
  EXPECT_EQ(book.apply(mine("anon", 1, ""), now_, c).status, code::invalid) << "the user must be named";
  ASSERT_EQ(book.apply(mine("a1", 1, "ann"), now_, c).status, code::ok);
  ASSERT_EQ(book.apply(mine("a2", 1, "ann"), now_, c).status, code::ok);
  auto refused = book.apply(mine("a3", 1, "ann"), now_, c);
  EXPECT_EQ(refused.status, code::limit_reached);
  EXPECT_EQ(refused.available, 0);
  EXPECT_NE(refused.message.find("at most 2 per user"), std::string::npos) << refused.message;
  EXPECT_EQ(book.apply(mine("b1", 2, "bob"), now_, c).status, code::ok) << "users are counted apart";
  EXPECT_EQ(book.apply(mine("b2", 3, "cat"), now_, c).status, code::limit_reached);
  // The same hold id by another user is another request.
  EXPECT_EQ(book.apply(mine("a1", 1, "bob"), now_, c).status, code::hold_conflict);
  EXPECT_EQ(book.apply(mine("a1", 1, "ann"), now_, c).status, code::ok) << "a repeat is the same hold";
  auto first = book.seal(c);

  // A released hold gives its units back to the user; a confirmed one is a purchase.
  auto d = change();
  ASSERT_EQ(book.apply(end(hold_op_kind::release, "a1"), now_, d).status, code::ok);
  ASSERT_EQ(book.apply(mine("a3", 1, "ann"), now_, d).status, code::ok);
  ASSERT_EQ(book.apply(end(hold_op_kind::confirm, "a2"), now_, d).status, code::ok);
  ASSERT_EQ(book.apply(end(hold_op_kind::confirm, "a3"), now_, d).status, code::ok);
  auto second = book.seal(d);
  size_t buyer_records = 0;
  for (auto& m : second)
    if (m.kind == mutation::put_record) {
      ++buyer_records;
      EXPECT_EQ(m.record.key, std::string("tee\0ann", 7));
    }
  EXPECT_EQ(buyer_records, 2u) << "each confirm writes the user's count in its own batch";
  EXPECT_EQ(second.back().kind, mutation::put_sku);
  auto e = change();
  EXPECT_EQ(book.apply(mine("a4", 1, "ann"), now_, e).status, code::limit_reached) << "bought 2";

  std::vector<store_status> status;
  ASSERT_EQ(env_->commit({{&first, 1}, {&second, 1}}, status), store_status::ok);
  for (bool snapshot : {false, true}) {
    if (snapshot) {
      ASSERT_EQ(env_->snapshot_now(), store_status::ok);
    }
    sku_book reloaded("tee", {});
    ASSERT_EQ(reloaded.load(*env_), "");
    EXPECT_EQ(reloaded.record().sku.limit_per_user, 2);
    auto f = change();
    EXPECT_EQ(reloaded.apply(mine("a5", 1, "ann"), now_, f).status, code::limit_reached)
      << "purchases come back from the buyer record (snapshot: " << snapshot << ")";
    EXPECT_EQ(reloaded.apply(mine("b3", 1, "bob"), now_, f).status, code::limit_reached)
      << "bob's active hold of 2 comes back from the hold log";
    EXPECT_EQ(reloaded.apply(mine("c1", 2, "cat"), now_, f).status, code::ok);
  }
  std::string value;
  ASSERT_EQ(env_->read_record(record_space::buyer, std::string("tee\0ann", 7), value), store_status::ok);
  EXPECT_EQ(value, "2");
}


// Found by the adversarial pass: a sold-out limited SKU remembered every user it
// refused (500 B each, never freed while the SKU stayed hot). Stock is checked first,
// and users holding nothing whose counts are durable are dropped.
TEST_F(sku_book_test, a_hot_limited_sku_remembers_its_holders_not_its_crowd) {
  sku_book book("tee", {});
  auto c = change();
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 0, 100, {}, 1}, c).status, code::ok);
  for (int i = 0; i < 5000; ++i)
    ASSERT_EQ(book.apply(hold_op{hold_op_kind::reserve, "tee", "h" + std::to_string(i), 1, 60'000,
                                 "user-" + std::to_string(i)}, now_, c).status,
              code::out_of_stock);
  EXPECT_EQ(book.buyers_remembered(), 0u);
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::restock, "tee", 100'000, 0, {}, 0}, c).status, code::ok);
  std::vector<store_status> status;
  auto first = book.seal(c);
  ASSERT_EQ(env_->commit({{&first, 1}}, status), store_status::ok);
  book.durable(c.seq);
  // Users who buy and leave: their counts are durable once their batch is.
  for (int round = 0; round < 50; ++round) {
    auto r = change();
    for (int i = round * 100; i < round * 100 + 100; ++i) {
      auto id = "b" + std::to_string(i);
      ASSERT_EQ(book.apply(hold_op{hold_op_kind::reserve, "tee", id, 1, 60'000, "user-" + std::to_string(i)},
                           now_, r).status, code::ok);
      ASSERT_EQ(book.apply(hold_op{hold_op_kind::confirm, "tee", id, 0, 0, {}}, now_, r).status, code::ok);
    }
    auto ms = book.seal(r);
    ASSERT_EQ(env_->commit({{&ms, 1}}, status), store_status::ok);
    book.durable(r.seq);
  }
  EXPECT_LT(book.buyers_remembered(), 2200u);
  // A dropped user's purchase is read back from storage.
  auto last = change();
  EXPECT_EQ(book.apply(hold_op{hold_op_kind::reserve, "tee", "again", 1, 60'000, "user-10"}, now_, last).status,
            code::limit_reached);
}


// return_hold undoes a sale once: what an order's compensation or refund does per line.
TEST_F(sku_book_test, a_returned_hold_gives_its_units_back_once_and_its_user_the_allowance) {
  auto op = [](hold_op_kind k, const std::string& id, int64_t qty = 0, const std::string& user = {}) {
    return hold_op{k, "tee", id, qty, k == hold_op_kind::reserve ? 60'000 : 0, user};
  };
  sku_book book("tee", {});
  auto c = change();
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 10, 100, {}, 2}, c).status, code::ok);
  ASSERT_EQ(book.apply(op(hold_op_kind::reserve, "sold", 2, "ann"), now_, c).status, code::ok);
  ASSERT_EQ(book.apply(op(hold_op_kind::reserve, "held", 1, "bob"), now_, c).status, code::ok);
  ASSERT_EQ(book.apply(op(hold_op_kind::reserve, "gone", 1, "cat"), now_, c).status, code::ok);
  ASSERT_EQ(book.apply(op(hold_op_kind::confirm, "sold"), now_, c).status, code::ok);
  ASSERT_EQ(book.apply(op(hold_op_kind::release, "gone"), now_, c).status, code::ok);
  EXPECT_EQ(book.apply(op(hold_op_kind::reserve, "more", 1, "ann"), now_, c).status, code::limit_reached);
  EXPECT_EQ(book.record().sku.sold, 2);

  auto r = book.apply(op(hold_op_kind::return_hold, "sold"), now_, c);
  ASSERT_EQ(r.status, code::ok) << r.message;
  EXPECT_EQ(r.hold.state, hold_state::returned);
  EXPECT_EQ(book.record().sku.sold, 0);
  EXPECT_EQ(book.record().sku.on_hand, 10);
  EXPECT_EQ(book.broken_invariant(), "");
  auto again = book.apply(op(hold_op_kind::return_hold, "sold"), now_, c);
  EXPECT_EQ(again.status, code::ok);
  EXPECT_EQ(book.record().sku.on_hand, 10) << "returned once";
  EXPECT_EQ(book.apply(op(hold_op_kind::return_hold, "held"), now_, c).status, code::wrong_state);
  EXPECT_EQ(book.apply(op(hold_op_kind::return_hold, "gone"), now_, c).status, code::wrong_state);
  EXPECT_EQ(book.apply(op(hold_op_kind::return_hold, "nope"), now_, c).status, code::unknown_hold);
  EXPECT_EQ(book.apply(op(hold_op_kind::reserve, "more", 1, "ann"), now_, c).status, code::ok)
    << "a returned purchase gives the user's allowance back";

  auto ms = book.seal(c);
  std::vector<store_status> status;
  ASSERT_EQ(env_->commit({{&ms, 1}}, status), store_status::ok);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  sku_book reloaded("tee", {});
  ASSERT_EQ(reloaded.load(*env_), "");
  auto d = change();
  auto back = reloaded.apply(op(hold_op_kind::query, "sold"), now_, d);
  EXPECT_EQ(back.hold.state, hold_state::returned);
  EXPECT_EQ(reloaded.apply(op(hold_op_kind::return_hold, "sold"), now_, d).status, code::ok);
  EXPECT_EQ(reloaded.record().sku.on_hand, 10);
  EXPECT_EQ(reloaded.broken_invariant(), "");
}

// `hold list`: pages in hold-id order over three sources at once, the snapshot's finished
// holds, the overlay's changes since (a confirmed hold returned since overrules its
// snapshot state) and the book's memory (an ended hold not yet durable); every hold once,
// whatever the page size and filter.
// With a snapshot scan cap of 1 or 2, storage's pages end early on every filter and the
// book's own holds past its `next` must wait for a later page.
TEST_F(sku_book_test, hold_pages_merge_snapshot_overlay_and_memory_in_id_order_each_hold_once) {
 std::vector<std::unique_ptr<temp_dir>> dirs;  // hold ids are node-wide: a node per cap
 for (size_t cap : {size_t{1}, size_t{2}, hold_list_scan_max}) {
  SCOPED_TRACE("scan cap " + std::to_string(cap));
  dirs.push_back(std::make_unique<temp_dir>());
  env_ = open_test_storage(dirs.back()->path());
  ASSERT_TRUE(env_);
  const std::string sku = "tee-" + std::to_string(cap);
  auto op = [&](hold_op_kind k, const std::string& id) {
    return hold_op{k, sku, id, k == hold_op_kind::reserve ? 1 : 0, k == hold_op_kind::reserve ? 60'000 : 0, {}};
  };
  sku_book_policy policy;
  policy.hold_list_scan_max = cap;
  sku_book book(sku, policy);
  std::vector<store_status> status;
  auto commit = [&](sku_change& c) {
    auto ms = book.seal(c);
    ASSERT_EQ(env_->commit({{&ms, 1}}, status), store_status::ok);
    book.durable(c.seq);
  };
  auto c = change();
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, sku, 100, 100, {}}, c).status, code::ok);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(book.apply(op(hold_op_kind::reserve, "a" + std::to_string(i)), now_, c).status, code::ok);
  commit(c);
  auto d = change();
  for (auto [k, id] : {std::pair{hold_op_kind::confirm, "a1"}, {hold_op_kind::confirm, "a3"}, {hold_op_kind::release, "a5"}})
    ASSERT_EQ(book.apply(op(k, id), now_, d).status, code::ok);
  commit(d);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);  // a1, a3, a5 finished in LMDB
  auto e = change();
  ASSERT_EQ(book.apply(op(hold_op_kind::confirm, "a7"), now_, e).status, code::ok);
  ASSERT_EQ(book.apply(op(hold_op_kind::return_hold, "a1"), now_, e).status, code::ok);
  commit(e);  // the overlay: a7 confirmed, a1 returned
  auto f = change();
  ASSERT_EQ(book.apply(op(hold_op_kind::release, "a9"), now_, f).status, code::ok);
  book.seal(f);  // memory only: not durable

  auto list = [&](const std::string& state, const std::string& after, uint32_t limit) {
    sku_op q{sku_op_kind::list_holds, sku, 0, 0, {}};
    q.state = state;
    q.after = after;
    q.limit = limit;
    auto g = change();
    auto r = book.apply(q, g);
    EXPECT_EQ(r.status, code::ok) << r.message;
    EXPECT_TRUE(book.seal(g).empty()) << "a listing writes nothing";
    return r;
  };
  // Every page of every size: the walk sees each hold once, in order.
  auto walk = [&](const std::string& state, uint32_t limit) {
    std::string seen, after;
    for (int pages = 0; pages < 20; ++pages) {
      auto r = list(state, after, limit);
      EXPECT_LE(r.holds.size(), limit);
      for (auto& h : r.holds) seen += h.hold_id + ":" + to_string(h.state) + " ";
      if (r.next.empty()) return seen;
      EXPECT_GT(r.next, after);
      after = r.next;
    }
    ADD_FAILURE() << "the pages never end";
    return seen;
  };
  const std::string all = "a0:active a1:returned a2:active a3:confirmed a4:active a5:released a6:active "
                          "a7:confirmed a8:active a9:released ";
  for (uint32_t limit : {1u, 2u, 3u, 10u, 100u}) {
    EXPECT_EQ(walk("", limit), all) << "limit " << limit;
    EXPECT_EQ(walk("finished", limit), "a1:returned a3:confirmed a5:released a7:confirmed a9:released ");
    EXPECT_EQ(walk("confirmed", limit), "a3:confirmed a7:confirmed ") << "a1 was returned since the snapshot";
    EXPECT_EQ(walk("returned", limit), "a1:returned ");
    EXPECT_EQ(walk("active", limit), "a0:active a2:active a4:active a6:active a8:active ");
  }
  auto page = list("", "a4", 2);
  ASSERT_GE(page.holds.size(), 1u);
  EXPECT_EQ(page.holds[0].hold_id, "a5");
  if (cap > 2) {
    ASSERT_EQ(page.holds.size(), 2u);
    EXPECT_EQ(page.next, "a6");
  }
  EXPECT_EQ(page.sku.active_holds, 5) << "the page carries the SKU as it is";
  EXPECT_TRUE(list("", "a9", 5).holds.empty());
  EXPECT_EQ(list("", "a9", 5).next, "");

  sku_book none("nope", {});
  auto g = change();
  EXPECT_EQ(none.apply(sku_op{sku_op_kind::list_holds, "nope", 0, 0, {}}, g).status, code::unknown_sku);
 }
 env_.reset();  // before its directory goes
}

// Storage's page stops reading the snapshot after `scan_max` finished holds when a filter
// keeps few: the page is short, `next` says where to go on, and no hold is skipped.
TEST_F(sku_book_test, a_rare_state_costs_a_bounded_scan_per_page_and_skips_nothing) {
  sku_book book("tee", {});
  std::vector<store_status> status;
  auto c = change();
  ASSERT_EQ(book.apply(sku_op{sku_op_kind::create, "tee", 1000, 100, {}}, c).status, code::ok);
  for (int i = 0; i < 50; ++i) {
    char id[8];
    std::snprintf(id, sizeof id, "h%02d", i);
    ASSERT_EQ(book.apply(hold_op{hold_op_kind::reserve, "tee", id, 1, 60'000, {}}, now_, c).status, code::ok);
    auto end = i % 10 == 3 ? hold_op_kind::confirm : hold_op_kind::release;
    ASSERT_EQ(book.apply(hold_op{end, "tee", id, 0, 0, {}}, now_, c).status, code::ok);
  }
  auto ms = book.seal(c);
  ASSERT_EQ(env_->commit({{&ms, 1}}, status), store_status::ok);
  ASSERT_EQ(env_->snapshot_now(), store_status::ok);
  auto confirmed = [](const hold_record& r) { return r.hold.state == hold_state::confirmed; };
  std::string seen, after;
  int pages = 0;
  for (; pages < 30; ++pages) {
    std::vector<hold_record> out;
    std::string next;
    ASSERT_EQ(env_->hold_page("tee", after, confirmed, 100, 7, out, next), store_status::ok);
    for (auto& r : out) seen += r.hold.hold_id + " ";
    if (next.empty()) break;
    ASSERT_GT(next, after);
    after = next;
  }
  EXPECT_EQ(seen, "h03 h13 h23 h33 h43 ");
  EXPECT_GE(pages, 6) << "50 holds read 7 at a time";
}

}  // namespace
}  // namespace holdfast::testing

namespace holdfast::testing {
namespace {

// The claims a change made are given back when the change is never written (a broken
// invariant) or fails; a durable change's claims stay: they are its holds' index entries.
TEST_F(sku_book_test, claims_of_changes_never_written_go_and_durable_ones_stay) {
  hold_claims claims(std::shared_ptr<storage>(env_.get(), [](storage*) {}));
  sku_book tee("tee", {}, &claims);
  sku_book two("two", {}, &claims);
  auto c0 = change();
  ASSERT_EQ(tee.apply(sku_op{sku_op_kind::create, "tee", 10, 100, {}}, c0).status, code::ok);
  ASSERT_EQ(two.apply(sku_op{sku_op_kind::create, "two", 10, 100, {}}, c0).status, code::ok);
  auto c1 = change();
  ASSERT_EQ(tee.apply(reserve("kept", 60'000), now_, c1).status, code::ok);
  auto c2 = change();
  ASSERT_EQ(tee.apply(reserve("dropped", 60'000), now_, c2).status, code::ok);
  tee.durable(c1.seq);
  tee.release_claims(c2.seq);  // c2 is never written
  auto c3 = change();
  auto on_two = [&](const std::string& id) {
    return two.apply(hold_op{hold_op_kind::reserve, "two", id, 1, 60'000, {}}, now_, c3);
  };
  EXPECT_EQ(on_two("dropped").status, code::ok) << "the unwritten change's claim was given back";
  auto kept = on_two("kept");
  EXPECT_EQ(kept.status, code::hold_conflict) << "a durable hold's claim stays";
  EXPECT_EQ(kept.hold.sku, "tee");
}

// A hold that ended since the last snapshot: its id is claimed again by its own SKU
// (so a grant after its finished record is gone would still be indexed), and another
// SKU hears whose it is.
TEST(overlay_claims, an_id_that_ended_here_is_claimed_again_and_theirs_elsewhere) {
  overlay ov;
  auto a = ov.sku_number("a");
  auto b = ov.sku_number("b");
  std::string owner;
  ASSERT_EQ(ov.claim_hold("x", "a", a, owner), overlay::claim_outcome::fresh);
  EXPECT_EQ(ov.claim_hold("x", "a", a, owner), overlay::claim_outcome::ours);
  EXPECT_EQ(ov.claim_hold("x", "b", b, owner), overlay::claim_outcome::theirs);
  EXPECT_EQ(owner, "a");
  // The hold ends (durable): its id moves to the index of ended holds.
  std::vector<mutation> batch(2);
  batch[0].kind = mutation::put_hold;
  batch[0].hold.hold = {"x", "a", 1, hold_state::released, 0};
  batch[1].kind = mutation::put_sku;
  batch[1].sku.sku.sku = "a";
  ov.apply(batch, false);
  std::string sku;
  ASSERT_TRUE(ov.find_hold_sku("x", sku));
  EXPECT_EQ(sku, "a");
  owner.clear();
  EXPECT_EQ(ov.claim_hold("x", "b", b, owner), overlay::claim_outcome::theirs);
  EXPECT_EQ(owner, "a");
  EXPECT_EQ(ov.claim_hold("x", "a", a, owner), overlay::claim_outcome::ended_ours);
  EXPECT_EQ(ov.claim_hold("x", "b", b, owner), overlay::claim_outcome::theirs) << "claimed again for a";
  ov.unclaim_hold("x", a);  // a repeat gives it back: the ended index still answers
  ASSERT_TRUE(ov.find_hold_sku("x", sku));
  EXPECT_EQ(sku, "a");
  ov.unclaim_hold("x", b);  // not b's: nothing changes
  EXPECT_EQ(ov.claim_hold("x", "a", a, owner), overlay::claim_outcome::ended_ours);
}

}  // namespace
}  // namespace holdfast::testing
