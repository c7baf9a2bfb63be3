// Replicas in one process, each on its own libuv thread with libraft's disk layer (raft_uv,
// a real directory) and its connections over mutual TLS on loopback (raft_tls_connector):
// election, replication, a leader stopped and the group serving again, the stopped replica
// coming back from its directory and catching up. (Process-level tests come with the node.)
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <filesystem>
#include <thread>

#include <kj/common.h>

#include "cluster/certs.hpp"
#include "cluster/raft_tls.hpp"
#include "cluster/replica_ids.hpp"
#include "replication/raft_host.hpp"
#include "tests/replication/inventory_model.hpp"
#include "tests/replication/tls_links_fixture.hpp"

namespace holdfast::replication {
namespace {

using steady = std::chrono::steady_clock;

struct member {
  std::unique_ptr<inventory_machine> machine;
  std::unique_ptr<raft_host> host;
};

class raft_group : public tls_links {
protected:
  void SetUp() override {
    make_links(3);
    members_.resize(3);
    for (unsigned i = 0; i < 3; ++i) start(i);
  }
  void TearDown() override {
    for (unsigned i = 0; i < members_.size(); ++i) stop(i);
    remove_directory();
  }

  void start(unsigned i) {
    raft_host_options o;
    o.dir = (dir_ / ("replica-" + std::to_string(i + 1))).string();
    o.id = i + 1;
    o.address = voters_[i].address;
    o.voters = voters_;
    o.election_timeout_ms = 500;
    o.heartbeat_ms = 50;
    if (members_known_) {  // as the cluster answers a member its configuration does not name
      o.address_of = [voters = voters_](uint64_t id) {
        for (auto& v : voters)
          if (v.id == id) return v.address;
        return std::string();
      };
      // Members may leave the configuration (as the cluster checks it: only addresses).
      o.check_configuration = [voters = voters_](const std::vector<server_info>& servers) {
        for (auto& s : servers)
          for (auto& v : voters)
            if (v.id == s.id && v.address != s.address) return "replica " + std::to_string(s.id) + " moved";
        return std::string();
      };
    }
    members_[i].machine = std::make_unique<inventory_machine>(std::map<std::string, int>{{"tee", 100'000}});
    members_[i].host = std::make_unique<raft_host>(o, *members_[i].machine, connector(i));
  }
  bool members_known_ = false;
  void stop(unsigned i) {
    members_[i].host.reset();
    links_[i].connector.reset();
  }

  int serving() {
    for (unsigned i = 0; i < members_.size(); ++i)
      if (members_[i].host && members_[i].host->status().serving) return static_cast<int>(i);
    return -1;
  }

  // `n` reservations through replica `i`, waited for: the ids that committed.
  std::vector<std::string> reserve(unsigned i, const std::string& prefix, int n) {
    std::mutex m;
    std::vector<std::string> committed;
    int answered = 0;
    for (int k = 0; k < n; ++k) {
      std::string id = prefix + std::to_string(k);
      members_[i].host->submit("R " + id + " tee 1", [&, id](outcome o) {
        std::lock_guard<std::mutex> lock(m);
        ++answered;
        if (o == outcome::committed) committed.push_back(id);
      });
    }
    EXPECT_TRUE(wait_until([&] { std::lock_guard<std::mutex> lock(m); return answered == n; },
                           std::chrono::seconds(20)));
    std::lock_guard<std::mutex> lock(m);
    return committed;
  }

  std::string state_of(unsigned i) {
    std::string out;
    members_[i].host->run([&](replica&) { out = members_[i].machine->applied.encode(); });
    return out;
  }

  std::vector<member> members_;
};

TEST_F(raft_group, elects_replicates_fails_over_and_a_returning_replica_catches_up) {
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no leader elected";
  unsigned leader = serving();
  auto first = reserve(leader, "a", 200);
  EXPECT_EQ(first.size(), 200u);
  // Followers refuse and name the leader.
  unsigned follower = (leader + 1) % 3;
  auto s = members_[follower].host->status();
  EXPECT_FALSE(s.serving);
  EXPECT_EQ(s.leader_id, leader + 1);

  // The leader goes away: the other two elect one of themselves and serve again.
  auto stopped_at = steady::now();
  stop(leader);
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no new leader";
  auto failover = std::chrono::duration<double>(steady::now() - stopped_at).count();
  RecordProperty("failover_ms", static_cast<int>(failover * 1000));
  EXPECT_LT(failover, 2.0) << "the group served again after " << failover << " s";
  unsigned next = serving();
  EXPECT_NE(next, leader);
  auto second = reserve(next, "b", 200);
  EXPECT_EQ(second.size(), 200u);

  // The stopped replica comes back from its directory and catches up.
  start(leader);
  auto target = [&] { return members_[next].host->status().commit_index; };
  ASSERT_TRUE(wait_until([&] {
    for (unsigned i = 0; i < 3; ++i)
      if (members_[i].host->status().last_applied < target()) return false;
    return true;
  }, std::chrono::seconds(20))) << "replicas did not converge";
  auto state = state_of(next);
  for (unsigned i = 0; i < 3; ++i) {
    EXPECT_EQ(state_of(i), state) << "replica " << i + 1 << " differs";
    members_[i].host->run([&](replica&) {
      EXPECT_TRUE(members_[i].machine->violations.empty());
      for (auto& id : first) EXPECT_EQ(members_[i].machine->applied.holds.count(id), 1u) << id;
      for (auto& id : second) EXPECT_EQ(members_[i].machine->applied.holds.count(id), 1u) << id;
    });
  }
}

// Only members take part: a certificate from another CA fails the handshake both ways; a
// member's certificate whose hello claims another member's id is refused; the group keeps
// serving meanwhile.
TEST_F(raft_group, strangers_and_impostors_are_refused) {
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no leader elected";
  std::string error;
  pem_pair other_ca, stranger_cert;
  ASSERT_TRUE(make_cluster_ca("another cluster", 1, other_ca, error)) << error;
  ASSERT_TRUE(issue_node_certificate(other_ca, 2, 1, stranger_cert, error)) << error;
  auto target = voters_[0].address;
  auto dial = [&](raft_tls_connector& c) {
    std::promise<int> fd;
    c.dial(1, target, [&](int f) { fd.set_value(f); });
    return fd.get_future().get();
  };

  raft_tls_options stranger;
  stranger.listen = "127.0.0.1:0";
  stranger.self = 2;
  stranger.ca_pem = other_ca.cert;
  stranger.cert_pem = stranger_cert.cert;
  stranger.key_pem = stranger_cert.key;
  raft_tls_connector outsider(stranger);
  auto before = links_[0].connector->stats();
  EXPECT_EQ(dial(outsider), -1) << "a dial verified against another CA must fail";
  // A client that trusts anything still has no certificate of this cluster's CA.
  EXPECT_TRUE(wait_until([&] { return links_[0].connector->stats().refused_handshake > before.refused_handshake; },
                         std::chrono::seconds(5)));

  // Member 2's real certificate, claiming to be member 3.
  raft_tls_options impostor;
  impostor.listen = "127.0.0.1:0";
  impostor.self = 3;
  impostor.ca_pem = ca_.cert;
  impostor.cert_pem = links_[1].cert.cert;
  impostor.key_pem = links_[1].cert.key;
  raft_tls_connector liar(impostor);
  int fd = dial(liar);
  ASSERT_GE(fd, 0) << "the TLS side of an impostor's dial succeeds";
  EXPECT_TRUE(wait_until([&] { return links_[0].connector->stats().refused_name > before.refused_name; },
                         std::chrono::seconds(5)));
  char byte;
  EXPECT_EQ(::read(fd, &byte, 1), 0) << "the refused connection is closed";
  ::close(fd);

  // The group never noticed.
  int leader = serving();
  ASSERT_GE(leader, 0);
  EXPECT_EQ(reserve(leader, "c", 10).size(), 10u);
}

// Replicas listening on every interface (0.0.0.0) still answer each other at the
// configured addresses: libraft replies at the address of a connection's server, which
// must come from the configuration, never from the hello (it would name 0.0.0.0).
class raft_group_on_every_interface : public raft_group {
protected:
  std::string listen_host() override { return "0.0.0.0"; }
};

TEST_F(raft_group_on_every_interface, elects_and_replicates) {
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no leader elected";
  unsigned leader = serving();
  EXPECT_EQ(reserve(leader, "a", 50).size(), 50u);
  auto s = members_[(leader + 1) % 3].host->status();
  EXPECT_EQ(s.leader_address, voters_[leader].address);
}

// A member (its own certificate and id) that sends what libraft's decoder would trust and
// break on: an entry not a multiple of 8 bytes (a follower's disk append refuses it, and
// libraft 0.22 crashes), a header length out of range, a header too short for its type,
// entries beyond the header. Each closes that connection; the group keeps serving.
TEST_F(raft_group, a_member_sending_malformed_messages_is_cut_off) {
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no leader elected";
  raft_tls_options two = connector_options(1);
  two.listen = "127.0.0.1:0";
  raft_tls_connector member(two);
  auto le = [](std::string& out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  };
  auto append_entries = [&](uint64_t count, uint32_t entry_len, uint64_t header_len) {
    std::string header;
    for (int i = 0; i < 4; ++i) le(header, 1, 8);  // term, prev index, prev term, commit
    le(header, count, 8);
    le(header, 1, 8);                                // entry: term
    header.push_back(1);                             // kind: command
    header.append(3, '\0');
    le(header, entry_len, 4);
    le(header, 0, 8);                                // unused
    std::string m;
    le(m, 1 | (1u << 16), 8);                        // AppendEntries, version 1
    le(m, header_len ? header_len : header.size(), 8);
    return m + header;
  };
  std::string short_vote;
  le(short_vote, 3, 8);  // RequestVote with a 4-byte header
  le(short_vote, 4, 8);
  short_vote.append(4, '\0');
  std::string huge;
  le(huge, 1, 8);
  le(huge, uint64_t{1} << 40, 8);
  std::vector<std::pair<const char*, std::string>> cases{
    {"an entry of 5 bytes", append_entries(1, 5, 0)},
    {"a header length of 1 TiB", huge},
    {"a header shorter than its type's", short_vote},
    {"entries beyond the header", append_entries(1000, 8, 0)},
  };
  for (auto& [what, bytes] : cases) {
    auto before = links_[0].connector->stats().refused_frames;
    std::promise<int> answer;
    member.dial(1, voters_[0].address, [&](int f) { answer.set_value(f); });
    int fd = answer.get_future().get();
    ASSERT_GE(fd, 0) << what;
    ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size())) << what;
    EXPECT_TRUE(wait_until([&] { return links_[0].connector->stats().refused_frames > before; },
                           std::chrono::seconds(5))) << what << " was not refused";
    char byte;
    EXPECT_EQ(::read(fd, &byte, 1), 0) << what << ": the connection stays open";
    ::close(fd);
  }
  int leader = serving();
  ASSERT_GE(leader, 0);
  EXPECT_EQ(reserve(leader, "m", 10).size(), 10u);
  for (auto& m : members_)
    m.host->run([&](replica& r) { EXPECT_EQ(r.counters().malformed, 0u); });
}

// A peer that is alive to TCP but takes nothing (a stopped process: here openssl s_server
// with member 2's certificate, stopped with SIGSTOP after the handshake): the dialed link
// closes once a write has made no progress for write_stall_ms, instead of libuv queueing
// libraft's messages for it without bound.
TEST_F(raft_group, a_peer_that_stops_reading_is_cut_off) {
  ::signal(SIGPIPE, SIG_IGN);
  auto write_file = [&](const std::string& name, const std::string& text) {
    auto path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  };
  auto cert = write_file("peer.pem", links_[1].cert.cert);
  auto key = write_file("peer.key", links_[1].cert.key);
  int probe = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len), 0);
  int port = ntohs(a.sin_port);
  ::close(probe);
  int out[2], in[2];  // s_server ends a connection when its standard input ends: keep it open
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::string accept = "127.0.0.1:" + std::to_string(port);
  std::vector<std::string> args{"openssl", "s_server", "-accept", accept, "-cert", cert, "-key", key,
                                "-naccept", "1"};
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawnp(&pid, "openssl", &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  ::close(in[0]);
  auto reap = kj::defer([&] {
    ::kill(pid, SIGKILL);
    ::kill(pid, SIGCONT);
    ::waitpid(pid, nullptr, 0);
    ::close(out[0]);
    ::close(in[1]);
  });
  std::string said;
  ASSERT_TRUE(wait_until([&] {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 10) > 0) {
      char buf[256];
      auto n = ::read(out[0], buf, sizeof buf);
      if (n > 0) said.append(buf, n);
    }
    return said.find("ACCEPT") != std::string::npos;
  }, std::chrono::seconds(10))) << "openssl s_server did not start: " << said;

