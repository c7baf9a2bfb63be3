#include "replication/raft_host.hpp"

#include <unistd.h>

#include <fcntl.h>
#include <sys/file.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <set>
#include <thread>

#include <uv.h>

#include "protocol/files.hpp"
#include "replication/raft_uv_c.h"

namespace holdfast::replication {

struct raft_host::impl {
  raft_host_options options;
  state_machine& machine;
  replica rep;
  raft_connector& connector;
  hf_transport_callbacks transport_callbacks{};
  raft_uv_transport* transport = nullptr;
  hf_node* node = nullptr;
  std::set<void*> dialing;  // connect tokens libraft waits on (loop thread)
  std::atomic<uint64_t> refused_strangers{0};  // connections from servers not in the group
  int lock_fd = -1;  // flock on the directory's lock file, for the host's life

  uv_loop_t loop{};
  uv_async_t wake{};
  uv_timer_t publish{};  // copies the replica's status for published_status()
  std::mutex status_mutex;
  replica_status published;
  std::mutex mutex;
  std::deque<std::function<void()>> tasks;  // to run on the loop
  bool stopping = false;
  std::thread thread;

  impl(raft_host_options o, state_machine& m, raft_connector& c)
    : options(std::move(o)), machine(m), rep(m), connector(c) {}

  // Queues `f` for the loop thread; false (and `f` dropped) once the host is closing.
  bool post(std::function<void()> f, bool closing = false) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (stopping) return false;
      stopping = closing;
      tasks.push_back(std::move(f));
    }
    uv_async_send(&wake);
    return true;
  }

  void drain() {
    std::deque<std::function<void()>> now;
    {
      std::lock_guard<std::mutex> lock(mutex);
      now.swap(tasks);
    }
    for (auto& f : now) f();
  }
};

namespace {
// One replica per directory (libraft takes no lock: two would both accept entries and one's
// would vanish), and always the same one (libraft records term and vote, not whose they
// are: swapped directories would go unnoticed). Returns the locked file's descriptor; throws
// with why.
int claim_directory(const std::string& dir, uint64_t id) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("raft directory " + dir + ": " + ec.message());
  auto lock_path = dir + "/holdfast.lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("raft directory " + dir + " is in use by another replica");
  }
  auto fail = [&](const std::string& why) {
    ::close(fd);
    throw std::runtime_error("raft directory " + dir + ": " + why);
  };
  auto id_path = dir + "/holdfast-replica-id";
  std::string text, error;
  if (file_absent(id_path)) {
    if (!write_file_atomically(id_path, std::to_string(id) + "\n", error)) fail("recording the replica's id: " + error);
  } else if (auto why = read_small_file(id_path, 64, text); !why.empty()) {
    fail("reading the replica's id: " + why);
  } else if (std::strtoull(text.c_str(), nullptr, 10) != id) {
    fail("it belongs to replica " + std::to_string(std::strtoull(text.c_str(), nullptr, 10)) + ", not " +
         std::to_string(id));
  }
  return fd;
}
}  // namespace

