#include "protocol/files.hpp"

#include "protocol/regular_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace holdfast {
namespace {

std::string errno_text() { return std::strerror(errno); }

bool write_all(int fd, const std::string& text) {
  for (size_t done = 0; done < text.size();) {
    auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string read_small_file(const std::string& path, size_t max_bytes, std::string& out) {
  std::string problem;
  switch (read_regular(path, max_bytes, out, problem)) {
    case read_status::ok: return "";
    case read_status::absent: return "cannot read: " + std::string(std::strerror(ENOENT));
    case read_status::refused: break;
  }
  // read_regular names the path; callers here name it themselves.
  if (problem.rfind(path, 0) == 0) problem = problem.substr(path.size());
  while (!problem.empty() && (problem.front() == ':' || problem.front() == ' ')) problem.erase(problem.begin());
  return problem;
}

bool file_absent(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) != 0 && errno == ENOENT;
}

bool write_file_atomically(const std::string& path, const std::string& text, std::string& error) {
  auto tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  bool ok = fd >= 0 && write_all(fd, text) && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  ok = ok && std::rename(tmp.c_str(), path.c_str()) == 0;
  if (ok) {
    auto slash = path.rfind('/');
    auto dir = slash == std::string::npos ? std::string(".") : path.substr(0, slash == 0 ? 1 : slash);
    int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ok = d >= 0 && ::fsync(d) == 0;
    if (d >= 0) ::close(d);
  }
  if (!ok) error = "cannot write " + path + ": " + errno_text();
  return ok;
}

}  // namespace holdfast
