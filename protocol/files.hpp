// Small files a node reads and writes beside its data: identity records, markers, the
// cluster file, PEMs. Reads never block (a FIFO or device given by mistake is refused,
// not waited on); writes are atomic (a temporary file, synced, renamed, the directory
// synced), so a crash leaves the old text or the new one, never a mix.
#pragma once

#include <string>

namespace holdfast {

// Reads a regular file of at most `max_bytes` into `out`; returns "" or what is wrong
// ("not a regular file", "larger than ...", "cannot read: No such file or directory").
std::string read_small_file(const std::string& path, size_t max_bytes, std::string& out);
// True when `path` does not exist (ENOENT): absent, as opposed to unreadable.
bool file_absent(const std::string& path);
// Replaces `path` with `text` atomically and durably; false with `error` set.
bool write_file_atomically(const std::string& path, const std::string& text, std::string& error);

}  // namespace holdfast
