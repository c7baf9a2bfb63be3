#include "cluster/rpc_server.hpp"

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/compat/tls.h>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <future>
#include <list>
#include <set>
#include <thread>

#include "cluster/certs.hpp"
#include "client/client.hpp"
#include "cluster/connection.hpp"
#include "cluster/inventory_service.hpp"
#include "cluster/local_node.hpp"
#include "cluster/peer_service.hpp"
#include "cluster/http_endpoint.hpp"
#include "cluster/metrics.hpp"
#include "gateway/webhook.hpp"
#include "cluster/peer_links.hpp"
#include "protocol/order_wire.hpp"
#include "client/router.hpp"
#include "protocol/codec.hpp"
#include "protocol/log.hpp"

namespace holdfast {
using namespace net;
namespace {

// One accepted connection: its RPC system lives until the peer disconnects or the
// sweeper closes it.
struct accepted_connection {
  watched_stream stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  accepted_connection(kj::Own<kj::AsyncIoStream>&& s, connection_ptr state,
                      capnp::Capability::Client bootstrap, capnp::ReaderOptions reader_options)
    : stream(kj::mv(s), std::move(state)),
      network(stream, capnp::rpc::twoparty::Side::SERVER, reader_options),
      rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
};

class connection_errors final : public kj::TaskSet::ErrorHandler {
public:
  // A peer that sends garbage or vanishes loses its own connection; nobody else notices.
  void taskFailed(kj::Exception&& e) override {
    uint64_t suppressed = 0;
    if (limit_.allow(suppressed))
      spdlog::debug("connection ended: {} ({} more suppressed)", e.getDescription().cStr(),
                    suppressed);
  }

private:
  rate_limit limit_;
};

}  // namespace

node_hold_calls::~node_hold_calls() noexcept = default;

void node_hold_calls::holds(std::vector<hold_op> ops, std::function<void(std::vector<hold_result>)> done) {
  inbox_.put({std::move(ops), std::move(done)});
}

struct rpc_server::impl {
  caf::actor bridge;
  server_options options;
  std::thread thread;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_fulfiller;
  mutable std::mutex mutex;
  connection_counters stats;  // under mutex
  std::string start_error;  // under mutex
  std::string http_address;  // under mutex
  std::atomic<bool> failed{false};

  void count(uint64_t connection_counters::*field) {
    std::lock_guard<std::mutex> guard(mutex);
    ++(stats.*field);
  }

  void run(std::shared_ptr<std::promise<std::string>> bound) {
    try {
      auto io = kj::setupAsyncIo();
      auto address = io.provider->getNetwork().parseAddress(options.listen).wait(io.waitScope);
      auto listener = address->listen();
      std::string host = options.listen.substr(0, options.listen.rfind(':'));
      auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
      {
        std::lock_guard<std::mutex> guard(mutex);
        stop_fulfiller = kj::mv(stop.fulfiller);
      }
      // Bound once the cluster's part is ready too (its peer port, its TLS material).
      serve(io, *listener, kj::mv(stop.promise), [&] {
        bound->set_value(host + ":" + std::to_string(listener->getPort()));
        bound.reset();
      });
    } catch (const kj::Exception& e) {
      std::string why = e.getDescription().cStr();
      if (bound) {
        {
          std::lock_guard<std::mutex> guard(mutex);
          start_error = why;
        }
        bound->set_value("");
        return;
      }
      // The node would stay up serving nothing: stop it, with the reason in its log.
      spdlog::critical("network thread failed, stopping the node: {}", why);
      failed = true;
      ::kill(::getpid(), SIGTERM);
    }
  }

