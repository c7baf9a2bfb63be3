// The overlay's and the SKU book's flat_string_map against std::unordered_map: random
// inserts, finds, updates and erases (with the entry moves and backward shifts they
// cause), and growth across many doublings.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cerrno>

#include <random>
#include <string>
#include <unordered_map>

#include "persistence/compact_tables.hpp"
#include "persistence/overlay.hpp"

namespace holdfast::testing {
namespace {

TEST(flat_string_map, random_operations_agree_with_unordered_map) {
  std::mt19937_64 rng(7);
  flat_string_map<int64_t> flat;
  std::unordered_map<std::string, int64_t> model;
  for (int round = 0; round < 200'000; ++round) {
    auto key = "hold-" + std::to_string(rng() % 5'000);
    switch (rng() % 4) {
      case 0:
      case 1: {
        auto v = static_cast<int64_t>(rng() % 1000);
        flat[key] = v;
        model[key] = v;
        break;
      }
      case 2:
        ASSERT_EQ(flat.erase(key), model.erase(key) == 1) << key;
        break;
      case 3: {
        auto* found = flat.find(key);
        auto it = model.find(key);
        ASSERT_EQ(found != nullptr, it != model.end()) << key;
        if (found) {
          ASSERT_EQ(*found, it->second) << key;
        }
        break;
      }
    }
    ASSERT_EQ(flat.size(), model.size());
  }
  size_t seen = 0;
  flat.each([&](const std::string& k, int64_t v) {
    ++seen;
    ASSERT_EQ(model.at(k), v) << k;
  });
  EXPECT_EQ(seen, model.size());
  // Everything out again, in another order: the map ends empty and still works.
  for (auto& [k, v] : model) ASSERT_TRUE(flat.erase(k)) << k;
  EXPECT_TRUE(flat.empty());
  EXPECT_EQ(flat.find("hold-1"), nullptr);
  flat["again"] = 5;
  EXPECT_EQ(*flat.find("again"), 5);
}

TEST(flat_string_map, grows_through_many_doublings_and_reserve_keeps_every_key) {
  flat_string_map<std::string> flat;
  for (int i = 0; i < 100'000; ++i) flat["k" + std::to_string(i)] = "v" + std::to_string(i);
  flat.reserve(300'000);
  for (int i = 100'000; i < 200'000; ++i) flat["k" + std::to_string(i)] = "v" + std::to_string(i);
  ASSERT_EQ(flat.size(), 200'000u);
  for (int i = 0; i < 200'000; i += 7) {
    auto* v = flat.find("k" + std::to_string(i));
    ASSERT_NE(v, nullptr) << i;
    EXPECT_EQ(*v, "v" + std::to_string(i));
  }
  for (int i = 0; i < 200'000; i += 2) ASSERT_TRUE(flat.erase("k" + std::to_string(i)));
  EXPECT_EQ(flat.size(), 100'000u);
  EXPECT_EQ(flat.find("k0"), nullptr);
  EXPECT_EQ(*flat.find("k199999"), "v199999");
  flat.clear();
  EXPECT_TRUE(flat.empty());
}

}  // namespace
}  // namespace holdfast::testing

namespace holdfast::testing {
namespace {

// Blocks of 2 MiB and more are mapped on 2 MiB boundaries (what a huge page needs) and
// given back whole; a vector grows and shrinks through both kinds of block.
TEST(table_allocator, large_blocks_sit_on_huge_page_boundaries_and_keep_their_contents) {
  std::vector<uint64_t, table_allocator<uint64_t>> v;
  for (uint64_t i = 0; i < 1'000'000; ++i) {
    v.push_back(i * 7);
    if (v.size() * sizeof(uint64_t) >= huge_page_bytes && v.size() == v.capacity())
      ASSERT_EQ(reinterpret_cast<uintptr_t>(v.data()) % huge_page_bytes, 0u) << v.size();
  }
  for (uint64_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], i * 7);
  v.resize(1000);
  v.shrink_to_fit();
  EXPECT_EQ(v[999], 999u * 7);
  // An odd size, not a multiple of a page: its whole mapping is given back on free.
  auto* p = static_cast<char*>(table_allocate(huge_page_bytes * 3 + 5));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % huge_page_bytes, 0u);
  p[huge_page_bytes * 3 + 4] = 1;
  table_deallocate(p, huge_page_bytes * 3 + 5);
  std::vector<unsigned char> resident(4 * huge_page_bytes / 4096);
  errno = 0;
  EXPECT_EQ(mincore(p, 4 * huge_page_bytes, resident.data()), -1) << "still mapped";
  EXPECT_EQ(errno, ENOMEM);
}

TEST(name_table, numbers_names_in_first_seen_order_and_finds_them_again) {
  name_table t;
  std::vector<std::string> names;
  for (int i = 0; i < 100'000; ++i) names.push_back("sku-" + std::to_string(i * 7919 % 100'003));
  names.push_back("");                              // an empty name is a name
  names.push_back(std::string("nul\0inside", 10));  // bytes, not C strings
  names.push_back(std::string(128, 'x'));
  for (size_t i = 0; i < names.size(); ++i) ASSERT_EQ(t.intern(names[i]), i);
  EXPECT_EQ(t.size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    ASSERT_EQ(t.name(static_cast<uint32_t>(i)), names[i]);
    ASSERT_EQ(t.intern(names[i]), i) << "interned again: the same number";
  }
  EXPECT_EQ(t.size(), names.size());
  EXPECT_EQ(t.name(static_cast<uint32_t>(names.size())), "") << "an unknown number names nothing";
  EXPECT_EQ(t.intern("nul"), names.size()) << "a prefix is another name";
}

}  // namespace
}  // namespace holdfast::testing
