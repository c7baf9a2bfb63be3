// Opening the files of a data directory without blocking on what should not be there.
//
// open() of a FIFO waits for a writer, and read() of a FIFO or a device may never return:
// a node doing either would hang while it holds its directory's lock, deaf to SIGTERM (it
// waits for signals only once it serves), and `holdfast check` with it. So every file
// persistence/ reads is looked at with stat before it is opened, opened with O_NONBLOCK
// and looked at again with fstat (something else may have been put there in between):
// anything but a regular file is refused, named with its kind. Any thread may call these.
#pragma once

#include <sys/types.h>

#include <string>

namespace holdfast {

// "a FIFO", "a directory", "a character device", ...
const char* file_kind(mode_t mode);
// "PATH is not a regular file (a FIFO)".
std::string not_a_regular_file(const std::string& path, mode_t mode);

// Empty when `path` is a regular file or does not exist, else why not. Opens nothing.
std::string regular_or_absent(const std::string& path);

// Opens `path` with `flags` (see open(2); O_CLOEXEC is added) if it is a regular file, and
// clears O_NONBLOCK once it is open. Returns -1 with `problem` set when it is not, or when
// open fails (errno is then open's: ENOENT when there is nothing at `path`).
int open_regular(const std::string& path, int flags, std::string& problem,
                 mode_t create_mode = 0644);

enum class read_status { ok, absent, refused };
// Reads a whole regular file of at most `bytes_max` bytes into `out`; `problem` says why
// when refused (not a regular file, larger, unreadable).
read_status read_regular(const std::string& path, size_t bytes_max, std::string& out,
                         std::string& problem);

}  // namespace holdfast