  raft_tls_options one = connector_options(0);
  one.listen = "127.0.0.1:0";
  one.write_stall_ms = 1'000;
  raft_tls_connector dialer(one);
  std::promise<int> answer;
  dialer.dial(2, accept, [&](int f) { answer.set_value(f); });
  int fd = answer.get_future().get();
  ASSERT_GE(fd, 0) << "could not reach the s_server peer";
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::vector<char> chunk(64 * 1024, 'x');
  size_t written = 0;
  int error = 0;
  bool closed = wait_until([&] {
    auto n = ::write(fd, chunk.data(), chunk.size());
    if (n > 0) written += n;
    error = n < 0 ? errno : 0;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK;
  }, std::chrono::seconds(20));
  RecordProperty("written_before_close", static_cast<int>(written));
  RecordProperty("close_errno", error);
  EXPECT_TRUE(closed) << "the link to a peer that reads nothing stayed open (" << written << " bytes queued)";
  EXPECT_GE(dialer.stats().stalled_links, 1u);
  ::close(fd);
}

// A member that opens link after link (a redial loop's leftovers) keeps at most
// max_links_per_peer of them accepted: each newer one closes its oldest.
TEST_F(raft_group, a_peer_keeps_a_bounded_number_of_accepted_links) {
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no leader elected";
  raft_tls_options two = connector_options(1);
  two.listen = "127.0.0.1:0";
  raft_tls_connector member(two);
  auto before = links_[0].connector->stats().closed_excess;
  auto accepted = links_[0].connector->stats().accepted;
  std::vector<int> fds;
  for (int i = 0; i < 8; ++i) {
    std::promise<int> answer;
    member.dial(1, voters_[0].address, [&](int f) { answer.set_value(f); });
    int fd = answer.get_future().get();
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    // Each is accepted before the next: its hello handled on member 1's side.
    ASSERT_TRUE(wait_until([&] { return links_[0].connector->stats().accepted >= accepted + 1 + i; },
                           std::chrono::seconds(5)));
  }
  // Member 2's own Raft link to member 1 counts too: at least the first four test links go.
  EXPECT_TRUE(wait_until([&] { return links_[0].connector->stats().closed_excess >= before + 4; },
                         std::chrono::seconds(5)));
  char byte;
  ::fcntl(fds.front(), F_SETFL, ::fcntl(fds.front(), F_GETFL) & ~O_NONBLOCK);
  EXPECT_EQ(::read(fds.front(), &byte, 1), 0) << "the oldest link stayed open";
  for (int fd : fds) ::close(fd);
  int leader = serving();
  ASSERT_GE(leader, 0);
  EXPECT_EQ(reserve(leader, "l", 10).size(), 10u);
}