  void serve(kj::AsyncIoContext& io, kj::ConnectionReceiver& listener, kj::Promise<void> stopped,
             const std::function<void()>& ready) {
    auto reader_options = codec::reader_options();
    network_context net(bridge, io.provider->getTimer(), options);
    net.started_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
    std::list<connection_ptr> open;
    auto read_budget = std::make_shared<frame_budget>(options.read_budget_mb << 20);
    connection_errors errors;
    rate_limit accept_log, close_log;
    auto& timer = io.provider->getTimer();

    // A cluster member: TLS, the peer port, its links and the router.
    const cluster_role* role = options.cluster.get();
    kj::Own<kj::TlsCertificate> ca;
    kj::Own<kj::TlsKeypair> keypair;
    kj::Own<kj::TlsContext> peer_tls, client_tls;
    kj::Own<peer_links> links;
    kj::Own<router> route;
    kj::Own<kj::ConnectionReceiver> peer_listener;
    auto handshake_timeout = (role ? role->config.connect_timeout_ms : 10'000) * kj::MILLISECONDS;
    auto handshake = [&](auto wrapped) {
      return wrapped.exclusiveJoin(timer.afterDelay(handshake_timeout).then([]() -> decltype(wrapped) {
        return KJ_EXCEPTION(DISCONNECTED, "TLS handshake not finished in time");
      }));
    };
    if (role) {
      auto& cfg = role->config;
      auto* me = cfg.member(role->self);
      if (!cfg.ca.empty()) {
        ca = kj::heap<kj::TlsCertificate>(read_pem_file(cfg.path_of(cfg.ca)));
        keypair = kj::heap<kj::TlsKeypair>(
          kj::TlsKeypair{kj::TlsPrivateKey(read_pem_file(cfg.path_of(me->key))),
                         kj::TlsCertificate(read_pem_file(cfg.path_of(me->cert)))});
        kj::TlsContext::Options peer_options;
        peer_options.useSystemTrustStore = false;
        peer_options.verifyClients = true;
        peer_options.trustedCertificates = kj::arrayPtr(ca.get(), 1);
        peer_options.defaultKeypair = *keypair;
        peer_tls = kj::heap<kj::TlsContext>(kj::mv(peer_options));
        if (cfg.client_tls) {
          kj::TlsContext::Options client_options;
          client_options.useSystemTrustStore = false;
          client_options.defaultKeypair = *keypair;
          if (cfg.client_certs) {  // a client's certificate is its role (role_of_certificate)
            client_options.verifyClients = true;
            client_options.trustedCertificates = kj::arrayPtr(ca.get(), 1);
          }
          client_tls = kj::heap<kj::TlsContext>(kj::mv(client_options));
        }
      }
      peer_listener = io.provider->getNetwork().parseAddress(me->peer).wait(io.waitScope)->listen();
      links = kj::heap<peer_links>(*io.provider, *role, peer_tls.get());
      links->on_superseded = [&net](uint32_t node) { net.close_peers({node}); };
      std::vector<uint32_t> ids;
      for (auto& m : cfg.members) ids.push_back(m.id);
      local_calls local{[&net](std::vector<hold_op> ops) { return net.local.holds(std::move(ops)); },
                        [&net](std::vector<sku_op> ops) { return net.local.skus(std::move(ops)); },
                        [&net](sku_list_query q) { return net.local_list(std::move(q)); },
                        [&net](std::vector<cart_op> ops) { return net.local.carts(std::move(ops)); },
                        [&net](std::vector<order_op> ops) { return net.local.orders(std::move(ops)); }};
      route = kj::heap<router>(placement(ids), role->self, *links, std::move(local));
      if (options.sku_leader) route->lead_skus_by(options.sku_leader);
      net.role = role;
      net.links = links.get();
      net.route = route.get();
      links->start();
      spdlog::info("node {} of cluster \"{}\" (file hash {}), peers on {}{}", role->self, cfg.name,
                   cfg.hash, me->peer, peer_tls ? " (mutual TLS)" : " (PLAINTEXT)");
    }
    // The order actors' hold calls, run here through the router (or this node's actors).
    kj::TaskSet outbound_calls(errors);
    std::function<kj::Promise<void>()> drain_outbound;
    if (options.outbound) {
      drain_outbound = [&]() -> kj::Promise<void> {
        return options.outbound->inbox().next().then([&](std::vector<node_hold_calls::call> calls) {
          for (auto& c : calls) {
            auto n = c.ops.size();
            kj::Promise<std::vector<hold_result>> p = nullptr;
            auto why = links ? links->not_serving() : std::string();
            if (!why.empty()) p = std::vector<hold_result>(n, make_hold_error(code::unavailable, why));
            else if (route) p = route->holds(std::move(c.ops));
            else p = net.local.holds(std::move(c.ops));
            outbound_calls.add(p.then([done = std::move(c.done)](std::vector<hold_result> rs) { done(std::move(rs)); }));
          }
          return kj::evalLater([&] { return drain_outbound(); });
        });
      };
      outbound_calls.add(drain_outbound());
    }
    kj::TaskSet connections(errors);
    kj::TaskSet peer_connections(errors);
    // The peer port under a flood (any host can connect; only the cluster CA's certificates
    // get through the handshake). Handshakes not yet done are bounded, and a full table
    // gives the slot of its oldest silent connection (else its oldest) to the newcomer, so
    // a member, whose TLS hello arrives at once, is never starved by connections that say
    // nothing. A host that is not a member's holds at most a few slots; done handshakes
    // (members with certificates) have slots of their own.
    const size_t members = role ? role->config.members.size() : 0;
    const size_t handshakes_max = 64, handshakes_per_stranger_max = 8;
    const size_t established_max = 8 + 4 * members;
    std::set<std::string> member_hosts;
    for (size_t i = 0; role && i < members; ++i) member_hosts.insert(host_of(role->config.members[i].peer));
    rate_limit refuse_log;
    auto refuse = [&](const char* why) {
      count(&connection_counters::refused);
      uint64_t suppressed = 0;
      if (refuse_log.allow(suppressed))
        spdlog::warn("peer port: {} ({} more since the last line)", why, suppressed);
    };
    // Makes room for a connection from `source`; false when it is refused.
    auto admit_peer = [&](const std::string& source) {
      size_t pending = 0, from_source = 0, established = 0;
      std::shared_ptr<network_context::inbound> oldest, oldest_silent;
      for (auto& p : net.peers_in) {
        if (!p->close) continue;  // already closing
        if (p->handshaken) {
          ++established;
          continue;
        }
        ++pending;
        if (p->source == source) ++from_source;
        if (!oldest) oldest = p;
        if (!*p->heard && !oldest_silent) oldest_silent = p;
      }
      if (!member_hosts.count(source) && from_source >= handshakes_per_stranger_max) {
        refuse("too many handshakes from a host that is not a member's; refused");
        return false;
      }
      if (established >= established_max) {
        refuse("too many member connections; refused");
        return false;
      }
      if (pending >= handshakes_max) {
        refuse("handshake table full; the oldest silent connection gave its slot away");
        (oldest_silent ? oldest_silent : oldest)->drop();
      }
      return true;
    };
    // Accepts peers: TLS (their certificate must chain to the cluster CA), then the Peer
    // interface, whose hello decides whether they get anything more.
    std::function<kj::Promise<void>()> accept_peer = [&]() -> kj::Promise<void> {
      return kj::evalNow([&] { return peer_listener->acceptAuthenticated(); })
        .then(
          [&](kj::AuthenticatedStream&& raw) -> kj::Promise<void> {
            std::string source;
            KJ_IF_MAYBE(address, kj::dynamicDowncastIfAvailable<kj::NetworkPeerIdentity>(*raw.peerIdentity)) {
              source = host_of(address->getAddress().toString().cStr());
            }
            if (!admit_peer(source)) return accept_peer();  // `raw` closes here
            auto in = std::make_shared<network_context::inbound>();
            auto closed = kj::newPromiseAndFulfiller<void>();
            in->close = kj::mv(closed.fulfiller);
            in->source = source;
            raw.stream = kj::heap<first_byte_stream>(kj::mv(raw.stream), in->heard);
            auto position = net.peers_in.insert(net.peers_in.end(), in);
            kj::Promise<kj::AuthenticatedStream> ready =
              peer_tls ? handshake(peer_tls->wrapServer(kj::mv(raw)))
                       : kj::Promise<kj::AuthenticatedStream>(kj::mv(raw));
            auto served = ready.then([&, in](kj::AuthenticatedStream&& s) -> kj::Promise<void> {
              std::string name;
              if (peer_tls) {
                name = certificate_name(*s.peerIdentity);
                // The cluster CA also signs client certificates (cluster cert), which complete
                // this handshake too: only a member's certificate (node-<id>) holds a member's
                // slot here, else a shop's certificate could fill them and keep members out.
                auto& members = role->config.members;
                if (std::none_of(members.begin(), members.end(),
                                 [&](const cluster_member& m) { return node_tls_name(m.id) == name; })) {
                  uint64_t suppressed = 0;
                  static rate_limit limit;
                  if (limit.allow(suppressed))
                    spdlog::warn("peer port: a certificate that names no member ('{}') from {}; closed ({} more)",
                                 name.substr(0, 80), in->source, suppressed);
                  return kj::READY_NOW;
                }
              }
              in->handshaken = true;
              // Peer connections are outside the read budget: each is a member's (mutual TLS) and
              // a stranger's frames wait behind the handshake limit.
              auto state = std::make_shared<connection_state>(0);
              capnp::Capability::Client bootstrap = make_peer_service(net, in, name);
              auto conn = kj::heap<accepted_connection>(kj::mv(s.stream), state, kj::mv(bootstrap),
                                                        reader_options);
              auto done = conn->network.onDisconnect();
              return done.attach(kj::mv(conn));
            });
            peer_connections.add(served.exclusiveJoin(kj::mv(closed.promise))
                                   .attach(kj::defer([&net, position] { net.peers_in.erase(position); })));
            return accept_peer();
          },
          [&](kj::Exception&& e) -> kj::Promise<void> {
            count(&connection_counters::accept_errors);
            return timer.afterDelay(100 * kj::MILLISECONDS).then([&] { return accept_peer(); });
          });
    };

    // A client the node will not serve is told why in a Cap'n Proto Abort (type
    // OVERLOADED: nothing it sent was applied), not left to guess from a closed socket
    // (which a client must read as outcome_unknown). At most 64 such answers at once, each
    // within a second; past that the socket just closes.
    size_t telling_now = 0;
    kj::TaskSet telling(errors);
    auto tell_and_close = [&](kj::Own<kj::AsyncIoStream> stream, const std::string& why) {
      if (telling_now >= 64) return;
      ++telling_now;
      auto frame = abort_frame(why);
      auto bytes = frame.asBytes();
      // After the Abort, what the client sent is read and dropped until it closes: closing
      // with unread bytes would send a reset, which can destroy the Abort in flight.
      auto written = stream->write(bytes.begin(), bytes.size()).then([s = stream.get()] {
        s->shutdownWrite();
        return drain(*s);
      });
      telling.add(written.exclusiveJoin(timer.afterDelay(1 * kj::SECONDS))
                    .attach(kj::mv(frame), kj::mv(stream), kj::defer([&telling_now] { --telling_now; })));
    };
    // A TLS port: the first byte of a TLS client is a handshake record (22). Anything else
    // is a plaintext client, told to use TLS.
    auto tls_or_tell = [&](kj::Own<kj::AsyncIoStream> stream) -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
      auto first = kj::heapArray<kj::byte>(1);
      auto read = stream->tryRead(first.begin(), 1, 1);
      return read.then([&, stream = kj::mv(stream), first = kj::mv(first)](size_t n) mutable
                       -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
        if (n == 1 && first[0] == 22) return kj::Own<kj::AsyncIoStream>(kj::heap<prefixed_stream>(kj::mv(stream), first[0]));
        if (n == 1)
          tell_and_close(kj::mv(stream), std::string(refused_connection_text) +
                                           "this node accepts only TLS clients (client_tls in the cluster file): "
                                           "connect with the cluster CA (--tls-ca ca.pem)");
        return KJ_EXCEPTION(DISCONNECTED, "not a TLS client");
      });
    };

