// Power-loss simulation for crash tests. kill -9 keeps the page cache, so a test that only kills
// its node can never catch a missing fsync. Run the node with the LD_PRELOAD shim
// (libfaultfs_shim.so, environment from child_environment()); after SIGKILL, power_loss() rewinds
// its files to what was durable, optionally plus a random subset of the unsynced pages.
//
// What the shim treats as durable, for regular files under FAULTFS_DIR (subdirectories too)
// whose name does not end with an excluded suffix (default "lock.mdb,.lock": LMDB's shared lock
// file and flock files are never touched):
//   - content present when the process first opens the file (the previous restore's result),
//     and files it creates (as empty files);
//   - everything written before a successful fsync/fdatasync on any fd of the file, or before a
//     successful sync()/syncfs() (which sync every tracked file), including the file size;
//   - writes through an fd opened O_SYNC/O_DSYNC, and pwritev2 with RWF_SYNC/RWF_DSYNC, at once;
//   - Linux AIO writes (IOCB_CMD_PWRITE/PWRITEV handed to io_submit through libc's syscall(),
//     as libraft writes its Raft log) with RWF_SYNC/RWF_DSYNC, from their submission: a
//     power loss while one is in flight keeps it (lenient by one write), and a kill -9 then
//     a restart never loses a write the kernel took. Without those flags they are pending.
// Everything else (write, pwrite, writev, pwritev[2], ftruncate, truncate, fallocate,
// posix_fallocate, O_TRUNC) is pending until the next sync.
//
// Fault injection: set_fault() writes the control file; the shim re-reads it before the next
// write or sync on a tracked file. Modes (first word of the file):
//   normal    no faults (also when the file is missing);
//   enospc    writes and fallocate fail with ENOSPC, nothing is written;
//   short     the next write writes only the first half of its bytes (rounded down) and returns
//             that count; every later write fails with ENOSPC (a disk filling mid-write) until
//             the mode is set again;
//   eio-sync  fsync, fdatasync and syncfs fail with EIO and make nothing durable.
//
// Limitations (by design, to stay small):
//   - Directory operations count as synced at once: creating, renaming and unlinking tracked
//     files moves their state with them. Renaming a directory that holds tracked files is not
//     followed; neither are hard links, O_TMPFILE + linkat, or renaming an untracked file over
//     a tracked one (its then-current content becomes durable on the next open).
//   - Files opened with fopen/fdopen for writing are tracked, but stdio writes go through
//     glibc's internal write and cannot be journaled: any sync of such a file makes all of it
//     durable, and power_loss() drops all of its unsynced data whatever keep_probability says.
//   - Otherwise only writes through libc's exported functions are seen. mmap stores (so LMDB's
//     MDB_WRITEMAP is not supported; msync and sync_file_range give no durability here either),
//     copy_file_range and sendfile (coreutils cp, std::filesystem::copy_file), io_uring and system
//     calls not made through libc's syscall() bypass the shim (so do the fault modes and
//     IOCB fsync commands for AIO): such data is neither journaled nor made durable by a later
//     fsync, so it looks lost after power_loss() (a spurious failure, never a vacuous pass).
//   - The shim's own state files count against RLIMIT_FSIZE, and a signal handler that writes
//     to a tracked file can deadlock the shim; a failure to write state aborts the process.
//   - fd bookkeeping does not survive exec; fds above 2^20 are not tracked; file names
//     containing '%' are not tracked (state files are named by replacing '/' with '%').
//   - A failed fsync leaves the writes pending (unlike Linux, which may drop the dirty pages).
//   - fallocate modes that change content (punch hole, zero/collapse/insert range) are not
//     journaled.
//   - One process at a time: power_loss() must run when no process using the shim is alive,
//     and files under data_dir must only be written under the shim while state exists.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace holdfast::faultfs {

struct options {
  std::string data_dir;      // FAULTFS_DIR: absolute; the files to protect live under it
  std::string state_dir;     // FAULTFS_STATE: absolute; the shim's own files, outside data_dir
  std::string shim_path;     // libfaultfs_shim.so
  std::string control_path;  // FAULTFS_CONTROL: fault mode file, written by set_fault()
  std::string exclude = "lock.mdb,.lock";  // FAULTFS_EXCLUDE: comma-separated name suffixes
};

// "NAME=value" entries to add to a child's environment so it runs on the shim (LD_PRELOAD is
// set to the shim alone). Creates state_dir if needed.
std::vector<std::string> child_environment(const options& opts);

// Sets the fault mode ("normal", "enospc", "short", "eio-sync", "stall-sync": fsync and
// fdatasync wait until the mode changes); throws std::invalid_argument
// for anything else. Replaces the control file atomically with a strictly later mtime, which
// is what the shim watches.
void set_fault(const options& opts, const std::string& mode);

struct restore_report {
  size_t files = 0;           // tracked files rewound
  size_t records = 0;         // journal records examined
  size_t unsynced_pages = 0;  // 4096-byte pieces of unsynced writes (plus unsynced resizes)
  size_t kept_pages = 0;      // of those, applied
  std::string to_string() const;
};

// Simulates a power loss after the process using the shim was SIGKILLed: rewinds every tracked
// file to its durable image, then replays its journal in order: durable records always,
// unsynced writes in pieces (the parts of each record within one 4096-byte page of the file),
// each kept with probability keep_probability (0: keep none, 1: keep all; draws from
// std::mt19937_64 seeded with `seed`, files in name order, so a seed reproduces a run).
// Unsynced resizes count as one piece each. Then deletes the state, so the next run starts from
// the restored content. Throws std::runtime_error on I/O errors.
restore_report power_loss(const options& opts, uint64_t seed, double keep_probability);

}  // namespace holdfast::faultfs