// A flood of connections that never start TLS: past max_handshakes the oldest are closed,
// the port keeps accepting, and a member gets through while the flood lasts.
TEST_F(raft_group, a_connection_flood_leaves_the_port_open) {
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no leader elected";
  auto port = links_[0].connector->port();
  std::vector<int> flood;
  for (int i = 0; i < 200; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) flood.push_back(fd);
    else ::close(fd);
  }
  EXPECT_TRUE(wait_until([&] { return links_[0].connector->stats().refused_busy > 0; }, std::chrono::seconds(5)))
    << "no connection was refused as busy";
  // While the flood still holds every handshake slot, member 2 (its own certificate) gets
  // through at its first dial: the oldest idle handshake makes room for it.
  raft_tls_options two = connector_options(1);
  two.listen = "127.0.0.1:0";
  raft_tls_connector dialer(two);
  std::promise<int> answer;
  dialer.dial(1, voters_[0].address, [&](int f) { answer.set_value(f); });
  int fd = answer.get_future().get();
  EXPECT_GE(fd, 0) << "a member could not connect during the flood";
  if (fd >= 0) ::close(fd);
  for (int fd : flood) ::close(fd);
  int leader = serving();
  ASSERT_GE(leader, 0);
  EXPECT_EQ(reserve(leader, "f", 10).size(), 10u);
}