    std::function<kj::Promise<void>()> accept_next = [&]() -> kj::Promise<void> {
      // accept() may throw at once (EMFILE when the socket was already readable):
      // evalNow turns that into a rejection the handler below sees.
      return kj::evalNow([&] { return listener.accept(); }).then(
        [&](kj::Own<kj::AsyncIoStream>&& stream) -> kj::Promise<void> {
          if (open.size() >= options.connections_max) {
            count(&connection_counters::refused);
            uint64_t suppressed = 0;
            if (accept_log.allow(suppressed))
              spdlog::warn("refusing a connection: {} open (--connections-max); {} more refused",
                           open.size(), suppressed);
            // A TLS client would read a plaintext answer as a broken handshake: it is only closed.
            if (!client_tls)
              tell_and_close(kj::mv(stream), refused_connection_text + std::to_string(open.size()) +
                                               " connections open (--connections-max); back off and retry");
            return accept_next();
          }
          count(&connection_counters::accepted);
          auto state = std::make_shared<connection_state>(steady_ms(), read_budget);
          state->unfinished_max = static_cast<int64_t>(options.connection_unfinished_max);
          if (options.tokens) state->granted = role::none;
          auto closed = kj::newPromiseAndFulfiller<void>();
          state->close = kj::mv(closed.fulfiller);
          auto position = open.insert(open.end(), state);
          // With client certificates the handshake names the client: its certificate's role is
          // the connection's (a login with a token may change it).
          bool certs = role && role->config.client_certs;
          kj::Promise<kj::Own<kj::AsyncIoStream>> ready =
            client_tls ? handshake(tls_or_tell(kj::mv(stream)).then([&, certs, state](kj::Own<kj::AsyncIoStream>&& s) {
              auto unknown = kj::Own<kj::PeerIdentity>(kj::UnknownPeerIdentity::newInstance());
              return client_tls->wrapServer(kj::AuthenticatedStream{kj::mv(s), kj::mv(unknown)})
                .then([certs, state](kj::AuthenticatedStream&& a) {
                  if (certs) state->granted = role_of_certificate(certificate_name(*a.peerIdentity));
                  return kj::mv(a.stream);
                });
            }))
                       : kj::Promise<kj::Own<kj::AsyncIoStream>>(kj::mv(stream));
          auto serve_it = ready.then([&, state](kj::Own<kj::AsyncIoStream>&& s) {
            capnp::Capability::Client bootstrap = make_inventory(net, state, false);
            auto conn = kj::heap<accepted_connection>(kj::mv(s), state, kj::mv(bootstrap),
                                                      reader_options);
            auto done = conn->network.onDisconnect();
            spdlog::trace("connection {} accepted", static_cast<void*>(state.get()));
            return done.attach(kj::mv(conn));
          });
          connections.add(serve_it.exclusiveJoin(kj::mv(closed.promise))
                            .attach(kj::defer([&open, position] {
                              spdlog::trace("connection {} gone", static_cast<void*>(position->get()));
                              open.erase(position);
                            })));
          return accept_next();
        },
        [&](kj::Exception&& e) -> kj::Promise<void> {
          // EMFILE, ENFILE, ENOBUFS...: the listener stays; try again shortly, when
          // closed connections (idle or refused) have given descriptors back.
          count(&connection_counters::accept_errors);
          uint64_t suppressed = 0;
          if (accept_log.allow(suppressed))
            spdlog::error("accept: {} ({} more suppressed); retrying", e.getDescription().cStr(),
                          suppressed);
          return timer.afterDelay(100 * kj::MILLISECONDS).then([&] { return accept_next(); });
        });
    };

