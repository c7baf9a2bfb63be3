// CRC32C (Castagnoli), the checksum of every stored record (and of the log's records
// to come). Uses the SSE4.2 instruction when the CPU has it, a table otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace holdfast {

uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

}  // namespace holdfast