// The gate a node keeps of the members whose hello it accepted (cluster/raft_peer_gate.hpp):
// a member it does not allow is refused, one it allows is accepted, and withdrawing it
// closes the connection at once.
TEST_F(raft_group, a_gate_admits_only_allowed_members_and_cuts_a_withdrawn_one) {
  auto gate = std::make_shared<raft_peer_gate>();
  auto o = connector_options(0);
  o.listen = "127.0.0.1:0";
  o.gate = gate;
  raft_tls_connector guarded(o);
  auto address = "127.0.0.1:" + std::to_string(guarded.port());
  // A one-replica group behind it that answers any member (as a cluster node does).
  raft_host_options h;
  h.dir = (dir_ / "guarded").string();
  h.id = 1;
  h.address = address;
  h.voters = {{1, address}};
  h.address_of = [&](uint64_t id) { return id == 2 ? voters_[1].address : std::string(); };
  inventory_machine machine(std::map<std::string, int>{{"tee", 10}});
  raft_host host(h, machine, guarded);
  auto dial = [&] {
    std::promise<int> fd;
    links_[1].connector->dial(1, address, [&](int f) { fd.set_value(f); });
    return fd.get_future().get();
  };
  auto closed_within = [](int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    char byte;
    return ::poll(&p, 1, ms) == 1 && ::read(fd, &byte, 1) == 0;
  };
  // Not allowed: refused once its hello is read, and closed.
  int fd = dial();
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(wait_until([&] { return guarded.stats().refused_gate >= 1; }, std::chrono::seconds(5)));
  EXPECT_TRUE(closed_within(fd, 5'000));
  ::close(fd);
  // Allowed: accepted, and it stays open...
  gate->allow(2);
  auto before = guarded.stats().accepted;
  fd = dial();
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(wait_until([&] { return guarded.stats().accepted > before; }, std::chrono::seconds(5)));
  EXPECT_FALSE(closed_within(fd, 300));
  // ...until the member is withdrawn.
  gate->withdraw(2);
  EXPECT_TRUE(closed_within(fd, 5'000));
  ::close(fd);
  EXPECT_FALSE(gate->allows(2));
}

// A replica whose log holds an uncommitted change removing another must still hear that
// other one when it leads: its AppendEntries are what truncate the change. The leader
// removes X while the third replica Y is down (the change cannot commit), then stops; X and
// Y elect X (its log has no such change); the old leader comes back, still configured
// without X, and converges on X's log and configuration.
TEST_F(raft_group, a_replica_hears_a_leader_its_uncommitted_change_removed) {
  for (unsigned i = 0; i < 3; ++i) stop(i);
  members_known_ = true;
  for (unsigned i = 0; i < 3; ++i) start(i);
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no leader elected";
  unsigned l = serving(), x = (l + 1) % 3, y = (l + 2) % 3;
  ASSERT_EQ(reserve(l, "a", 20).size(), 20u);
  stop(y);
  auto removed = std::make_shared<std::promise<std::string>>();
  auto removal = removed->get_future();
  ASSERT_TRUE(members_[l].host->post([removed, x](replica& r) {
    r.change(HF_CHANGE_REMOVE, x + 1, "", [removed](std::string refused) { removed->set_value(std::move(refused)); });
  }));
  ASSERT_TRUE(wait_until([&] { return members_[l].host->status().servers.size() == 2; }, std::chrono::seconds(5)));
  stop(l);  // the change (uncommitted: y is down) stays in its log
  ASSERT_EQ(removal.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_NE(removal.get(), "") << "the removal cannot have committed";
  start(y);
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "x and y elected nobody";
  if (serving() == static_cast<int>(y)) {
    auto moved = std::make_shared<std::promise<std::string>>();
    auto move = moved->get_future();
    members_[y].host->transfer(x + 1, [moved](std::string refused) { moved->set_value(std::move(refused)); });
    ASSERT_EQ(move.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    ASSERT_EQ(move.get(), "");
  }
  ASSERT_TRUE(wait_until([&] { return serving() == static_cast<int>(x); }, std::chrono::seconds(10)));
  ASSERT_EQ(reserve(x, "b", 20).size(), 20u);
  start(l);
  EXPECT_TRUE(wait_until([&] {
    auto s = members_[l].host->status();
    return s.servers.size() == 3 && s.last_applied >= members_[x].host->status().commit_index;
  }, std::chrono::seconds(20))) << "the old leader never heard the new one: " << members_[l].host->status().servers.size()
                                 << " servers, applied " << members_[l].host->status().last_applied;
}

// A replica whose directory is lost is replaced through the group's own configuration
// changes: the leader removes it, adds a new replica (another id, the same address, the
// member's certificate) as a spare, and makes it a voter once it caught up. The new replica
// starts without a configuration (joining) and gets everything from the leader; then the
// leader stops, and the other follower and the new replica serve what was committed.
TEST_F(raft_group, a_lost_replica_is_replaced_through_configuration_changes) {
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no leader elected";
  unsigned leader = serving(), lost = (leader + 1) % 3, other = (leader + 2) % 3;
  auto first = reserve(leader, "a", 100);
  ASSERT_EQ(first.size(), 100u);
  stop(lost);
  std::filesystem::remove_all(dir_ / ("replica-" + std::to_string(lost + 1)));
  auto change = [&](int kind, uint64_t id, const std::string& address) -> std::string {
    auto answer = std::make_shared<std::promise<std::string>>();
    auto done = answer->get_future();
    if (!members_[leader].host->post([answer, kind, id, address](replica& r) {
          r.change(kind, id, address, [answer](std::string refused) { answer->set_value(std::move(refused)); });
        }))
      return "the host is closing";
    if (done.wait_for(std::chrono::seconds(30)) != std::future_status::ready) return "no answer in 30 s";
    return done.get();
  };
  // Two servers at one address are refused (libraft's configurationAdd): the lost one goes first.
  const uint64_t replacement = replica_id(lost + 1, 7);
  EXPECT_NE(change(HF_CHANGE_ADD, replacement, voters_[lost].address), "");
  ASSERT_EQ(change(HF_CHANGE_REMOVE, lost + 1, ""), "");
  ASSERT_EQ(change(HF_CHANGE_ADD, replacement, voters_[lost].address), "");
  auto second = reserve(leader, "b", 100);  // the two voters left commit on their own
  ASSERT_EQ(second.size(), 100u);

  // The new replica: another id, the member's certificate, a directory of its own.
  auto o = connector_options(lost);
  o.self = replacement;
  links_[lost].connector = std::make_unique<raft_tls_connector>(o);
  raft_host_options h;
  h.dir = (dir_ / "replacement").string();
  h.id = replacement;
  h.address = voters_[lost].address;
  h.joining = true;
  h.election_timeout_ms = 500;
  h.heartbeat_ms = 50;
  members_[lost].machine = std::make_unique<inventory_machine>(std::map<std::string, int>{{"tee", 100'000}});
  members_[lost].host = std::make_unique<raft_host>(h, *members_[lost].machine, *links_[lost].connector);
  std::string promoted = "not asked";
  ASSERT_TRUE(wait_until([&] { return (promoted = change(HF_CHANGE_PROMOTE, replacement, "")).empty(); },
                         std::chrono::seconds(30))) << promoted;
  auto voters = members_[leader].host->status().servers;
  ASSERT_EQ(voters.size(), 3u);
  for (auto& v : voters) EXPECT_STREQ(v.role, "voter") << v.id;

  // The leader stops: the other follower and the new replica are the majority.
  stop(leader);
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no new leader";
  unsigned next = serving();
  auto third = reserve(next, "c", 50);
  EXPECT_EQ(third.size(), 50u);
  ASSERT_TRUE(wait_until([&] {
    return members_[lost].host->status().last_applied >= members_[next].host->status().commit_index &&
           members_[other].host->status().last_applied >= members_[next].host->status().commit_index;
  }, std::chrono::seconds(20)));
  EXPECT_EQ(state_of(lost), state_of(other));
  members_[lost].host->run([&](replica&) {
    EXPECT_TRUE(members_[lost].machine->violations.empty());
    for (auto* ids : {&first, &second, &third})
      for (auto& id : *ids) EXPECT_EQ(members_[lost].machine->applied.holds.count(id), 1u) << id;
  });
}

// The directory is the replica's: a second host on it, or another replica's id, is refused;
// a damaged log segment stops the start instead of being set aside with its entries.
TEST_F(raft_group, a_directory_is_one_replicas_and_a_damaged_log_stops_the_start) {
  ASSERT_TRUE(wait_until([&] { return serving() >= 0; }, std::chrono::seconds(10))) << "no leader elected";
  unsigned leader = serving();
  EXPECT_EQ(reserve(leader, "a", 100).size(), 100u);
  unsigned victim = (leader + 1) % 3;
  ASSERT_TRUE(wait_until([&] { return members_[victim].host->status().last_applied >= 101; },
                         std::chrono::seconds(10)));
  raft_host_options o;
  o.dir = (dir_ / ("replica-" + std::to_string(victim + 1))).string();
  o.id = victim + 1;
  o.address = voters_[victim].address;
  o.voters = voters_;
  inventory_machine spare({{"tee", 1}});
  auto any_port = connector_options(victim);
  any_port.listen = "127.0.0.1:0";
  auto spare_connector = std::make_unique<raft_tls_connector>(any_port);
  try {
    raft_host twice(o, spare, *spare_connector);
    ADD_FAILURE() << "a second host started on a directory in use";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
  stop(victim);
  spare_connector = std::make_unique<raft_tls_connector>(connector_options(victim));  // its port
  o.id = victim == 0 ? 2 : 1;  // another replica's id on this directory
  try {
    raft_host other(o, spare, *spare_connector);
    ADD_FAILURE() << "a host started on another replica's directory";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to replica"), std::string::npos) << e.what();
  }
  // Flip bytes in the middle of a log segment's entries.
  o.id = victim + 1;
  // The largest closed segment ("<first>-<last>": entries, checksummed per batch).
  std::string segment;
  uintmax_t largest = 0;
  for (auto& f : std::filesystem::directory_iterator(o.dir)) {
    auto name = f.path().filename().string();
    auto dash = name.find('-');
    bool closed = dash != std::string::npos && dash > 0 &&
                  name.find_first_not_of("0123456789-") == std::string::npos;
    if (closed && f.file_size() > largest) {
      largest = f.file_size();
      segment = f.path().string();
    }
  }
  ASSERT_GT(largest, 256u) << "no closed log segment with entries in " << o.dir;
  {
    std::fstream f(segment, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(largest / 2));
    f.write("\xde\xad\xbe\xef", 4);
  }
  try {
    inventory_machine fresh({{"tee", 100'000}});
    raft_host damaged(o, fresh, *spare_connector);
    // An open segment's damaged tail may be taken for a torn write (libraft's rule for the
    // segment being appended to): then nothing acknowledged can be missing from it, and the
    // replica must still end up with every entry the group has.
    auto ok = wait_until([&] { return damaged.status().last_applied >= 101; }, std::chrono::seconds(10));
    EXPECT_TRUE(ok) << "a replica that started on a damaged segment " << segment << " lacks entries";
    RecordProperty("damaged_segment", "started: a torn tail of the open segment");
  } catch (const std::runtime_error& e) {
    RecordProperty("damaged_segment", std::string("refused: ") + e.what());
  }
}

}  // namespace
}  // namespace holdfast::replication
