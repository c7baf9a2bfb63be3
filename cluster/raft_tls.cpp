#include "cluster/raft_tls.hpp"
#include "cluster/replica_ids.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <map>
#include <set>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <kj/async-io.h>
#include <kj/compat/tls.h>

#include <spdlog/spdlog.h>

#include "cluster/certs.hpp"
#include "cluster/raft_frames.hpp"
#include "protocol/log.hpp"

namespace holdfast {

namespace {
constexpr size_t max_address = 255;

// The dialer's hello: its id (8 bytes, little endian), its address length (1 byte), address.
kj::Array<kj::byte> encode_hello(uint64_t id, const std::string& address) {
  auto out = kj::heapArray<kj::byte>(9 + address.size());
  for (int i = 0; i < 8; ++i) out[i] = static_cast<kj::byte>(id >> (8 * i));
  out[8] = static_cast<kj::byte>(address.size());
  memcpy(out.begin() + 9, address.data(), address.size());
  return out;
}
// Raft's links are one-way (libraft only writes to the connections it dialed and only
// reads those it accepted): a peer that vanished or stopped reading would hold its
// connection, and the queue behind it, forever. The kernel ends it instead.
void keep_alive(kj::AsyncIoStream& s) {
  int on = 1, idle = 5, interval = 2, count = 3;
  unsigned user_timeout_ms = 10'000;
  try {
    s.setsockopt(SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    s.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    s.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    s.setsockopt(IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
    s.setsockopt(IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
  } catch (const kj::Exception&) {
    // not a TCP socket (tests over other streams): nothing to set
  }
}
}  // namespace

struct raft_tls_connector::impl {
  raft_tls_options options;
  std::thread thread;
  std::mutex mutex;
  std::condition_variable cv;
  bool ready = false;
  std::string error;
  uint16_t port = 0;
  const kj::Executor* executor = nullptr;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_thread;

  // The KJ thread's, touched there only.
  kj::AsyncIoProvider* provider = nullptr;
  kj::LowLevelAsyncIoProvider* low_level = nullptr;
  kj::TlsContext* tls = nullptr;
  kj::TaskSet* tasks = nullptr;
  replication::raft_host* host = nullptr;
  bool stopped = false;
  std::atomic<uint64_t> accepted{0}, refused_handshake{0}, refused_name{0}, refused_gate{0}, refused_busy{0},
    refused_timeout{0}, accept_errors{0}, refused_frames{0}, stalled_links{0}, dials{0}, dial_failures{0};
  // Connections between accept and hello, oldest first, each with what cancels it.
  std::deque<std::pair<uint64_t, kj::Own<kj::PromiseFulfiller<void>>>> handshakes;
  uint64_t next_handshake = 0;
  std::map<uint64_t, std::deque<kj::Own<kj::PromiseFulfiller<void>>>> peer_links;  // accepted, oldest first
  std::map<uint64_t, std::deque<kj::Own<kj::PromiseFulfiller<void>>>> dialed_links;  // by target
  std::set<uint64_t> partitioned;  // test-only fault hook: peers cut off
  std::atomic<uint64_t> closed_excess{0};

  struct error_handler : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}  // a connection that failed is Raft's to redial
  } errors;

  template <class T>
  kj::Promise<T> in_time(kj::Promise<T> p) {
    return p.exclusiveJoin(provider->getTimer().afterDelay(options.connect_timeout_ms * kj::MILLISECONDS)
                             .then([]() -> kj::Promise<T> {
                               return KJ_EXCEPTION(DISCONNECTED, "raft connection not set up in time");
                             }));
  }

  // Joins a TLS stream to a new socketpair; returns libraft's end, or -1. libraft only
  // writes to the connections it dialed and only reads those it accepted: a dialed link
  // carries bytes out only (what the far side sends is never read), an accepted one in only,
  // through `relay`, which passes whole, checked messages.
  // `from_peer`: the id an accepted link came from (0 for a dialed one). A peer keeps at
  // most max_links_per_peer accepted links: a newer one closes its oldest (libraft redials
  // over a new connection, so an old one is dead or a loop's leftover).
  int splice(kj::Own<kj::AsyncIoStream> remote, bool accepted, uint64_t peer) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return -1;
    auto local = low_level->wrapSocketFd(fds[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    auto& l = *local;
    auto& r = *remote;
    // A dialed link still reads what the far side sends, to drop it: its end (the peer
    // closed or died) must end the link at once, not at libraft's next write.
    kj::Promise<void> flow = accepted ? relay(r, l) : forward(l, r).exclusiveJoin(drain(r));
    {
      auto closer = kj::newPromiseAndFulfiller<void>();
      auto* table = accepted ? &peer_links : &dialed_links;
      auto& links = (*table)[peer];
      links.push_back(kj::mv(closer.fulfiller));
      auto* mine = links.back().get();
      while (accepted && links.size() > options.max_links_per_peer) {
        links.front()->fulfill();
        links.pop_front();
        ++closed_excess;
      }
      flow = flow.exclusiveJoin(kj::mv(closer.promise)).attach(kj::defer([table, peer, mine] {
        auto& links = (*table)[peer];
        for (auto it = links.begin(); it != links.end(); ++it)
          if (it->get() == mine) {
            links.erase(it);
            break;
          }
      }));
    }
    // The flow ending (either side closed, or a message refused) ends the connection:
    // libraft sees its socket close and redials.
    tasks->add(flow.attach(kj::mv(local), kj::mv(remote)));
    return fds[1];
  }

  // Passes Raft messages from a peer to libraft, one at a time, each checked first
  // (cluster/raft_frames.hpp); one that fails closes the connection.
  struct frame {
    kj::byte preamble[raft_preamble_bytes];
    kj::Array<kj::byte> header;
  };

  kj::Promise<void> relay(kj::AsyncIoStream& from, kj::AsyncIoStream& to) {
    auto f = kj::heap<frame>();
    auto& preamble = f->preamble;
    return from.read(preamble, sizeof preamble).then([this, &from, &to, f = kj::mv(f)]() mutable {
      std::string why;
      auto header_bytes = raft_header_bytes(f->preamble, why);
      if (!header_bytes) return refuse(why);
      f->header = kj::heapArray<kj::byte>(*header_bytes);
      auto& header = f->header;
      return from.read(header.begin(), header.size()).then([this, &from, &to, f = kj::mv(f)]() mutable {
        std::string why;
        auto declared = raft_payload_bytes(f->preamble, f->header.begin(), f->header.size(),
                                           {options.max_entries_bytes, options.max_snapshot_bytes}, why);
        if (!declared) return refuse(why);
        uint64_t payload = *declared;
        auto& frame = *f;
        auto pieces = kj::heapArray<kj::ArrayPtr<const kj::byte>>(
          {kj::arrayPtr(frame.preamble, sizeof frame.preamble), frame.header.asPtr()});
        auto& parts = pieces;
        return to.write(parts).attach(kj::mv(pieces), kj::mv(f))
          .then([this, &from, &to, payload]() -> kj::Promise<void> {
            if (payload == 0) return relay(from, to);
            return from.pumpTo(to, payload).then([this, &from, &to, payload](uint64_t moved) -> kj::Promise<void> {
              if (moved != payload) return KJ_EXCEPTION(DISCONNECTED, "raft peer closed mid-message");
              return relay(from, to);
            });
          });
      });
    });
  }

  // libraft's messages out, each write bounded in time: a peer that is alive to TCP but
  // never reads (a stopped process) would otherwise back everything up into libuv's write
  // queue, which has no bound. A stalled link closes; libraft drops what it queued for it
  // and redials.
  kj::Promise<void> forward(kj::AsyncIoStream& from, kj::AsyncIoStream& to) {
    auto buffer = kj::heap<kj::Array<kj::byte>>(kj::heapArray<kj::byte>(64 * 1024));
    auto& b = *buffer;  // lives on the heap, with the promise
    return forward_with(from, to, b).attach(kj::mv(buffer));
  }
  kj::Promise<void> forward_with(kj::AsyncIoStream& from, kj::AsyncIoStream& to, kj::Array<kj::byte>& buffer) {
    return from.tryRead(buffer.begin(), 1, buffer.size()).then([this, &from, &to, &buffer](size_t n) -> kj::Promise<void> {
      if (n == 0) return kj::READY_NOW;
      auto written = to.write(buffer.begin(), n).exclusiveJoin(
        provider->getTimer().afterDelay(options.write_stall_ms * kj::MILLISECONDS).then([this]() -> kj::Promise<void> {
          ++stalled_links;
          return KJ_EXCEPTION(DISCONNECTED, "raft peer took nothing for write_stall_ms");
        }));
      return written.then([this, &from, &to, &buffer] { return forward_with(from, to, buffer); });
    });
  }

  static kj::Promise<void> drain(kj::AsyncIoStream& from) {
    auto buffer = kj::heapArray<kj::byte>(4096);
    auto& b = buffer;
    return from.tryRead(b.begin(), 1, b.size()).then([&from, buffer = kj::mv(buffer)](size_t n) -> kj::Promise<void> {
      if (n == 0) return kj::READY_NOW;
      return drain(from);
    });
  }

  kj::Promise<void> refuse(const std::string& why) {
    ++refused_frames;
    uint64_t suppressed = 0;
    static rate_limit limit;
    if (limit.allow(suppressed))
      spdlog::warn("raft port: a peer sent {}; connection closed ({} more)", why, suppressed);
    return KJ_EXCEPTION(FAILED, "raft message refused", why);
  }

  // Closes the links (accepted and dialed) with the replicas of members `which` names.
  void cut(const std::function<bool(uint32_t member)>& which) {
    for (auto* table : {&peer_links, &dialed_links})
      for (auto& [id, links] : *table) {
        if (!which(member_of_replica(id))) continue;
        auto closing = std::move(links);
        links.clear();
        for (auto& l : closing) l->fulfill();
      }
  }

  kj::Promise<void> dial(uint64_t id, std::string address, std::function<void(int)> done) {
    auto answer = std::make_shared<std::function<void(int)>>(std::move(done));
    auto reply = [this, answer](int fd) {
      if (stopped) {
        if (fd >= 0) ::close(fd);
        return;
      }
      (*answer)(fd);
    };
    if (options.gate && !options.gate->allows(member_of_replica(id))) {
      ++refused_gate;
      reply(-1);
      return kj::READY_NOW;
    }
    auto hello = std::make_shared<kj::Array<kj::byte>>(encode_hello(options.self, options.listen));
    auto setup = provider->getNetwork()
                   .parseAddress(address)
                   .then([](kj::Own<kj::NetworkAddress> a) { return a->connect(); })
                   .then([](kj::Own<kj::AsyncIoStream> raw) {
                     keep_alive(*raw);
                     return raw;
                   })
                   .then([this, id](kj::Own<kj::AsyncIoStream> raw) {
                     // The target's certificate must name its member: node-<member>.
                     auto name = kj::str(node_tls_name(member_of_replica(id)));
                     auto wrapped = tls->wrapClient(kj::mv(raw), name);
                     return wrapped.attach(kj::mv(name));
                   })
                   .then([hello](kj::Own<kj::AsyncIoStream> s) {
                     auto& stream = *s;
                     return stream.write(hello->begin(), hello->size()).then([s = kj::mv(s)]() mutable {
                       return kj::mv(s);
                     });
                   });
    ++dials;
    return in_time(kj::mv(setup))
      .then([this, reply, id](kj::Own<kj::AsyncIoStream> s) {
              if (partitioned.count(member_of_replica(id))) return reply(-1);
              if (options.gate && !options.gate->allows(member_of_replica(id))) {  // withdrawn meanwhile
                ++refused_gate;
                return reply(-1);
              }
              reply(splice(kj::mv(s), false, id));
            },
            [this, reply](kj::Exception&&) {
              ++dial_failures;
              reply(-1);
            });
  }

  kj::Promise<void> serve(kj::AuthenticatedStream raw) {
    keep_alive(*raw.stream);
    auto handshake = tls->wrapServer(kj::mv(raw)).catch_([this](kj::Exception&& e) -> kj::AuthenticatedStream {
      ++refused_handshake;
      kj::throwFatalException(kj::mv(e));
    });
    auto setup = handshake.then([this](kj::AuthenticatedStream s) {
      auto name = certificate_name(*s.peerIdentity);
      auto head = kj::heapArray<kj::byte>(9);
      auto& stream = *s.stream;
      auto read = stream.read(head.begin(), head.size());
      return read.then([this, s = kj::mv(s), head = kj::mv(head), name]() mutable {
        uint64_t id = 0;
        for (int i = 0; i < 8; ++i) id |= uint64_t(head[i]) << (8 * i);
        if (member_of_replica(id) == 0 || name != node_tls_name(member_of_replica(id))) {
          ++refused_name;
          return kj::Promise<void>(KJ_EXCEPTION(FAILED, "raft hello names another node than its certificate"));
        }
        auto address = std::make_shared<std::string>(head[8], '\0');
        auto& stream = *s.stream;
        return stream.read(&(*address)[0], address->size()).then([this, s = kj::mv(s), id, address]() mutable {
          if (stopped || host == nullptr || partitioned.count(member_of_replica(id))) return;
          if (options.gate && !options.gate->allows(member_of_replica(id))) {
            ++refused_gate;
            return;
          }
          int fd = splice(kj::mv(s.stream), true, id);
          if (fd < 0) return;
          ++accepted;
          host->accept(id, *address, fd);
        });
      });
    });
    return in_time(kj::mv(setup)).catch_([this](kj::Exception&& e) {
      if (e.getType() == kj::Exception::Type::DISCONNECTED &&
          e.getDescription() == "raft connection not set up in time")
        ++refused_timeout;
      kj::throwFatalException(kj::mv(e));
    });
  }

  // Accepts for as long as the connector runs: a failed accept (out of descriptors) waits a
  // little and goes on, and at most `max_handshakes` connections may be between accept and
  // hello at once (past that the oldest of them is closed), so a flood of strangers can
  // neither close the port, nor take every descriptor, nor keep a member's connection out.
  kj::Promise<void> accept_loop(kj::ConnectionReceiver& listener) {
    return listener.acceptAuthenticated().then(
      [this, &listener](kj::AuthenticatedStream raw) {
        // Full: the oldest handshake goes, not the newest. A flood of idle connections then
        // cannot keep a member out: its connection finishes its handshake in milliseconds,
        // long before max_handshakes newer ones could push it out.
        if (handshakes.size() >= options.max_handshakes) {
          ++refused_busy;
          handshakes.front().second->fulfill();
          handshakes.pop_front();
        }
        auto id = ++next_handshake;
        auto cancel = kj::newPromiseAndFulfiller<void>();
        handshakes.emplace_back(id, kj::mv(cancel.fulfiller));
        tasks->add(serve(kj::mv(raw)).exclusiveJoin(kj::mv(cancel.promise)).attach(kj::defer([this, id] {
          for (auto it = handshakes.begin(); it != handshakes.end(); ++it)
            if (it->first == id) {
              handshakes.erase(it);
              break;
            }
        })));
        return accept_loop(listener);
      },
      [this, &listener](kj::Exception&&) {
        ++accept_errors;
        return provider->getTimer().afterDelay(100 * kj::MILLISECONDS).then([this, &listener] {
          return accept_loop(listener);
        });
      });
  }

  void run() {
    try {
      auto io = kj::setupAsyncIo();
      provider = io.provider.get();
      low_level = io.lowLevelProvider.get();
      kj::TlsCertificate ca(kj::StringPtr(options.ca_pem.c_str()));
      kj::TlsKeypair keypair{kj::TlsPrivateKey(kj::StringPtr(options.key_pem.c_str())),
                             kj::TlsCertificate(kj::StringPtr(options.cert_pem.c_str()))};
      kj::TlsContext::Options tls_options;
      tls_options.useSystemTrustStore = false;
      tls_options.verifyClients = true;
      tls_options.trustedCertificates = kj::arrayPtr(&ca, 1);
      tls_options.defaultKeypair = keypair;
      kj::TlsContext context(kj::mv(tls_options));
      tls = &context;
      kj::TaskSet task_set(errors);
      tasks = &task_set;
      auto listener = io.provider->getNetwork().parseAddress(options.listen).wait(io.waitScope)->listen();
      auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
      {
        std::lock_guard<std::mutex> lock(mutex);
        port = static_cast<uint16_t>(listener->getPort());
        // The hello names this replica as the others dial it (libraft answers there): the
        // port bound, when the option asked for any.
        auto colon = options.listen.rfind(':');
        options.listen = options.listen.substr(0, colon) + ":" + std::to_string(port);
        if (options.listen.size() > max_address) throw std::runtime_error("raft address longer than 255 bytes");
        executor = &kj::getCurrentThreadExecutor();
        stop_thread = kj::mv(stop.fulfiller);
        ready = true;
      }
      cv.notify_all();
      auto accepting = accept_loop(*listener).eagerlyEvaluate([](kj::Exception&&) {});
      stop.promise.wait(io.waitScope);
      tasks = nullptr;
    } catch (const kj::Exception& e) {
      std::lock_guard<std::mutex> lock(mutex);
      error = e.getDescription().cStr();
      ready = true;
      cv.notify_all();
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mutex);
      error = e.what();
      ready = true;
      cv.notify_all();
    }
  }
};

raft_tls_connector::raft_tls_connector(raft_tls_options options) : impl_(std::make_unique<impl>()) {
  auto& s = *impl_;
  s.options = std::move(options);
  if (s.options.listen.size() > max_address) throw std::runtime_error("raft address too long");
  s.thread = std::thread([&s] { s.run(); });
  std::unique_lock<std::mutex> lock(s.mutex);
  s.cv.wait(lock, [&] { return s.ready; });
  if (!s.error.empty()) {
    lock.unlock();
    s.thread.join();
    throw std::runtime_error("raft port " + s.options.listen + ": " + s.error);
  }
  lock.unlock();
  // A member withdrawn from the gate has its connections closed.
  if (s.options.gate)
    s.options.gate->on_withdraw([&s](uint32_t member) {
      s.executor->executeSync([&s, member] { s.cut([member](uint32_t m) { return m == member; }); });
    });
}

raft_tls_connector::~raft_tls_connector() {
  auto& s = *impl_;
  if (s.options.gate) s.options.gate->on_withdraw(nullptr);
  stop();
  s.stop_thread->fulfill();
  s.thread.join();
}

uint16_t raft_tls_connector::port() const { return impl_->port; }

raft_tls_stats raft_tls_connector::stats() const {
  auto& s = *impl_;
  return {s.accepted, s.refused_handshake, s.refused_name, s.refused_gate, s.refused_busy, s.refused_timeout,
          s.accept_errors, s.refused_frames, s.stalled_links, s.closed_excess, s.dials, s.dial_failures};
}

void raft_tls_connector::start(replication::raft_host& host) {
  auto& s = *impl_;
  s.executor->executeSync([&] {
    s.host = &host;
    s.stopped = false;
  });
}

void raft_tls_connector::dial(uint64_t id, const std::string& address, std::function<void(int)> done) {
  auto& s = *impl_;
  s.executor->executeSync([&] {
    if (s.stopped || s.tasks == nullptr) {
      done(-1);
      return;
    }
    s.tasks->add(s.dial(id, address, std::move(done)));
  });
}

void raft_tls_connector::partition(const std::set<uint64_t>& peers) {
  auto& s = *impl_;
  s.executor->executeSync([&] {
    s.partitioned = peers;
    s.cut([&peers](uint32_t m) { return peers.count(m) > 0; });
  });
}

void raft_tls_connector::stop() {
  auto& s = *impl_;
  s.executor->executeSync([&] {
    s.stopped = true;
    s.host = nullptr;
  });
}

}  // namespace holdfast
