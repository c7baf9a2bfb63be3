#include "persistence/table_memory.hpp"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>

namespace holdfast {
namespace {

size_t mapped_length(size_t bytes) { return (bytes + huge_page_bytes - 1) & ~(huge_page_bytes - 1); }

}  // namespace

void* table_allocate(size_t bytes) {
  if (bytes < huge_page_bytes) {
    if (void* p = std::malloc(bytes == 0 ? 1 : bytes)) return p;
    throw std::bad_alloc();
  }
  // Huge pages need 2 MiB-aligned addresses: map one huge page more and trim both ends.
  size_t length = mapped_length(bytes);
  void* raw = ::mmap(nullptr, length + huge_page_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  auto start = reinterpret_cast<uintptr_t>(raw);
  auto aligned = (start + huge_page_bytes - 1) & ~(uintptr_t{huge_page_bytes} - 1);
  if (aligned > start) ::munmap(raw, aligned - start);
  size_t tail = (start + length + huge_page_bytes) - (aligned + length);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + length), tail);
  // Advice only: a kernel without transparent huge pages leaves 4 KiB pages.
  ::madvise(reinterpret_cast<void*>(aligned), length, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(aligned);
}

void table_deallocate(void* p, size_t bytes) noexcept {
  if (!p) return;
  if (bytes < huge_page_bytes) return std::free(p);
  ::munmap(p, mapped_length(bytes));
}

}  // namespace holdfast
