// The `holdfast` binary's allocator: jemalloc (linked into this binary only), with the
// options below and one change to how it zeroes.
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

// jemalloc reads its options from this symbol: a background thread returns freed pages
// over ten seconds, so an idle node's resident size follows what it holds rather than its
// peak (MALLOC_CONF in the environment still overrides). Not faster: each return is an
// madvise that flushes the other core's TLB. At 1 s the thread made ~1400 such calls a
// second while SKU actors were activated and passivated (uniform reserves over 1M SKUs),
// 9% of the node's samples plus the interrupts, and reserves ran at 17.5k/s against
// 28.3k/s at 10 s. `bench many-skus` reads the resident size after that decay.
extern "C" const char* malloc_conf;
const char* malloc_conf = "background_thread:true,dirty_decay_ms:10000,muzzy_decay_ms:0";

extern "C" void* mallocx(size_t size, int flags);  // jemalloc's own API

// calloc, as every library in the process calls it (this executable's definition comes
// first in symbol lookup). Cap'n Proto allocates each message segment with calloc: an RPC
// answer's or a log record's tens of KiB. jemalloc zeroes a recycled extent that size by
// handing its pages back (madvise(MADV_DONTNEED), unless thp:always), which flushes the
// TLB of every core with an inter-processor interrupt, and the answer's first writes then
// fault the pages in again: on a virtual machine where both are expensive that was a
// sixth of the network thread's time in row 1b (perf: several hundred madvise calls a
// second, all from calloc). Up to 1 MiB a memset of memory that is mostly still cached
// is cheaper; larger ones are left to jemalloc (a large, sparsely used calloc keeps its
// untouched pages unmapped).
extern "C" void* calloc(size_t n, size_t size) noexcept {
  constexpr size_t memset_bytes_max = size_t{1} << 20;
  size_t bytes = 0;
  if (__builtin_mul_overflow(n, size, &bytes)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (bytes > memset_bytes_max) return mallocx(bytes, 0x40 /* MALLOCX_ZERO */);
  void* p = std::malloc(bytes);
  // Hidden from the optimizer: it would fuse malloc and memset into a call to calloc.
  asm volatile("" : "+r"(p));
  if (p) std::memset(p, 0, bytes);
  return p;
}
