#include "harness/replace_member.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "cluster/announce.hpp"
#include "cluster/replicated_skus.hpp"  // group_replacement_file
#include "protocol/files.hpp"
#include "protocol/limits.hpp"

namespace holdfast {

member_check ask_members(const cluster_config& cfg, uint32_t member, const client_options& o) {
  member_check out;
  for (auto& m : cfg.members) {
    try {
      blocking_client c(m.client, o);
      auto s = c.status();
      if (m.id == member) {
        out.alive = "node " + std::to_string(member) + " answers at " + m.client + " (incarnation " +
                    std::to_string(s.incarnation) + ")";
        continue;
      }
      ++out.answered;
      for (auto& l : s.links) {
        if (l.node != member) continue;
        out.generation_seen = std::max(out.generation_seen, l.generation);
        if (l.state == "up")
          out.alive = "node " + std::to_string(m.id) + " has a live link to node " + std::to_string(member) +
                      " (incarnation " + std::to_string(l.incarnation) + ")";
      }
    } catch (const std::exception& e) {
      // Not answering says nothing about the member; a node whose TLS refused this client's
      // certificate is up, though, and may be the member itself: refuse rather than guess.
      std::string why = e.what();
      if (tls_refusal(why) || why.find("ssl connection ended") != std::string::npos)
        out.alive = "node " + std::to_string(m.id) + " answers at " + m.client +
                    " but refused this client's TLS certificate: pass --tls-cert and --tls-key (holdfast cluster "
                    "cert) so it can be asked";
    }
  }
  return out;
}

std::string announce_successor(const cluster_config& cfg, const directory_identity& identity, bool force,
                               int64_t timeout_ms, const std::string& otherwise) {
  // The members learn the new generation now, before the copy ever starts: the process
  // it replaces, if it was only frozen, is refused when it wakes.
  auto told = announce_generation(cfg, identity.member, identity.generation, identity.lineage.back(),
                                   timeout_ms);
  std::string refusals;
  for (auto& r : told.refused) refusals += "; " + r;
  bool live = refusals.find("already running") != std::string::npos;
  // A member that refuses the announced generation as old or behind would fence the
  // new directory for good: stop, and run again (the next generation).
  if (refusals.find("replaced by `holdfast restore`") != std::string::npos ||
      refusals.find("is behind") != std::string::npos)
    return "stopped: a member knows a newer generation of node " + std::to_string(identity.member) + refusals +
           "; run it again with every member up";
  // A majority of the other members must record it (with three members: both others),
  // so that a member which missed it, and would accept the replaced directory, is at most
  // a minority.
  size_t others = cfg.members.size() - 1, majority = others / 2 + 1;
  if (live || (told.accepted < majority && !force))
    return "stopped: " +
           (live ? std::string("the member still runs")
                 : std::to_string(told.accepted) + " of the other " + std::to_string(others) +
                     " members recorded the new generation, fewer than a majority (" + std::to_string(majority) +
                     "); bring them up, or pass --force") +
           refusals + "; " + otherwise;
  return "";
}

uint32_t find_raft_leader(const cluster_config& cfg, const client_options& o) {
  uint32_t leader = 0;
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(4 * cfg.election_timeout_ms);
  for (;;) {
    uint64_t term = 0;
    for (auto& m : cfg.members) {
      try {
        blocking_client c(m.client, o);
        auto s = c.status();
        if (s.raft.present && s.raft.state == "leader" && s.raft.term >= term) {
          leader = m.id;
          term = s.raft.term;
        }
      } catch (const std::exception&) {  // down: not the leader we ask
      }
    }
    if (leader != 0 || std::chrono::steady_clock::now() > until) return leader;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// Takes `path`'s lock (flock, naming this process) for one replacement of node `n`: the
// descriptor, or -1 with why ("another replacement ..." when one holds it).
int lock_replacement(const std::string& path, uint32_t n, std::string& error) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return -1;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char holder[32] = {};
    (void)!::pread(fd, holder, sizeof holder - 1, 0);
    ::close(fd);
    error = "another replacement of node " + std::to_string(n) + " runs (" + path +
            (holder[0] ? ", pid " + std::string(holder, std::strcspn(holder, "\n")) : std::string()) + ")";
    return -1;
  }
  auto me = std::to_string(::getpid()) + "\n";
  (void)!::ftruncate(fd, 0);
  (void)!::pwrite(fd, me.data(), me.size(), 0);
  return fd;
}

// Step 5: asks the leader to make `out.replica` a voter until it is (it catches up
// meanwhile), for up to o.catch_up_limit. {"", ""} when it votes, else {status, why};
// out.leader is the leader asked last.
std::pair<std::string, std::string> promote_until_voter(const cluster_config& cfg, const replace_options& o,
                                                        const std::string& prepared, replace_result& out) {
  auto quick = o.client;
  quick.call_timeout_ms = std::min<int64_t>(o.timeout_ms, 3'000);
  // Made a voter once caught up: asked again while it is not.
  auto until = std::chrono::steady_clock::now() + o.catch_up_limit;
  for (int attempt = 1;; ++attempt) {
    out.leader = find_raft_leader(cfg, quick);
    std::string refused = out.leader == 0 ? "no member leads the SKU group" : "";
    if (out.leader != 0) {
      try {
        auto slow = o.client;
        slow.call_timeout_ms = std::max<int64_t>(o.timeout_ms, 120'000);
        blocking_client c(cfg.member(out.leader)->client, slow);
        refused = c.promote_replica(out.replica);
        if (refused.empty()) break;
        // Not in the group (removed since, or the directory names another replica): asking
        // again will not help.
        if (refused.find("no server has ID") != std::string::npos)
          return {"failed", "the group has no replica " + std::to_string(out.replica) + " (" + refused +
                                    "): " + prepared + " names a replica the group no longer has; move " + o.data_dir +
                                    " away and run this again"};
        // How far it got, from the leader.
        for (auto& f : c.status().raft.followers)
          if (f.replica == out.replica) refused += " (it lacks " + std::to_string(f.lag) + " entries)";
      } catch (const std::exception& e) {
        refused = "node " + std::to_string(out.leader) + ", the leader: " + e.what();
      }
    }
    if (refused.rfind("forbidden", 0) == 0) return {"forbidden", refused};
    if (std::chrono::steady_clock::now() > until)
      return {"unavailable", "replica " + std::to_string(out.replica) + " of node " + std::to_string(o.node) +
                                     " is not a voter yet: " + refused + " (run this again to go on)"};
    if (o.progress) o.progress("not a voter yet (attempt " + std::to_string(attempt) + "): " + refused);
    std::this_thread::sleep_for(std::chrono::seconds(1));  // between attempts
  }
  return {};
}

// Step 2: asks the leader to remove node `o.node`'s lost replica and add a new one, again
// while it answers that a change is under way (a new leader's configuration counts once its
// first entry commits) or leadership moves. {"", ""} with out.replica set, else {status, why}.
std::pair<std::string, std::string> replace_at_leader(const cluster_config& cfg, const replace_options& o,
                                                      replace_result& out) {
  const auto n = o.node;
  auto quick = o.client;
  quick.call_timeout_ms = std::min<int64_t>(o.timeout_ms, 3'000);
  auto until = std::chrono::steady_clock::now() +
               std::chrono::milliseconds(
                 std::max<int64_t>(o.timeout_ms, replace_transient_election_timeouts * cfg.election_timeout_ms));
  for (bool first = true;; first = false) {
    uint32_t leader = find_raft_leader(cfg, quick);
    if (leader == 0) return {"unavailable", "no member leads the SKU group (is a majority up?)"};
    if (first && o.progress)
      o.progress("node " + std::to_string(n) + " is gone; node " + std::to_string(leader) +
                 ", the leader, removes its replica from the SKU group and adds a new one");
    std::pair<uint64_t, std::string> answer;
    try {
      auto slow = o.client;
      slow.call_timeout_ms = std::max<int64_t>(o.timeout_ms, 4 * cfg.election_timeout_ms);
      blocking_client c(cfg.member(leader)->client, slow);
      answer = c.replace_replica(n);
    } catch (const std::exception& e) {
      return {"unavailable", "node " + std::to_string(leader) + ", the leader: " + e.what() +
                               " (run this again: it goes on from what the group has)"};
    }
    if (answer.second.empty()) {
      out.replica = answer.first;
      return {};
    }
    bool transient = answer.second.find("under way") != std::string::npos ||
                     answer.second.find("does not lead") != std::string::npos;
    if (!transient || std::chrono::steady_clock::now() > until)
      return {answer.second.rfind("forbidden", 0) == 0 ? "forbidden"
              : transient                               ? "unavailable"
                                                        : "refused",
              "node " + std::to_string(leader) + " did not replace the replica: " + answer.second +
                (transient ? " (run this again: it goes on from what the group has)" : "")};
    if (o.progress) o.progress("node " + std::to_string(leader) + ": " + answer.second);
    std::this_thread::sleep_for(std::chrono::milliseconds(replace_ask_interval_ms));
  }
}

replace_result replace_member(const cluster_config& cfg, const replace_options& o) {
  replace_result out;
  auto refuse = [&out](std::string status, std::string why) {
    out.status = status;
    out.message = std::move(why);
    return out;
  };
  auto say = [&o](const std::string& line) {
    if (o.progress) o.progress(line);
  };
  const auto n = o.node;
  if (cfg.replicas <= 1) return refuse("invalid", "the cluster is not replicated ([cluster] replicas = 1)");
  if (!cfg.member(n)) return refuse("invalid", "node " + std::to_string(n) + " is not a member");
  const std::string prepared = o.data_dir + "/" + group_replacement_file;
  // One replacement of a directory at a time: a second would announce another generation
  // and write another identity under the node the first one started.
  std::string error;
  int lock_fd = lock_replacement(o.data_dir + ".replace.lock", n, error);
  if (lock_fd < 0) return refuse(error.rfind("another", 0) == 0 ? "refused" : "failed", error);
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } unlock{lock_fd};
  auto quick = o.client;
  quick.call_timeout_ms = std::min<int64_t>(o.timeout_ms, 3'000);
  if (!file_absent(prepared)) {
    // Made by an earlier run, which stopped before the replica was a voter.
    std::string text;
    if (auto why = read_small_file(prepared, 64, text); !why.empty()) return refuse("failed", prepared + ": " + why);
    out.replica = std::strtoull(text.c_str(), nullptr, 10);
    if ((out.replica & 0xffff) != n || out.replica <= 0xffff)
      return refuse("failed", prepared + " names replica " + text + ", not a replacement of node " + std::to_string(n));
    say("going on with the replacement prepared in " + o.data_dir + " (replica " + std::to_string(out.replica) + ")");
  } else {
    if (o.running)
      return refuse("refused", "node " + std::to_string(n) + " runs: a running node's replica is not lost");
    std::error_code ec;
    if (std::filesystem::exists(o.data_dir, ec) && !std::filesystem::is_empty(o.data_dir, ec))
      return refuse("refused", o.data_dir + " holds node " + std::to_string(n) +
                                 "'s data: if its replica is lost (its disk failed, its raft log is damaged), move "
                                 "that directory away first (keep it until the replacement serves); the new "
                                 "replica gets a new directory there");
    auto said = ask_members(cfg, n, quick);
    if (!said.alive.empty()) return refuse("refused", "refusing to replace: " + said.alive + "; stop it first");
    if (said.answered < (cfg.members.size() - 1) / 2 + 1 && !o.force)
      return refuse("refused", "refusing to replace: " + std::to_string(said.answered) +
                                 " other members answered, fewer than a majority: the group cannot change its "
                                 "members without one (bring them up)");
    auto asked = replace_at_leader(cfg, o, out);
    if (!asked.first.empty()) return refuse(asked.first, asked.second);
    // The new directory succeeds the lost one: the members record its generation before it
    // ever starts. Its replica id is written last: with it, the directory is ready.
    directory_identity id;
    id.kind = directory_identity::role::member;
    id.cluster_name = cfg.name;
    id.cluster_id = cfg.id;
    id.member = n;
    for (auto& m : cfg.members) id.members.push_back(m.id);
    id.generation = std::max<uint64_t>(said.generation_seen, 1) + 1;
    id.extend_lineage();
    if (auto why = announce_successor(cfg, id, o.force, quick.call_timeout_ms,
                                      "node " + std::to_string(n) + " was not started");
        !why.empty())
      return refuse("refused", "the group has replica " + std::to_string(out.replica) + " for node " +
                                 std::to_string(n) + ", but its directory was " + why +
                                 " (run this again: it goes on from there)");
    // Made aside and renamed into place: a stop midway leaves nothing at data_dir.
    const std::string aside = o.data_dir + ".replacing";
    std::filesystem::remove_all(aside, ec);
    std::filesystem::create_directories(aside, ec);
    if (ec) return refuse("failed", aside + ": " + ec.message());
    if (!write_identity(aside, id, error) ||
        !write_file_atomically(aside + "/" + group_replacement_file, std::to_string(out.replica) + "\n", error))
      return refuse("failed", error);
    std::filesystem::remove(o.data_dir, ec);  // empty, if there at all
    std::filesystem::rename(aside, o.data_dir, ec);
    if (ec) return refuse("failed", "renaming " + aside + " to " + o.data_dir + ": " + ec.message());
    say("made " + o.data_dir + " for replica " + std::to_string(out.replica) + " (generation " +
        std::to_string(id.generation) + " of node " + std::to_string(n) + "'s directory)");
  }
  if (!o.running) {
    try {
      say("starting node " + std::to_string(n));
      o.start();
    } catch (const std::exception& e) {
      return refuse("failed", e.what());
    }
  }
  if (auto why = promote_until_voter(cfg, o, prepared, out); !why.first.empty()) return refuse(why.first, why.second);
  std::error_code ec;
  std::filesystem::remove(prepared, ec);  // its replica has a directory of its own now
  return out;
}

}  // namespace holdfast
