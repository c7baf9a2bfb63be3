// A node's data directory: who may use it, and whether it still holds what it held.
//
// A writer takes an exclusive flock on `holdfast.lock` for its whole life, so a second
// node (or a backup written onto a live directory) is refused instead of both
// overwriting each other's records. `holdfast.format` names the directory's format and
// a random id that the data itself also carries: a directory that had data and lost it
// (deleted or emptied data.mdb, data from another directory) is refused at start
// instead of being served as an empty catalogue.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace holdfast {

class data_directory {
public:
  enum class mode { write, read_only };
  // 2: an LMDB snapshot plus the log in `log/` (1: LMDB alone, upgraded at open).
  static constexpr unsigned format = 2;

  // Write mode creates the directory if missing and locks it; read-only mode needs an
  // existing Holdfast directory and takes no lock. Null with `error` set on refusal.
  static std::unique_ptr<data_directory> open(const std::string& path, mode m,
                                              std::string& error);
  ~data_directory();
  data_directory(const data_directory&) = delete;
  data_directory& operator=(const data_directory&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // The id recorded in holdfast.format; empty for a directory not yet marked.
  const std::string& marked_id() const { return marked_id_; }
  unsigned marked_format() const { return marked_format_; }
  // Records `id` in holdfast.format (written to a temporary file, synced, renamed).
  bool mark(const std::string& id, std::string& error);
  // True when the directory holds nothing but lock files (and an empty log directory),
  // or nothing else but the names in `also_ignored`.
  bool fresh(const std::vector<std::string>& also_ignored = {}) const;

  static std::string new_id();
  // True when a writer (a running node) holds the directory's lock.
  static bool in_use(const std::string& path);

private:
  data_directory() = default;
  // The verdict a node and `holdfast check` share, before either reads anything else:
  // every file they will read (the marker, the lock file, LMDB's files, the log's files)
  // is a regular file or absent, `log` a directory, and the marker, when there is one,
  // names a format and an id (read into marked_*). Empty when so, else the problem.
  std::string inspect();
  std::string read_marker();  // inspect()'s steps
  // Without a marker: new, what a first start left before it marked the directory
  // (first_start_leftovers_), or refused.
  std::string unmarked_contents();
  std::string path_;
  std::string marked_id_;
  unsigned marked_format_ = 0;
  bool first_start_leftovers_ = false;  // unmarked, with LMDB's files and an empty log
  int lock_fd_ = -1;
};

}  // namespace holdfast
