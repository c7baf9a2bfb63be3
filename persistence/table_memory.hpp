// Memory for the node's largest tables (a hot SKU's holds, the node's index of active
// hold ids): blocks of 2 MiB and more are mapped on their own and marked for transparent
// huge pages, smaller ones come from malloc as usual.
//
// Why: those tables grow while a flash sale runs, and every 4 KiB page they touch for
// the first time is a page fault. On a virtual machine a fault is costly (on the PVM
// guests we measure on, faults were a sixth of the node's CPU in the hot-SKU bench); a
// huge page is one fault for 512 pages. The kernel honours the advice only when
// /sys/kernel/mm/transparent_hugepage/enabled is `always` or `madvise` (Debian's
// default); elsewhere these blocks are ordinary mappings. A block's resident memory is
// rounded up to 2 MiB at most once per table, and only for tables of 2 MiB or more.
#pragma once

#include <cstddef>
#include <new>

namespace holdfast {

constexpr size_t huge_page_bytes = size_t{2} << 20;

void* table_allocate(size_t bytes);
void table_deallocate(void* p, size_t bytes) noexcept;

// For std::vector: vector<T, table_allocator<T>>.
template <class T>
struct table_allocator {
  using value_type = T;
  table_allocator() = default;
  template <class U>
  table_allocator(const table_allocator<U>&) noexcept {}
  T* allocate(size_t n) {
    if (n > size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(table_allocate(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) noexcept { table_deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const table_allocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const table_allocator<U>&) const noexcept { return false; }
};

}  // namespace holdfast