raft_host::raft_host(raft_host_options options, state_machine& machine, raft_connector& connector)
  : impl_(std::make_unique<impl>(std::move(options), machine, connector)) {
  auto& s = *impl_;
  s.lock_fd = claim_directory(s.options.dir, s.options.id);
  auto unlock = [&s] { ::close(s.lock_fd); };
  if (uv_loop_init(&s.loop) != 0) {
    unlock();
    throw std::runtime_error("uv_loop_init failed");
  }
  s.wake.data = &s;
  uv_async_init(&s.loop, &s.wake, [](uv_async_t* a) { static_cast<impl*>(a->data)->drain(); });
  s.publish.data = &s;
  uv_timer_init(&s.loop, &s.publish);

  s.transport_callbacks.data = &s;
  // Accepted connections come through raft_host::accept.
  s.transport_callbacks.listen = [](void*) -> int { return 0; };
  s.transport_callbacks.connect = [](void* data, void* token, unsigned long long id, const char* address) {
    auto* s = static_cast<impl*>(data);
    s->dialing.insert(token);
    s->connector.dial(id, address, [s, token](int fd) {
      auto posted = s->post([s, token, fd] {
        if (s->dialing.erase(token) == 0) {  // canceled by the close meanwhile
          if (fd >= 0) ::close(fd);
          return;
        }
        uv_stream_s* stream = fd >= 0 ? hf_stream_open(&s->loop, fd) : nullptr;
        if (stream == nullptr && fd >= 0) ::close(fd);
        hf_transport_connected(token, stream);
      });
      if (!posted && fd >= 0) ::close(fd);  // closing: nobody waits for it
    });
  };
  // libraft's close waits for every connect it started to be answered.
  s.transport_callbacks.close = [](void* data) {
    auto* s = static_cast<impl*>(data);
    auto pending = std::move(s->dialing);
    s->dialing.clear();
    for (void* token : pending) hf_transport_canceled(token);
  };
  // Undoes what was set up so far, on this thread (the loop has not run yet), and throws.
  auto fail = [&s](const std::string& why) {
    if (s.node != nullptr) hf_node_close(s.node, nullptr, nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&s.wake), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&s.publish), nullptr);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
    if (s.transport != nullptr) hf_transport_destroy(s.transport);
    ::close(s.lock_fd);
    throw std::runtime_error(why);
  };
  s.transport = hf_transport_create(&s.transport_callbacks);
  if (s.transport == nullptr) fail("out of memory");
  char error[256] = "";
  s.node = hf_node_create(&s.loop, s.options.dir.c_str(), s.transport, s.options.id,
                          s.options.address.c_str(), s.rep.fsm(), error);
  if (s.node == nullptr) fail(error);
  hf_node_set_ship(s.node, [](void* data, unsigned long long index, const char* bytes, size_t len, void* sink) {
    auto* m = static_cast<state_machine*>(data);
    try {
      std::string out;
      if (!m->ship(index, std::string_view(bytes, len), out)) return 1;
      return hf_put(sink, out.data(), out.size()) == 0 ? 0 : -1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "holdfast: replica: the snapshot goes as stored: %s\n", e.what());
      return -1;
    }
  }, &s.machine);
  s.rep.attach(hf_node_raft(s.node));
  std::vector<unsigned long long> ids;
  std::vector<const char*> addresses;
  for (auto& v : s.options.voters) {
    ids.push_back(v.id);
    addresses.push_back(v.address.c_str());
  }
  if ((!s.options.joining &&
       hf_node_bootstrap(s.node, ids.data(), addresses.data(), static_cast<unsigned>(ids.size()), error) < 0) ||
      hf_node_start(s.node, s.options.election_timeout_ms, s.options.heartbeat_ms, s.options.pre_vote,
                    s.options.snapshot_threshold, s.options.snapshot_trailing, error) != 0)
    fail(error);
  auto servers = s.rep.status().servers;
  // A directory keeps the configuration it was bootstrapped with (later ones come through
  // Raft): a replica that is not in it would never vote or lead. Say so instead.
  if (!(s.options.joining && servers.empty()) && hf_server_address(hf_node_raft(s.node), s.options.id) == nullptr)
    fail("raft directory " + s.options.dir + ": its configuration does not include replica " +
         std::to_string(s.options.id));
  // The connector dials the addresses the group's configuration holds: one changed in the
  // cluster file alone would cut that member off without a word. Changing an address is a
  // configuration change of the group, not an edit.
  if (s.options.check_configuration) {
    if (auto why = s.options.check_configuration(servers); !why.empty()) fail("raft directory " + s.options.dir + ": " + why);
  } else {
    for (auto& v : s.options.voters) {
      const char* configured = hf_server_address(hf_node_raft(s.node), v.id);
      if (configured == nullptr || v.address != configured)
        fail("raft directory " + s.options.dir + ": the group's configuration has replica " + std::to_string(v.id) +
             (configured ? " at " + std::string(configured) : std::string(" not at all")) + ", the given one " +
             v.address + " (a replica's address or the group's members change only through the group, not by "
             "editing the cluster file)");
    }
  }
  // Entries the state machine has applied (its snapshot covers them) must still be in the
  // log it restarts from: a log cut short (a damaged open segment libraft read as torn, a
  // copy restored from an older backup) forgot entries this replica acknowledged, and a
  // replica that forgot them must not vote or be counted again.
  if (s.options.applied_at_start > 0) {
    hf_raft_info info;
    hf_info(hf_node_raft(s.node), &info);
    if (info.last_index < s.options.applied_at_start)
      fail("raft directory " + s.options.dir + ": its log ends at entry " + std::to_string(info.last_index) +
           " but this replica's data already has entries up to " + std::to_string(s.options.applied_at_start) +
           ": the log lost entries it had accepted (damaged or restored from an older copy), so this replica "
           "must not rejoin as it was");
  }
  s.connector.start(*this);
  // Every 100 ms (and once at once): readers that must not wait for this thread (the node's
  // network thread answering Inventory.status) read the copy; this thread may be busy for
  // a second installing a state a leader sent.
  uv_timer_start(&s.publish, [](uv_timer_t* t) {
    auto& s = *static_cast<impl*>(t->data);
    auto now = s.rep.status();
    std::lock_guard<std::mutex> lock(s.status_mutex);
    s.published = std::move(now);
  }, 0, 100);
  s.thread = std::thread([&s] { uv_run(&s.loop, UV_RUN_DEFAULT); });
}

