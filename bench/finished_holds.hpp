// `holdfast bench finished-holds`: what finished holds cost on disk and whether their
// collection after the idempotency window keeps the data file from growing. Runs
// `cycles` rounds of `holds` reserve+confirm on one node whose retention is short, waits
// for each round's holds to be collected, and reports data.mdb after every round and the
// bytes each finished hold occupied before collection.
#pragma once

#include <cstdint>

namespace holdfast::bench {

struct finished_holds_options {
  int64_t holds = 200'000;       // reserve+confirm per cycle
  int cycles = 2;
  int64_t retention_ms = 2'000;  // the node's --finished-hold-retention
  bool json = false;
};

int run_finished_holds(const finished_holds_options& options);

}  // namespace holdfast::bench
