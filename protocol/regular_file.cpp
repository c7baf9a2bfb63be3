#include "protocol/regular_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace holdfast {

const char* file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "of an unknown kind";
}

std::string not_a_regular_file(const std::string& path, mode_t mode) {
  return path + " is not a regular file (" + file_kind(mode) + ")";
}

std::string regular_or_absent(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    return errno == ENOENT ? std::string() : path + ": " + std::strerror(errno);
  return S_ISREG(st.st_mode) ? std::string() : not_a_regular_file(path, st.st_mode);
}

int open_regular(const std::string& path, int flags, std::string& problem, mode_t create_mode) {
  // Looked at first, so that no device is ever opened (opening one can have effects).
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    problem = not_a_regular_file(path, st.st_mode);
    errno = EINVAL;
    return -1;
  }
  int fd = ::open(path.c_str(), flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, create_mode);
  if (fd < 0) {
    int e = errno;
    // ENXIO, EISDIR, ...: something else was put there since the look.
    if (e != ENOENT && stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
      problem = not_a_regular_file(path, st.st_mode);
    else
      problem = path + ": " + std::strerror(e);
    errno = e;
    return -1;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    problem = not_a_regular_file(path, st.st_mode);
    close(fd);
    errno = EINVAL;
    return -1;
  }
  int status_flags = fcntl(fd, F_GETFL);
  if (status_flags < 0 || fcntl(fd, F_SETFL, status_flags & ~O_NONBLOCK) != 0) {
    problem = path + ": " + std::strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

read_status read_regular(const std::string& path, size_t bytes_max, std::string& out,
                         std::string& problem) {
  out.clear();
  problem.clear();
  int fd = open_regular(path, O_RDONLY, problem);
  if (fd < 0) return errno == ENOENT ? read_status::absent : read_status::refused;
  char buffer[4096];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) problem = path + ": " + std::strerror(errno);
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
    if (out.size() > bytes_max) {
      problem = path + " is larger than " + std::to_string(bytes_max) + " bytes";
      break;
    }
  }
  close(fd);
  return problem.empty() ? read_status::ok : read_status::refused;
}

}  // namespace holdfast
