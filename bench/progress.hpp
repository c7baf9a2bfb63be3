// Progress lines of a long bench run: on stdout, or on stderr when the run prints its
// report as JSON (stdout then carries the report alone).
#pragma once

#include <string>

namespace holdfast::bench {

// Set once at the start of a run: progress to stderr (true) or stdout.
void set_progress_quiet(bool quiet);
bool progress_quiet();
// One indented line of progress, flushed at once.
void progress(const std::string& line);

}  // namespace holdfast::bench