    // Closes connections that are idle, stuck in the middle of a frame, or not reading
    // their answers.
    std::function<kj::Promise<void>()> sweep = [&]() -> kj::Promise<void> {
      return timer.afterDelay(250 * kj::MILLISECONDS).then([&]() -> kj::Promise<void> {
        auto now = steady_ms();
        net.sample(now);
        for (auto& c : open) {
          if (!c->close) continue;
          spdlog::trace("connection {}: frame_started {} ms ago, {} writes pending for {} ms, {} ops "
                        "in flight, last read {} ms ago",
                        static_cast<void*>(c.get()), c->frames.frame_started_ms() ? now - c->frames.frame_started_ms() : 0, c->writes_pending,
                        c->write_started_ms ? now - c->write_started_ms : 0, c->inflight_ops,
                        now - c->frames.last_read_ms());
          uint64_t connection_counters::*why = nullptr;
          if (c->frames.frame_started_ms() != 0 && now - c->frames.frame_started_ms() > options.frame_timeout_ms)
            why = &connection_counters::closed_frame;
          // Silent since it connected: not a client (or a stuck one); its slot is worth
          // more to the next connection than the idle timeout's patience.
          else if (!c->frames.ever_read() && now - c->frames.last_read_ms() > options.frame_timeout_ms)
            why = &connection_counters::closed_frame;
          else if (c->frames.unfinished() > static_cast<int64_t>(options.connection_unfinished_max))
            why = &connection_counters::closed_unfinished;
          else if (c->writes_pending > 0 && now - c->write_started_ms > options.write_stall_timeout_ms)
            why = &connection_counters::closed_stalled;
          else if (c->frames.frame_started_ms() == 0 && c->inflight_ops == 0 && c->writes_pending == 0 &&
                   now - c->frames.last_read_ms() > options.idle_timeout_ms)
            why = &connection_counters::closed_idle;
          if (!why) continue;
          count(why);
          uint64_t suppressed = 0;
          if (close_log.allow(suppressed))
            spdlog::info("closing a connection: {} ({} more closed since the last line)",
                         why == &connection_counters::closed_frame       ? "a frame begun and not finished"
                         : why == &connection_counters::closed_stalled   ? "its answers are not being read"
                         : why == &connection_counters::closed_unfinished ? "too many calls never finished"
                                                              : "idle",
                         suppressed);
          auto close = kj::mv(c->close);
          close->fulfill();
        }
        return sweep();
      });
    };