raft_host::~raft_host() { close(); }

void raft_host::close() {
  auto& s = *impl_;
  if (!s.thread.joinable()) return;
  s.connector.stop();  // a dial answered later finds its token gone and closes its socket
  s.post([&s] {
    uv_close(reinterpret_cast<uv_handle_t*>(&s.publish), nullptr);
    {
      std::lock_guard<std::mutex> lock(s.status_mutex);
      s.published = replica_status{};  // "unavailable"
    }
    hf_node_close(s.node, [](void* data) {
      auto& s = *static_cast<impl*>(data);
      uv_close(reinterpret_cast<uv_handle_t*>(&s.wake), nullptr);
    }, &s);
  }, /*closing=*/true);
  s.thread.join();
  uv_loop_close(&s.loop);
  hf_transport_destroy(s.transport);
  ::close(s.lock_fd);
}

void raft_host::submit(std::string command, replica::done_fn done, std::function<bool()> still) {
  auto& s = *impl_;
  auto answer = std::make_shared<replica::done_fn>(std::move(done));
  if (!s.post([&s, command = std::move(command), answer, still = std::move(still)]() mutable {
        if (still && !still()) return (*answer)(outcome::not_leader);
        s.rep.submit(command, std::move(*answer));
      }))
    (*answer)(outcome::not_leader);  // closing: nothing was appended
}

void raft_host::run(const std::function<void(replica&)>& f) {
  auto& s = *impl_;
  std::mutex m;
  std::condition_variable cv;
  bool ran = false;
  if (!s.post([&] {
        f(s.rep);
        std::lock_guard<std::mutex> lock(m);
        ran = true;
        cv.notify_one();
      }))
    return;  // closing
  std::unique_lock<std::mutex> lock(m);
  cv.wait(lock, [&] { return ran; });
}

void raft_host::transfer(uint64_t to, std::function<void(std::string refused)> done) {
  auto& s = *impl_;
  auto answer = std::make_shared<std::function<void(std::string)>>(std::move(done));
  if (!s.post([&s, to, answer] { s.rep.transfer(to, std::move(*answer)); })) (*answer)("the replica is closing");
}

bool raft_host::post(std::function<void(replica&)> f) {
  auto& s = *impl_;
  return s.post([&s, f = std::move(f)] { f(s.rep); });
}

replica_status raft_host::status() {
  replica_status out;
  run([&](replica& r) { out = r.status(); });
  return out;
}

replica_status raft_host::published_status() const {
  std::lock_guard<std::mutex> lock(impl_->status_mutex);
  return impl_->published;
}

uint64_t raft_host::leader_hint() const { return impl_->rep.known_leader(); }

void raft_host::accept(uint64_t id, std::string named, int fd) {
  auto& s = *impl_;
  auto posted = s.post([&s, id, fd, named = std::move(named)] {
    // Only this group's servers, at the address its configuration gives them: libraft
    // answers at the address a connection names, and a name the peer chose (a wildcard,
    // another interface) would send its answers nowhere. A joining replica has no
    // configuration until the leader sends one: it takes the leader at its word.
    const char* address = id == s.options.id ? nullptr : hf_server_address(hf_node_raft(s.node), id);
    // A server the configuration does not name may still be one Raft must hear: a leader an
    // uncommitted change of this replica's log removed (its AppendEntries truncate that
    // change), or a joining replica's first leader.
    std::string known;
    if (address == nullptr && id != s.options.id && s.options.address_of) known = s.options.address_of(id);
    hf_server none[1];
    if (address == nullptr && known.empty() && id != s.options.id && !s.options.address_of && s.options.joining &&
        hf_servers(hf_node_raft(s.node), none, 1) == 0)
      known = named;
    if (address == nullptr && !known.empty()) address = known.c_str();
    uv_stream_s* stream = address != nullptr ? hf_stream_open(&s.loop, fd) : nullptr;
    if (stream == nullptr) {
      ++s.refused_strangers;
      ::close(fd);
      return;
    }
    hf_transport_accepted(s.transport, id, address, stream);
  });
  if (!posted) ::close(fd);  // closing
}

}  // namespace holdfast::replication
