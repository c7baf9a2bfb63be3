#include "persistence/identity.hpp"

#include <algorithm>
#include <cstdio>
#include <random>
#include <sstream>

#include "protocol/files.hpp"

namespace holdfast {
namespace {

constexpr const char* identity_name = "identity";
constexpr const char* legacy_name = "cluster-member";
constexpr const char* generations_name = "peer-generations";
constexpr size_t small_file_max = 64 << 10;

std::string join(const std::vector<uint32_t>& ids) {
  std::string out;
  for (auto id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

bool parse_ids(const std::string& text, std::vector<uint32_t>& out) {
  out.clear();
  std::istringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    if (part.empty() || part.size() > 5 || !std::all_of(part.begin(), part.end(), ::isdigit)) return false;
    out.push_back(static_cast<uint32_t>(std::stoul(part)));
  }
  std::sort(out.begin(), out.end());
  return true;
}

bool parse_number(const std::string& text, uint64_t& out) {
  if (text.empty() || text.size() > 19 || !std::all_of(text.begin(), text.end(), ::isdigit)) return false;
  out = std::stoull(text);
  return true;
}

// The file before identities: `cluster "NAME" node N` and, later, `members 1,2,3`.
bool read_legacy(const std::string& text, directory_identity& out) {
  std::istringstream in(text);
  std::string first, members;
  std::getline(in, first);
  std::getline(in, members);
  auto open = first.find('"'), close = first.rfind('"');
  auto node = first.rfind(" node ");
  if (first.rfind("cluster \"", 0) != 0 || close == open || node == std::string::npos || node < close)
    return false;
  uint64_t id = 0;
  if (!parse_number(first.substr(node + 6), id) || id == 0 || id > 65535) return false;
  out.kind = directory_identity::role::member;
  out.cluster_name = first.substr(open + 1, close - open - 1);
  out.member = static_cast<uint32_t>(id);
  if (members.rfind("members ", 0) == 0 && !parse_ids(members.substr(8), out.members)) return false;
  return true;
}

}  // namespace

std::string directory_identity::describe() const {
  std::string what = kind == role::single   ? "a single node"
                     : kind == role::member ? "node " + std::to_string(member) + " of cluster \"" + cluster_name +
                                                "\"" + (cluster_id.empty() ? "" : " (id " + cluster_id + ")")
                                            : "nothing yet";
  if (kind == role::member && generation > 1) what += ", generation " + std::to_string(generation);
  return what;
}

bool read_identity(const std::string& dir, directory_identity& out, std::string& error) {
  out = directory_identity{};
  std::string text;
  auto path = dir + "/" + identity_name;
  if (file_absent(path)) {
    auto legacy = dir + "/" + legacy_name;
    if (file_absent(legacy)) return true;
    if (auto problem = read_small_file(legacy, small_file_max, text); !problem.empty()) {
      error = legacy + ": " + problem;
      return false;
    }
    if (!read_legacy(text, out)) {
      error = legacy + ": not a member record";
      return false;
    }
    return true;
  }
  if (auto problem = read_small_file(path, small_file_max, text); !problem.empty()) {
    error = path + ": " + problem;
    return false;
  }
  std::istringstream in(text);
  std::string line;
  bool has_role = false;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto space = line.find(' ');
    auto key = line.substr(0, space);
    auto value = space == std::string::npos ? std::string() : line.substr(space + 1);
    bool ok = true;
    if (key == "role") {
      has_role = value == "single" || value == "member";
      out.kind = value == "single" ? directory_identity::role::single : directory_identity::role::member;
      ok = has_role;
    } else if (key == "cluster_name") {
      out.cluster_name = value;
    } else if (key == "cluster_id") {
      out.cluster_id = value;
    } else if (key == "member") {
      uint64_t id = 0;
      ok = parse_number(value, id) && id > 0 && id <= 65535;
      out.member = static_cast<uint32_t>(id);
    } else if (key == "members") {
      ok = parse_ids(value, out.members);
    } else if (key == "generation") {
      ok = parse_number(value, out.generation) && out.generation > 0;
    } else if (key == "backup") {
      ok = value == "yes" || value == "no";
      out.backup = value == "yes";
    } else if (key == "backup_taken") {
      out.backup_taken = value;
    } else if (key == "lineage") {
      std::istringstream tokens(value);
      for (std::string t; std::getline(tokens, t, ',');) {
        ok = ok && t.size() == 16 && std::all_of(t.begin(), t.end(), ::isxdigit);
        out.lineage.push_back(t);
      }
      ok = ok && out.lineage.size() <= directory_identity::lineage_max;
    }
    if (!ok) {
      error = path + ": cannot read \"" + line + "\"";
      return false;
    }
  }
  if (!has_role || (out.kind == directory_identity::role::member && out.member == 0)) {
    error = path + ": incomplete (no role or member)";
    return false;
  }
  return true;
}

bool write_identity(const std::string& dir, const directory_identity& id, std::string& error) {
  std::ostringstream s;
  s << "# What this Holdfast data directory is: fixed at its first start, copied by backup,\n"
       "# changed only by `holdfast restore`. Do not edit.\n";
  if (id.kind == directory_identity::role::single) {
    s << "role single\n";
  } else {
    s << "role member\ncluster_name " << id.cluster_name << "\ncluster_id " << id.cluster_id
      << "\nmember " << id.member << "\nmembers " << join(id.members) << "\n";
  }
  s << "generation " << id.generation << "\nbackup " << (id.backup ? "yes" : "no") << "\n";
  if (!id.backup_taken.empty()) s << "backup_taken " << id.backup_taken << "\n";
  if (!id.lineage.empty()) {
    s << "lineage ";
    for (size_t i = 0; i < id.lineage.size(); ++i) s << (i ? "," : "") << id.lineage[i];
    s << "\n";
  }
  return write_file_atomically(dir + "/" + identity_name, s.str(), error);
}

void directory_identity::extend_lineage() {
  std::random_device rd;
  char token[17];
  std::snprintf(token, sizeof token, "%08x%08x", rd(), rd());
  lineage.push_back(token);
  if (lineage.size() > lineage_max) lineage.erase(lineage.begin());
}

bool read_peer_records(const std::string& dir, std::map<uint32_t, peer_record>& out, std::string& error) {
  out.clear();
  auto path = dir + "/" + generations_name;
  if (file_absent(path)) return true;
  std::string text;
  if (auto problem = read_small_file(path, small_file_max, text); !problem.empty()) {
    error = path + ": " + problem;
    return false;
  }
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream l(line);
    std::string node, generation, token, extra;
    uint64_t id = 0;
    peer_record r;
    if (!(l >> node >> generation) || (l >> token && l >> extra) || !parse_number(node, id) || id == 0 ||
        id > 65535 || !parse_number(generation, r.generation)) {
      error = path + ": cannot read \"" + line + "\" (delete the file only if every member runs its newest directory)";
      return false;
    }
    r.token = token;
    out[static_cast<uint32_t>(id)] = r;
  }
  return true;
}

bool write_peer_records(const std::string& dir, const std::map<uint32_t, peer_record>& records,
                        std::string& error) {
  std::string text;
  for (auto& [node, r] : records)
    text += std::to_string(node) + " " + std::to_string(r.generation) + (r.token.empty() ? "" : " " + r.token) + "\n";
  return write_file_atomically(dir + "/" + generations_name, text, error);
}

}  // namespace holdfast