    // Peers are answered at once; clients learn the node listens once every link made its
    // first attempt (at most connect_timeout_ms), so a node its peers refuse never serves a
    // first call before it knows.
    auto peers_accepted = (peer_listener ? accept_peer() : kj::Promise<void>(kj::NEVER_DONE)).fork();
    if (links)
      links->joined()
        .exclusiveJoin(timer.afterDelay((role->config.connect_timeout_ms + 250) * kj::MILLISECONDS))
        .wait(io.waitScope);
    // The HTTP endpoint: payment webhooks, passed to their orders' owners.
    kj::Own<kj::HttpHeaderTable> http_table;
    kj::Own<http_endpoint> http_service;
    kj::Own<kj::HttpServer> http_server;
    kj::Own<kj::ConnectionReceiver> http_listener;
    kj::Promise<void> http_served = kj::NEVER_DONE;
    size_t http_open = 0;
    kj::TaskSet http_connections(errors);
    std::function<kj::Promise<void>()> accept_http;
    if (!options.http_listen.empty()) {
      kj::HttpHeaderTable::Builder builder;
      auto signature = builder.add(webhook_signature_header);
      http_table = builder.build();
      auto to_orders = [&](std::vector<order_op> ops) -> kj::Promise<std::vector<order_result>> {
        if (auto why = links ? links->not_serving() : std::string(); !why.empty())
          return std::vector<order_result>(ops.size(), order_result{code::unavailable, why, {}});
        if (route) return route->orders(std::move(ops));
        return net.local.orders(std::move(ops));
      };
      http_endpoint::probes probes;
      probes.not_ready = [&] { return links ? links->not_serving() : std::string(); };
      probes.metrics = [&]() -> kj::Promise<std::string> {
        return net.directory_counters().then([&](directory_stats directory) {
          metrics_view v;
          v.node_id = role ? role->self : 0;
          v.started_ms = net.started_ms;
          v.calls_total = net.calls_total;
          v.operations_in_flight = net.inflight_ops;
          v.inflight_max = options.inflight_max;
          v.forwarded_total = route ? route->forwarded() : 0;
          v.forbidden_total = net.forbidden_total;
          v.logins_refused = net.logins_refused;
          v.not_serving = links ? links->not_serving() : std::string();
          v.holds = &net.holds;
          v.rpc_calls = &net.rpc_calls;
          {
            std::lock_guard<std::mutex> guard(mutex);
            v.connections = stats;
            v.connections.open = open.size();
            v.connections.frames_refused = read_budget->refused();
            v.connections.frame_bytes_reading = read_budget->used();
          }
          if (options.read_storage_stats) v.storage = options.read_storage_stats();
          if (options.read_sku_group_stats) v.sku_group = options.read_sku_group_stats();
          v.directory = directory;
          if (links) v.links = links->status();
          v.webhooks = http_service->counters();
          return render_metrics(v);
        });
      };
      http_service = kj::heap<http_endpoint>(*http_table, signature, options.webhook_secret, to_orders, options.limits,
                                             timer, options.frame_timeout_ms, std::move(probes));
      http_server = kj::heap<kj::HttpServer>(timer, *http_table, *http_service);
      http_listener = io.provider->getNetwork().parseAddress(options.http_listen).wait(io.waitScope)->listen();
      {
        std::lock_guard<std::mutex> guard(mutex);
        http_address = options.http_listen.substr(0, options.http_listen.rfind(':')) + ":" +
                       std::to_string(http_listener->getPort());
      }
      // Each connection counted: at most connections_max open at once; one more is
      // closed at once (a webhook sender retries; a flood cannot take every fd).
      accept_http = [&]() -> kj::Promise<void> {
        return http_listener->accept().then([&](kj::Own<kj::AsyncIoStream> stream) {
          if (http_open >= options.connections_max) {
            count(&connection_counters::refused);
            return accept_http();
          }
          ++http_open;
          http_connections.add(http_server->listenHttp(kj::mv(stream)).attach(kj::defer([&] { --http_open; })));
          return accept_http();
        });
      };
      http_served = accept_http();
    }
    ready();
    auto serving = stopped.exclusiveJoin(kj::mv(http_served)).exclusiveJoin(accept_next()).exclusiveJoin(sweep()).exclusiveJoin(peers_accepted.addBranch());
    serving.wait(io.waitScope);
  }
};

rpc_server::rpc_server(caf::actor bridge, server_options options)
  : impl_(std::make_unique<impl>()) {
  impl_->bridge = std::move(bridge);
  impl_->options = std::move(options);
}

rpc_server::~rpc_server() { stop(); }

std::string rpc_server::start(std::string& error) {
  // Shared with the network thread, which may still hold it after start() returned.
  auto bound = std::make_shared<std::promise<std::string>>();
  auto result = bound->get_future();
  impl_->thread = std::thread([this, bound] { impl_->run(bound); });
  auto address = result.get();
  if (address.empty()) {
    impl_->thread.join();
    error = "cannot serve on " + impl_->options.listen + ": " + impl_->start_error;
  }
  return address;
}

bool rpc_server::failed() const { return impl_->failed; }

std::string rpc_server::http_address() const {
  std::lock_guard<std::mutex> guard(impl_->mutex);
  return impl_->http_address;
}

void rpc_server::stop() {
  if (!impl_->thread.joinable()) return;
  {
    std::lock_guard<std::mutex> guard(impl_->mutex);
    if (impl_->stop_fulfiller) impl_->stop_fulfiller->fulfill();
  }
  impl_->thread.join();
}

}  // namespace holdfast
