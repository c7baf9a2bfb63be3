// The holdfast binary's calloc (cli/allocator.cpp), linked here with jemalloc as in the
// binary: what it returns is zeroed whichever path it takes, a product that overflows is
// refused, and a large one is left to jemalloc.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

bool all_zero(const void* p, size_t bytes) {
  auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < bytes; ++i)
    if (b[i] != 0) return false;
  return true;
}

// Recycled memory is dirty: fill blocks of the size with 0xff and free them, so the
// allocator hands the same memory back to the calloc that follows.
void dirty(size_t bytes) {
  std::vector<void*> blocks;
  for (int i = 0; i < 8; ++i) {
    void* p = std::malloc(bytes);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xff, bytes);
    blocks.push_back(p);
  }
  for (void* p : blocks) std::free(p);
}

TEST(holdfast_calloc, zeroes_recycled_memory_of_every_size_class) {
  // Small (slab), large below the memset bound, and above it (jemalloc zeroes).
  for (size_t bytes : {size_t{8}, size_t{1000}, size_t{16} << 10, size_t{52} << 10, size_t{512} << 10,
                       size_t{1} << 20, (size_t{1} << 20) + 1, size_t{3} << 20}) {
    dirty(bytes);
    for (int i = 0; i < 8; ++i) {
      auto* p = static_cast<unsigned char*>(std::calloc(bytes, 1));
      ASSERT_NE(p, nullptr) << bytes;
      EXPECT_TRUE(all_zero(p, bytes)) << bytes << " bytes, round " << i;
      std::memset(p, 0xff, bytes);
      std::free(p);
    }
  }
}

TEST(holdfast_calloc, counts_times_size_is_what_is_zeroed) {
  dirty(4096 * 8);
  auto* p = static_cast<uint64_t*>(std::calloc(4096, 8));
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(all_zero(p, 4096 * 8));
  std::free(p);
}

TEST(holdfast_calloc, an_overflowing_product_is_refused_with_enomem) {
  errno = 0;
  volatile size_t count = SIZE_MAX / 2 + 1;  // volatile: not a product the compiler sees
  EXPECT_EQ(std::calloc(count, 4), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(holdfast_calloc, zero_bytes_is_a_distinct_block_that_can_be_freed) {
  void* p = std::calloc(0, 16);
  void* q = std::calloc(16, 0);
  EXPECT_NE(p, nullptr);
  EXPECT_NE(q, nullptr);
  EXPECT_NE(p, q);
  std::free(p);
  std::free(q);
}

}  // namespace
