#include "bench/progress.hpp"

#include <cstdio>

namespace holdfast::bench {
namespace {
bool quiet = false;
}  // namespace

void set_progress_quiet(bool q) { quiet = q; }
bool progress_quiet() { return quiet; }

void progress(const std::string& line) {
  std::fprintf(quiet ? stderr : stdout, "  %s\n", line.c_str());
  std::fflush(quiet ? stderr : stdout);
}

}  // namespace holdfast::bench
