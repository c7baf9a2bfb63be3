#include "client/client.hpp"

#include <capnp/rpc-twoparty.h>
#include <kj/compat/tls.h>

#include <fcntl.h>
#include <unistd.h>
#include <kj/io.h>

#include <algorithm>
#include <regex>
#include <stdexcept>

#include "client/cluster_file.hpp"

#include "protocol/codec.hpp"

namespace holdfast {

// Not in an anonymous namespace: client::impl holds one.
class batch_errors final : public kj::TaskSet::ErrorHandler {
public:
  // Every batch task delivers its own failure to its callers; nothing reaches here.
  void taskFailed(kj::Exception&&) override {}
};

// The answers to one caller's operations, filled in as the batches that carry them
// answer (a caller's operations may be split over several batches).
struct gather {
  std::vector<hold_result> results;
  size_t left = 0;
  kj::Own<kj::PromiseFulfiller<std::vector<hold_result>>> done;
};

// A client's own connection; absent when the client wraps a capability it was given.
struct client_connection {
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  client_connection(kj::Own<kj::AsyncIoStream> s, capnp::ReaderOptions o)
    : stream(kj::mv(s)),
      network(*stream, capnp::rpc::twoparty::Side::CLIENT, o),
      rpc(capnp::makeRpcClient(network)) {}
  wire::Inventory::Client bootstrap() {
    capnp::word scratch[4] = {};
    capnp::MallocMessageBuilder message(scratch);
    auto vat = message.getRoot<capnp::rpc::twoparty::VatId>();
    vat.setSide(capnp::rpc::twoparty::Side::SERVER);
    return rpc.bootstrap(vat).castAs<wire::Inventory>();
  }
};

struct client::impl {
  kj::Timer& timer;
  kj::Own<client_connection> connection;
  wire::Inventory::Client inventory;
  client_options options;

  // Calls of one kind waiting for a batch: each operation and where its answer goes.
  struct slot {
    std::shared_ptr<gather> to;
    size_t index;
    // This call's answer; its caller hears all of its own once the last is in.
    void answer(hold_result r) {
      to->results[index] = std::move(r);
      if (--to->left == 0 && to->done->isWaiting()) to->done->fulfill(std::move(to->results));
    }
  };
  struct lane {
    std::vector<hold_op> ops;
    std::vector<slot> callers;
    std::vector<kj::TimePoint> queued_at;  // when each queued call was made (FIFO)
    bool queue_deadline_armed = false;
    // The `n` oldest queued calls, out of the queue: their operations and callers.
    std::pair<std::vector<hold_op>, std::vector<slot>> take(size_t n) {
      std::pair<std::vector<hold_op>, std::vector<slot>> out{
        {std::make_move_iterator(ops.begin()), std::make_move_iterator(ops.begin() + n)},
        {std::make_move_iterator(callers.begin()), std::make_move_iterator(callers.begin() + n)}};
      ops.erase(ops.begin(), ops.begin() + n);
      callers.erase(callers.begin(), callers.begin() + n);
      queued_at.erase(queued_at.begin(), queued_at.begin() + n);
      return out;
    }
    bool send_scheduled = false;
    bool linger_armed = false;
    uint64_t next_batch = 0;
    std::vector<std::pair<uint64_t, kj::TimePoint>> sent;  // batches in flight, oldest first: (number, when)
    int64_t round_trip_us = 0;  // moving average of the batches' round trips
  };
  lane lanes[hold_op_kinds];  // by hold_op_kind
  client::batching batched;
  batch_errors errors;
  kj::TaskSet tasks{errors};

  impl(kj::Own<kj::AsyncIoStream> s, kj::Timer& t, client_options o)
    : timer(t),
      connection(kj::heap<client_connection>(kj::mv(s), codec::reader_options())),
      inventory(connection->bootstrap()),
      options(o) {}
  impl(wire::Inventory::Client cap, kj::Timer& t, client_options o)
    : timer(t), inventory(kj::mv(cap)), options(o) {}

  // Queues operations of one kind; they leave with the next batch of that kind.
  kj::Promise<std::vector<hold_result>> enqueue_all(std::vector<hold_op> ops) {
    if (ops.empty()) return std::vector<hold_result>{};
    auto kind = ops.front().kind;
    auto& l = lanes[static_cast<size_t>(kind)];
    auto paf = kj::newPromiseAndFulfiller<std::vector<hold_result>>();
    auto g = std::make_shared<gather>();
    g->results.resize(ops.size());
    g->left = ops.size();
    g->done = kj::mv(paf.fulfiller);
    auto at = now();
    for (size_t i = 0; i < ops.size(); ++i) {
      l.ops.push_back(std::move(ops[i]));
      l.callers.push_back({g, i});
      l.queued_at.push_back(at);
    }
    schedule(kind);
    arm_queue_deadline(kind);
    return kj::mv(paf.promise);
  }
  kj::Promise<hold_result> enqueue(hold_op op) {
    std::vector<hold_op> one;
    one.push_back(std::move(op));
    return enqueue_all(std::move(one)).then([](std::vector<hold_result> rs) {
      return std::move(rs.at(0));
    });
  }

  static kj::TimePoint now() { return kj::systemPreciseMonotonicClock().now(); }
  // When a batch beyond the first in flight may leave: once the oldest has been out
  // twice the usual round trip (it is slow), at least client_options::second_batch_after_us
  // and at most 50 ms.
  kj::TimePoint next_allowed(const lane& l) const {
    auto wait_us = std::clamp<int64_t>(2 * l.round_trip_us, options.second_batch_after_us,
                                       std::max(options.second_batch_after_us, options.second_batch_after_max_us));
    return l.sent.front().second + wait_us * kj::MICROSECONDS;
  }

  // The send runs once the event loop has nothing else to do (evalLast), so every call
  // that is about to be made joins it: the callers whose answers just came, and every
  // member's in a cluster client. (evalLater sent after one turn, while those callers
  // were still a few continuations away: bench cluster's cluster-aware row sent batches
  // of 8.5 calls where one connection carried 50.) An idle client still sends at once.
  // With a batch in flight, the next waits until that one has been out a while (then it
  // carries every call made meanwhile), but no longer: one slow batch does not hold up
  // every later call.
  void schedule(hold_op_kind kind) {
    auto& l = lanes[static_cast<size_t>(kind)];
    if (l.send_scheduled || l.ops.empty() || l.sent.size() >= options.batches_in_flight_max)
      return;
    if (!l.sent.empty()) {
      auto at = next_allowed(l);
      if (now() < at) {
        if (l.linger_armed) return;
        l.linger_armed = true;
        tasks.add(timer.atTime(at).then([this, kind] {
          lanes[static_cast<size_t>(kind)].linger_armed = false;
          schedule(kind);
        }));
        return;
      }
    }
    l.send_scheduled = true;
    tasks.add(kj::evalLast([this, kind] {
      lanes[static_cast<size_t>(kind)].send_scheduled = false;
      send(kind);
    }));
  }

  // A call still queued (never sent) when its own deadline comes is answered then:
  // `unavailable`, which is safe to retry, since nothing was sent. (Counting only from
  // when its batch was sent let a call queued behind stuck batches wait several
  // deadlines.)
  void arm_queue_deadline(hold_op_kind kind) {
    auto& l = lanes[static_cast<size_t>(kind)];
    if (options.call_timeout_ms <= 0 || l.queue_deadline_armed || l.queued_at.empty()) return;
    l.queue_deadline_armed = true;
    auto due = l.queued_at.front() + options.call_timeout_ms * kj::MILLISECONDS;
    tasks.add(timer.atTime(due).then([this, kind] {
      auto& l = lanes[static_cast<size_t>(kind)];
      l.queue_deadline_armed = false;
      auto limit = now() - options.call_timeout_ms * kj::MILLISECONDS;
      size_t n = 0;
      while (n < l.queued_at.size() && l.queued_at[n] <= limit) ++n;
      for (auto& s : l.take(n).second)
        s.answer(make_hold_error(code::unavailable, "not sent within " + std::to_string(options.call_timeout_ms) +
                                                      " ms: the batches ahead of it did not answer (nothing was applied)"));
      arm_queue_deadline(kind);
    }));
  }

  void send(hold_op_kind kind) {
    auto& l = lanes[static_cast<size_t>(kind)];
    if (l.ops.empty() || l.sent.size() >= options.batches_in_flight_max) return;
    if (!l.sent.empty() && now() < next_allowed(l)) return schedule(kind);
    size_t n = std::min(l.ops.size(), options.batch_size_max);
    ++batched.batches;
    batched.ops += n;
    auto [ops, callers] = l.take(n);
    auto waiting = std::make_shared<std::vector<slot>>(std::move(callers));
    auto number = l.next_batch++;
    l.sent.emplace_back(number, now());
    // The deadline is the batch's, one timer per RPC rather than one per call.
    tasks.add(deadline(batch(kind, ops), kind, ops.size())
                .then(
                  [waiting](std::vector<hold_result> rs) {
                    for (size_t i = 0; i < waiting->size(); ++i)
                      (*waiting)[i].answer(i < rs.size() ? std::move(rs[i])
                                                         : make_hold_error(code::unavailable, "short batch answer"));
                  },
                  [waiting](kj::Exception&& e) {
                    for (auto& s : *waiting)
                      if (s.to->done->isWaiting()) s.to->done->reject(kj::cp(e));
                  })
                .then([this, kind, number] {
                  auto& l = lanes[static_cast<size_t>(kind)];
                  auto it = std::find_if(l.sent.begin(), l.sent.end(), [number](auto& b) { return b.first == number; });
                  auto took_us = (now() - it->second) / kj::MICROSECONDS;
                  l.round_trip_us = l.round_trip_us == 0 ? took_us : (7 * l.round_trip_us + took_us) / 8;
                  l.sent.erase(it);
                  // Calls that queued behind this batch go with those about to be made.
                  schedule(kind);
                }));
  }

  kj::Promise<std::vector<hold_result>> batch(hold_op_kind kind, const std::vector<hold_op>& ops);
  kj::Promise<hold_result> one(hold_op op);

  // The call's own deadline: the answer or, when it does not come in time, `late`.
  template <class T>
  kj::Promise<T> deadline(kj::Promise<T> call, T late) {
    if (options.call_timeout_ms <= 0) return call;
    return call.exclusiveJoin(
      // From the clock, not the timer's idea of now: KJ advances that only while the
      // event loop runs, so a blocking client idle for longer than the timeout (its loop
      // runs only inside calls) would see every next call time out at once.
      timer.atTime(kj::systemPreciseMonotonicClock().now() + options.call_timeout_ms * kj::MILLISECONDS)
        .then([late = kj::mv(late)]() mutable {
        return kj::mv(late);
      }));
  }
  // Calls without a domain answer for "late" (status, members, fault hooks): a
  // kj::Exception (OVERLOADED) when none comes within the call timeout.
  template <class T>
  kj::Promise<T> or_timeout(kj::Promise<T> call) {
    if (options.call_timeout_ms <= 0) return call;
    return timer.timeoutAfter(options.call_timeout_ms * kj::MILLISECONDS, kj::mv(call));
  }
  std::string late_message() const {
    return "no answer within " + std::to_string(options.call_timeout_ms) + " ms";
  }
  kj::Promise<hold_result> deadline(kj::Promise<hold_result> call, hold_op_kind kind) {
    return deadline(kj::mv(call), make_hold_error(kind == hold_op_kind::query
                                                    ? code::unavailable
                                                    : code::outcome_unknown,
                                                  late_message()));
  }
  kj::Promise<std::vector<hold_result>> deadline(kj::Promise<std::vector<hold_result>> call,
                                                 hold_op_kind kind, size_t n) {
    return deadline(kj::mv(call),
                    std::vector<hold_result>(n, make_hold_error(kind == hold_op_kind::query
                                                                  ? code::unavailable
                                                                  : code::outcome_unknown,
                                                                late_message())));
  }
};

kj::Promise<kj::Own<kj::AsyncIoStream>> connect_stream(kj::AsyncIoProvider& io,
                                                       const std::string& address,
                                                       const client_options& options) {
  auto connected = io.getNetwork().parseAddress(address).then(
    [](kj::Own<kj::NetworkAddress> a) { return a->connect().attach(kj::mv(a)); });
  if (options.tls_cert.empty() != options.tls_key.empty())
    throw KJ_EXCEPTION(FAILED, "a client certificate needs its key: give both --tls-cert and --tls-key");
  if (options.tls_ca.empty() && !options.tls_cert.empty())
    throw KJ_EXCEPTION(FAILED, "a client certificate is presented over TLS: give --tls-ca (the cluster's ca.pem) too");
  if (options.tls_ca.empty()) return connected;
  auto ca = read_pem_file(options.tls_ca);
  kj::Maybe<kj::Own<kj::TlsKeypair>> keypair;
  if (!options.tls_cert.empty())
    keypair = kj::heap<kj::TlsKeypair>(kj::TlsKeypair{kj::TlsPrivateKey(read_pem_file(options.tls_key)),
                                                      kj::TlsCertificate(read_pem_file(options.tls_cert))});
  return connected.then([ca = kj::mv(ca), name = options.tls_name, keypair = kj::mv(keypair)](
                          kj::Own<kj::AsyncIoStream> s) mutable {
    auto cert = kj::heap<kj::TlsCertificate>(ca);
    kj::TlsContext::Options o;
    o.useSystemTrustStore = false;
    o.trustedCertificates = kj::arrayPtr(cert.get(), 1);
    KJ_IF_MAYBE(k, keypair) { o.defaultKeypair = **k; }
    auto tls = kj::heap<kj::TlsContext>(kj::mv(o));
    auto wrapped = tls->wrapClient(kj::mv(s), name);
    return wrapped.then([tls = kj::mv(tls), cert = kj::mv(cert), keypair = kj::mv(keypair)](
                          kj::Own<kj::AsyncIoStream> t) mutable {
      return t.attach(kj::mv(tls), kj::mv(cert), kj::mv(keypair));
    });
  });
}

kj::String read_pem_file(const std::string& path) {
  std::string text;
  if (auto problem = read_small_file(path, 1u << 20, text); !problem.empty())
    throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                        kj::heapString(path + ": " + problem));
  return kj::heapString(text.data(), text.size());
}

kj::Promise<node_status> client::status() {
  auto call = impl_->inventory.statusRequest().send().then([](auto r) {
    auto s = r.getStatus();
    node_status out;
    out.node_id = s.getNodeId();
    out.incarnation = s.getIncarnation();
    out.cluster = codec::str(s.getCluster());
    out.file_hash = codec::str(s.getFileHash());
    out.skus_active = s.getSkusActive();
    out.calls_total = s.getCallsTotal();
    out.calls_per_second = s.getCallsPerSecond();
    out.forwarded_total = s.getForwardedTotal();
    out.started_ms = s.getStartedMs();
    out.not_serving = codec::str(s.getNotServing());
    out.generation = s.getGeneration();
    out.cluster_id = codec::str(s.getClusterId());
    out.version = codec::str(s.getVersion());
    if (s.hasRaft() && s.getRaft().getPresent()) {
      auto r = s.getRaft();
      auto& g = out.raft;
      g.present = true;
      g.state = codec::str(r.getState());
      g.serving = r.getServing();
      g.term = r.getTerm();
      g.commit_index = r.getCommitIndex();
      g.last_applied = r.getLastApplied();
      g.leader = r.getLeader();
      g.snapshot_index = r.getSnapshotIndex();
      g.snapshots_taken = r.getSnapshotsTaken();
      g.states_installed = r.getStatesInstalled();
      g.replica = r.getReplica();
      for (auto f : r.getFollowers())
        g.followers.push_back({f.getNode(), f.getMatchIndex(), f.getLag(), f.getReplica()});
      for (auto v : r.getServers())
        g.servers.push_back({v.getReplica(), v.getNode(), codec::str(v.getRole()), codec::str(v.getAddress())});
    }
    for (auto l : s.getLinks())
      out.links.push_back({l.getNode(), codec::str(l.getState()), codec::str(l.getDetail()),
                           l.getIncarnation(), l.getRttMicros(), l.getSinceMs(), l.getForwarded(),
                           l.getDowns(), l.getGeneration()});
    return out;
  });
  return impl_->or_timeout(kj::mv(call));
}

kj::Promise<std::vector<member_address>> client::members(std::string* cluster) {
  return impl_->or_timeout(impl_->inventory.membersRequest().send().then([cluster](auto r) {
    std::vector<member_address> out;
    for (auto m : r.getMembers()) out.push_back({m.getId(), codec::str(m.getClient())});
    if (cluster) *cluster = codec::str(r.getCluster());
    return out;
  }));
}

kj::Promise<order_event_page> client::order_events(uint64_t from, uint32_t limit) {
  auto req = impl_->inventory.orderEventsRequest();
  req.setFrom(from);
  req.setLimit(limit);
  return impl_->or_timeout(req.send().then([](auto r) {
    order_event_page page;
    page.node = r.getNode();
    page.next = r.getNext();
    page.error = codec::str(r.getRefused());
    for (auto e : r.getEvents()) page.events.push_back({e.getSeq(), codec::read(e.getOrder())});
    return page;
  }));
}

kj::Promise<order_page> client::list_orders(const order_list_query& query) {
  auto req = impl_->inventory.listOrdersRequest();
  auto q = req.initQuery();
  q.setUser(query.user);
  q.setState(query.state);
  q.setAfter(query.after);
  q.setLimit(query.limit);
  return impl_->or_timeout(req.send().then([](auto r) {
    order_page page;
    page.next = codec::str(r.getNext());
    page.error = codec::str(r.getRefused());
    for (auto o : r.getOrders()) page.orders.push_back(codec::read(o));
    return page;
  }));
}

kj::Promise<std::string> client::fault_partition(const std::vector<uint32_t>& peers) {
  auto req = impl_->inventory.faultPartitionRequest();
  auto list = req.initPeers(static_cast<unsigned>(peers.size()));
  for (unsigned i = 0; i < peers.size(); ++i) list.set(i, peers[i]);
  return impl_->or_timeout(req.send().then([](auto r) { return codec::str(r.getRefused()); }));
}

kj::Promise<std::pair<uint64_t, std::string>> client::replace_replica(uint32_t node) {
  auto req = impl_->inventory.replaceReplicaRequest();
  req.setNode(node);
  return impl_->or_timeout(req.send().then([](auto r) {
    return std::pair<uint64_t, std::string>(r.getReplica(), codec::str(r.getRefused()));
  }));
}

kj::Promise<std::string> client::promote_replica(uint64_t replica) {
  auto req = impl_->inventory.promoteReplicaRequest();
  req.setReplica(replica);
  return impl_->or_timeout(req.send().then([](auto r) { return codec::str(r.getRefused()); }));
}

kj::Promise<std::pair<uint32_t, std::string>> client::transfer_leadership(uint32_t to) {
  auto req = impl_->inventory.transferLeadershipRequest();
  req.setTo(to);
  return impl_->or_timeout(req.send().then([](auto r) {
    return std::make_pair(r.getLeader(), codec::str(r.getRefused()));
  }));
}

namespace {
template <class Result, class Make>
kj::Promise<std::vector<Result>> never_rejects(kj::Promise<std::vector<Result>> call, size_t n,
                                               bool query, std::string who, Make make,
                                               kj::Canceler& calls) {
  return calls.wrap(kj::mv(call)).catch_([n, query, who = std::move(who), make](kj::Exception&& e) {
    auto [status, message] = failed_call(e, query, who);
    return std::vector<Result>(n, make(status, message));
  });
}
}  // namespace

bool tls_refusal(const std::string& text) {
  for (auto* alert : {"alert certificate required", "alert unknown ca", "alert bad certificate",
                      "alert certificate unknown", "alert handshake failure", "alert decrypt error",
                      "alert certificate expired", "alert unsupported certificate", "alert certificate revoked",
                      "alert access denied"})
    if (text.find(alert) != std::string::npos) return true;
  return false;
}

void cluster_tls_defaults(client_options& o, const cluster_config& cfg) {
  if (cfg.client_tls && o.tls_ca.empty()) o.tls_ca = cfg.path_of(cfg.ca);
  if (!cfg.client_certs || !o.tls_cert.empty() || !o.tls_key.empty()) return;
  auto base = cfg.path_of(std::string("admin-") + local_admin_name);
  if (::access((base + ".pem").c_str(), R_OK) == 0 && ::access((base + ".key").c_str(), R_OK) == 0) {
    o.tls_cert = base + ".pem";
    o.tls_key = base + ".key";
  }
}

std::string describe(const kj::Exception& e) {
  std::string text = e.getDescription().cStr();
  // KJ's TLS errors put OpenSSL's reason in a `message` argument: that one is for people.
  const std::string openssl = "OpenSSL error; message = ";
  if (text.rfind(openssl, 0) == 0) text = "TLS: " + text.substr(openssl.size());
  // KJ appends the values of its macro's arguments ("; why.c_str() = ..."): debug text.
  static const std::regex debug_suffix("; [A-Za-z_][A-Za-z0-9_.>()\\-]* = ");
  std::smatch m;
  if (std::regex_search(text, m, debug_suffix)) text = text.substr(0, m.position(0));
  const std::string remote = "remote exception: ";
  if (text.rfind(remote, 0) == 0) text = text.substr(remote.size());
  return text;
}

std::pair<code, std::string> failed_call(const kj::Exception& e, bool query, const std::string& who) {
  // OVERLOADED, or the node's refusal of the connection: nothing was acted on.
  auto text = describe(e);
  if (e.getType() == kj::Exception::Type::OVERLOADED || text.find(refused_connection_text) != std::string::npos)
    return {code::unavailable, who + ": " + text};
  // What this side's own TLS and framing found, never a remote exception's text (a node's
  // Abort of a connection reaches every call pending on it, some of them applied).
  bool local = std::string(e.getDescription().cStr()).rfind("remote exception: ", 0) != 0;
  // The node's TLS refused this client's certificate (or its lack of one) in the handshake,
  // before any call was read.
  if (local && tls_refusal(text))
    return {code::unavailable, who + " refused this client's TLS certificate (" + text +
                                 "): a cluster with client_certs takes one from holdfast cluster cert, signed by "
                                 "its CA (--tls-cert, --tls-key)"};
  // Something that is not a node's client port (an HTTP server, a peer port without TLS)
  // answers bytes Cap'n Proto cannot frame: say so rather than KJ's framing complaint.
  // (Not "Message ends prematurely": a node that died mid-answer ends a frame early too.)
  for (auto* framing : {"Message has too many segments", "Message is too large"})
    if (local && text.find(framing) != std::string::npos)
      return {code::unavailable, who + " did not answer in Cap'n Proto (" + text +
                                   "): is this a Holdfast node's client port, not its HTTP or peer port?"};
  // A TLS 1.3 server refuses a client's certificate after the client's handshake is done:
  // the client learns it only as its first write fails, which a node dying looks like too.
  if (text.find("ssl connection ended") != std::string::npos)
    text += " (a node whose cluster has client_certs closes a connection without a client certificate: "
            "--tls-cert, --tls-key)";
  return {query ? code::unavailable : code::outcome_unknown, who + " did not answer: " + text};
}

kj::Promise<std::vector<hold_result>> answer_all(kj::Promise<std::vector<hold_result>> call, size_t n,
                                                 bool query, const std::string& who, kj::Canceler& calls) {
  return never_rejects<hold_result>(kj::mv(call), n, query, who,
                                    [](code s, std::string m) { return make_hold_error(s, std::move(m)); },
                                    calls);
}

kj::Promise<std::vector<hold_result>> forward_holds(client& c, std::vector<hold_op> ops,
                                                    const std::string& who, kj::Canceler& calls) {
  auto n = ops.size();
  bool query = n > 0 && ops.front().kind == hold_op_kind::query;
  return answer_all(c.submit(std::move(ops)), n, query, who, calls);
}

kj::Promise<std::vector<sku_result>> forward_skus(client& c, std::vector<sku_op> ops,
                                                  const std::string& who, kj::Canceler& calls) {
  auto n = ops.size();
  bool query = n == 1 && reads_only(ops.front().kind);
  kj::Promise<std::vector<sku_result>> call = nullptr;
  if (n == 1) {
    call = c.sku(ops.front()).then([](sku_result r) {
      std::vector<sku_result> out;
      out.push_back(std::move(r));
      return out;
    });
  } else {
    // Creates go in batches the owner accepts (its --batch-max, advertised at the hello),
    // one after another (within its --inflight-max too).
    auto out = std::make_shared<std::vector<sku_result>>();
    kj::Promise<void> chain = kj::READY_NOW;
    for (size_t at = 0; at < n; at += c.batch_size_max()) {
      std::vector<sku_op> part(ops.begin() + at, ops.begin() + std::min(n, at + c.batch_size_max()));
      chain = chain.then([&c, out, part = std::move(part)]() mutable {
        return c.create_skus(part).then([out](std::vector<sku_result> rs) {
          out->insert(out->end(), rs.begin(), rs.end());
        });
      });
    }
    call = chain.then([out] { return std::move(*out); });
  }
  return never_rejects<sku_result>(kj::mv(call), n, query, who,
                                   [](code s, std::string m) { return make_sku_error(s, std::move(m)); },
                                   calls);
}

kj::Promise<sku_page> forward_list(client& c, sku_list_query query, const std::string& who,
                                   kj::Canceler& calls) {
  // Wrapped as an Own: GCC 12 warns (falsely) about the page's strings inside the
  // canceler's ExceptionOr<sku_page>.
  auto call = c.list_skus(query, true).then([](sku_page p) { return kj::heap<sku_page>(std::move(p)); });
  return calls.wrap(kj::mv(call)).then(
    [](kj::Own<sku_page> p) { return std::move(*p); },
    [who](kj::Exception&& e) {
      sku_page p;
      p.partial = who + ": " + describe(e);
      return p;
    });
}

kj::Promise<std::vector<cart_result>> forward_carts(client& c, std::vector<cart_op> ops,
                                                    const std::string& who, kj::Canceler& calls) {
  auto n = ops.size();
  bool query = std::all_of(ops.begin(), ops.end(), [](const cart_op& o) { return o.kind == cart_op_kind::view; });
  return never_rejects<cart_result>(c.cart_ops(ops), n, query, who,
                                    [](code s, std::string m) { return make_cart_error(s, std::move(m)); },
                                    calls);
}

kj::Promise<std::vector<order_result>> forward_orders(client& c, std::vector<order_op> ops,
                                                      const std::string& who, kj::Canceler& calls) {
  auto n = ops.size();
  bool query = std::all_of(ops.begin(), ops.end(), [](const order_op& o) { return o.kind == order_op_kind::show; });
  return never_rejects<order_result>(c.order_ops(ops), n, query, who,
                                     [](code s, std::string m) { return order_result{s, std::move(m), {}}; },
                                     calls);
}

kj::Promise<kj::Own<client>> client::connect(kj::AsyncIoProvider& io, const std::string& address,
                                             client_options options) {
  return connect_stream(io, address, options)
    .then([&io, options](kj::Own<kj::AsyncIoStream> s) -> kj::Promise<kj::Own<client>> {
      auto c = kj::heap<client>(kj::mv(s), io.getTimer(), options);
      if (options.token.empty()) {
        if (options.tls_ca.empty()) return kj::mv(c);
        // Under TLS 1.3 a node judges the client's certificate (or its absence) after this
        // side's handshake is done: one status round trip (open to every role) learns its
        // verdict before any call is sent, so a refusal is known to have taken nothing.
        kj::Promise<capnp::Response<wire::Inventory::StatusResults>> asked = c->impl_->inventory.statusRequest().send();
        return c->impl_->or_timeout(kj::mv(asked)).then(
          [c = kj::mv(c)](capnp::Response<wire::Inventory::StatusResults>&&) mutable { return kj::mv(c); });
      }
      auto login = c->impl_->inventory.loginRequest();
      login.setToken(options.token);
      // A node that never answers the login (frozen) ends the connect at the deadline.
      kj::Promise<capnp::Response<wire::Inventory::LoginResults>> sent = login.send();
      return c->impl_->or_timeout(kj::mv(sent)).then([c = kj::mv(c)](capnp::Response<wire::Inventory::LoginResults>&& r) mutable {
        if (r.hasRefused() && r.getRefused().size() > 0)
          kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                                kj::str("forbidden: login refused (", r.getRefused(), ")")));
        return kj::mv(c);
      });
    });
}

client::client(kj::Own<kj::AsyncIoStream> stream, kj::Timer& timer, client_options options)
  : impl_(std::make_unique<impl>(kj::mv(stream), timer, options)) {}
client::client(wire::Inventory::Client inventory, kj::Timer& timer, client_options options)
  : impl_(std::make_unique<impl>(kj::mv(inventory), timer, options)) {}

kj::Promise<std::vector<hold_result>> client::submit(std::vector<hold_op> ops) {
  if (ops.empty()) return std::vector<hold_result>{};
  auto kind = ops.front().kind;
  if (kind == hold_op_kind::query) {
    // Queries have no batch form: one call each, answered together.
    auto calls = kj::heapArrayBuilder<kj::Promise<hold_result>>(ops.size());
    for (auto& op : ops) calls.add(impl_->one(std::move(op)));
    return kj::joinPromises(calls.finish()).then([](kj::Array<hold_result> rs) {
      return std::vector<hold_result>(std::make_move_iterator(rs.begin()),
                                      std::make_move_iterator(rs.end()));
    });
  }
  return impl_->enqueue_all(std::move(ops));
}
client::~client() = default;
client::batching client::batched() const { return impl_->batched; }
size_t client::batch_size_max() const { return std::max<size_t>(1, impl_->options.batch_size_max); }

kj::Promise<hold_result> client::reserve(const hold_op& op) {
  if (impl_->options.auto_batch) {
    hold_op copy = op;
    copy.kind = hold_op_kind::reserve;
    return impl_->enqueue(std::move(copy));
  }
  auto req = impl_->inventory.reserveRequest();
  codec::write(req.initRequest(), op);
  return impl_->deadline(req.send().then([](auto r) { return codec::read(r.getResult()); }),
                         hold_op_kind::reserve);
}

kj::Promise<hold_result> client::impl::one(hold_op op) {
  auto kind = op.kind;
  if (options.auto_batch && kind != hold_op_kind::query) return enqueue(std::move(op));
  auto read = [](auto r) { return codec::read(r.getResult()); };
  kj::Promise<hold_result> call = nullptr;
  switch (kind) {
    case hold_op_kind::confirm: {
      auto req = inventory.confirmRequest();
      codec::write(req.initHold(), op);
      call = req.send().then(kj::cp(read));
      break;
    }
    case hold_op_kind::release: {
      auto req = inventory.releaseRequest();
      codec::write(req.initHold(), op);
      call = req.send().then(kj::cp(read));
      break;
    }
    case hold_op_kind::extend: {
      auto req = inventory.extendRequest();
      codec::write(req.initHold(), op);
      call = req.send().then(kj::cp(read));
      break;
    }
    case hold_op_kind::return_hold: {
      auto req = inventory.returnHoldRequest();
      codec::write(req.initHold(), op);
      call = req.send().then(kj::cp(read));
      break;
    }
    default: {
      auto req = inventory.queryHoldRequest();
      codec::write(req.initHold(), op);
      call = req.send().then(kj::cp(read));
      break;
    }
  }
  return deadline(kj::mv(call), kind);
}

kj::Promise<hold_result> client::confirm(const std::string& hold_id, const std::string& sku) {
  return impl_->one(hold_ref(hold_op_kind::confirm, hold_id, sku));
}

kj::Promise<hold_result> client::release(const std::string& hold_id, const std::string& sku) {
  return impl_->one(hold_ref(hold_op_kind::release, hold_id, sku));
}

kj::Promise<hold_result> client::query_hold(const std::string& hold_id, const std::string& sku) {
  return impl_->one(hold_ref(hold_op_kind::query, hold_id, sku));
}

kj::Promise<hold_result> client::extend(const std::string& hold_id, int64_t ttl_ms,
                                        const std::string& sku) {
  auto op = hold_ref(hold_op_kind::extend, hold_id, sku);
  op.ttl_ms = ttl_ms;
  return impl_->one(std::move(op));
}

kj::Promise<hold_result> client::return_hold(const std::string& hold_id, const std::string& sku) {
  return impl_->one(hold_ref(hold_op_kind::return_hold, hold_id, sku));
}

kj::Promise<sku_page> client::list_skus(const sku_list_query& query, bool local_only) {
  auto req = impl_->inventory.listSkusRequest();
  codec::write(req.initQuery(), query, local_only);
  return impl_->or_timeout(req.send().then([](auto r) { return codec::read(r.getPage()); }));
}

namespace {
// A batch the node refused whole answers each of its `n` operations with the reason.
template <class Response>
std::vector<hold_result> read_all(const Response& r, size_t n) {
  if (r.hasRefused() && r.getRefused().size() > 0)
    return std::vector<hold_result>(n, make_hold_error(code::invalid, codec::str(r.getRefused())));
  std::vector<hold_result> out;
  for (auto x : r.getResults()) out.push_back(codec::read(x));
  return out;
}
}  // namespace

kj::Promise<std::vector<hold_result>> client::impl::batch(hold_op_kind kind,
                                                         const std::vector<hold_op>& ops) {
  auto fill = [&ops](auto list) {
    for (size_t i = 0; i < ops.size(); ++i) codec::write(list[i], ops[i]);
  };
  // Continuations get a copy (kj::cp): Promise::then(f) on an lvalue keeps a reference to
  // `f`, and this local is gone long before the answer arrives.
  auto read = [n = ops.size()](auto r) { return read_all(r, n); };
  switch (kind) {
    case hold_op_kind::reserve: {
      auto req = inventory.reserveBatchRequest();
      fill(req.initRequests(ops.size()));
      return req.send().then(kj::cp(read));
    }
    case hold_op_kind::confirm: {
      auto req = inventory.confirmBatchRequest();
      fill(req.initHolds(ops.size()));
      return req.send().then(kj::cp(read));
    }
    case hold_op_kind::release: {
      auto req = inventory.releaseBatchRequest();
      fill(req.initHolds(ops.size()));
      return req.send().then(kj::cp(read));
    }
    case hold_op_kind::extend: {
      auto req = inventory.extendBatchRequest();
      fill(req.initHolds(ops.size()));
      return req.send().then(kj::cp(read));
    }
    case hold_op_kind::return_hold: {
      auto req = inventory.returnBatchRequest();
      fill(req.initHolds(ops.size()));
      return req.send().then(kj::cp(read));
    }
    case hold_op_kind::query:
      break;
  }
  return KJ_EXCEPTION(FAILED, "no batch form for hold queries");
}

kj::Promise<std::vector<hold_result>> client::reserve_batch(const std::vector<hold_op>& ops) {
  return impl_->deadline(impl_->batch(hold_op_kind::reserve, ops), hold_op_kind::reserve,
                         ops.size());
}
kj::Promise<std::vector<hold_result>> client::confirm_batch(const std::vector<hold_op>& ops) {
  return impl_->deadline(impl_->batch(hold_op_kind::confirm, ops), hold_op_kind::confirm,
                         ops.size());
}
kj::Promise<std::vector<hold_result>> client::release_batch(const std::vector<hold_op>& ops) {
  return impl_->deadline(impl_->batch(hold_op_kind::release, ops), hold_op_kind::release,
                         ops.size());
}
kj::Promise<std::vector<hold_result>> client::extend_batch(const std::vector<hold_op>& ops) {
  return impl_->deadline(impl_->batch(hold_op_kind::extend, ops), hold_op_kind::extend,
                         ops.size());
}

kj::Promise<sku_result> client::sku(const sku_op& op) {
  auto late = make_sku_error(reads_only(op.kind) ? code::unavailable : code::outcome_unknown,
                             impl_->late_message());
  return impl_->deadline(send_sku(op), std::move(late));
}

kj::Promise<std::vector<sku_result>> client::create_skus(const std::vector<sku_op>& ops) {
  auto req = impl_->inventory.createSkuBatchRequest();
  auto list = req.initRequests(static_cast<unsigned>(ops.size()));
  for (size_t i = 0; i < ops.size(); ++i) {
    auto r = list[static_cast<unsigned>(i)];
    r.setSku(ops[i].sku);
    r.setStock(ops[i].amount);
    r.setPriceCents(ops[i].price_cents);
    r.setTitle(ops[i].title);
    r.setLimitPerUser(ops[i].limit_per_user);
  }
  auto n = ops.size();
  auto call = req.send().then([n](auto response) {
    std::vector<sku_result> out;
    if (response.hasRefused() && response.getRefused().size() > 0) {
      out.assign(n, make_sku_error(code::invalid, codec::str(response.getRefused())));
      return out;
    }
    for (auto r : response.getResults()) out.push_back(codec::read(r));
    if (out.size() != n) out.assign(n, make_sku_error(code::outcome_unknown, "answer has the wrong length"));
    return out;
  });
  return impl_->deadline(kj::mv(call), std::vector<sku_result>(
                                         n, make_sku_error(code::outcome_unknown, impl_->late_message())));
}

namespace {

// Sends `ops` in batches of at most `max`, all at once; the answers in order.
template <class Result, class Op, class Send>
kj::Promise<std::vector<Result>> in_entity_batches(const std::vector<Op>& ops, size_t max, Send send) {
  if (ops.size() <= max) return send(ops);
  auto parts = kj::heapArrayBuilder<kj::Promise<std::vector<Result>>>((ops.size() + max - 1) / max);
  for (size_t at = 0; at < ops.size(); at += max)
    parts.add(send(std::vector<Op>(ops.begin() + static_cast<long>(at),
                                   ops.begin() + static_cast<long>(std::min(ops.size(), at + max)))));
  return kj::joinPromises(parts.finish()).then([](kj::Array<std::vector<Result>> answers) {
    std::vector<Result> out;
    for (auto& a : answers) out.insert(out.end(), std::make_move_iterator(a.begin()), std::make_move_iterator(a.end()));
    return out;
  });
}

}  // namespace

kj::Promise<std::vector<cart_result>> client::cart_ops(const std::vector<cart_op>& all) {
  return in_entity_batches<cart_result>(all, std::min(batch_size_max(), entity_batch_max), [this](const std::vector<cart_op>& ops) {
    return send_cart_ops(ops);
  });
}

kj::Promise<std::vector<order_result>> client::order_ops(const std::vector<order_op>& all) {
  return in_entity_batches<order_result>(all, std::min(batch_size_max(), entity_batch_max), [this](const std::vector<order_op>& ops) {
    return send_order_ops(ops);
  });
}

kj::Promise<std::vector<cart_result>> client::send_cart_ops(const std::vector<cart_op>& ops) {
  auto req = impl_->inventory.cartOpsRequest();
  auto list = req.initOps(static_cast<unsigned>(ops.size()));
  for (size_t i = 0; i < ops.size(); ++i) codec::write(list[static_cast<unsigned>(i)], ops[i]);
  auto n = ops.size();
  auto call = req.send().then([n](auto response) {
    std::vector<cart_result> out;
    if (response.hasRefused() && response.getRefused().size() > 0) {
      out.assign(n, make_cart_error(code::invalid, codec::str(response.getRefused())));
      return out;
    }
    for (auto r : response.getResults()) out.push_back(codec::read(r));
    if (out.size() != n) out.assign(n, make_cart_error(code::outcome_unknown, "answer has the wrong length"));
    return out;
  });
  return impl_->deadline(kj::mv(call), std::vector<cart_result>(
                                         n, make_cart_error(code::outcome_unknown, impl_->late_message())));
}

kj::Promise<std::vector<order_result>> client::send_order_ops(const std::vector<order_op>& ops) {
  auto req = impl_->inventory.orderOpsRequest();
  auto list = req.initOps(static_cast<unsigned>(ops.size()));
  for (size_t i = 0; i < ops.size(); ++i) codec::write(list[static_cast<unsigned>(i)], ops[i]);
  auto n = ops.size();
  auto call = req.send().then([n](auto response) {
    std::vector<order_result> out;
    if (response.hasRefused() && response.getRefused().size() > 0) {
      out.assign(n, order_result{code::invalid, codec::str(response.getRefused()), {}});
      return out;
    }
    for (auto r : response.getResults()) out.push_back(codec::read(r));
    if (out.size() != n) out.assign(n, order_result{code::outcome_unknown, "answer has the wrong length", {}});
    return out;
  });
  return impl_->deadline(kj::mv(call), std::vector<order_result>(
                                         n, order_result{code::outcome_unknown, impl_->late_message(), {}}));
}

kj::Promise<checkout_result> client::checkout(const std::string& user, const std::string& card,
                                              const std::string& key) {
  auto req = impl_->inventory.checkoutRequest();
  req.setUser(user);
  req.setCard(card);
  req.setKey(key);
  auto call = req.send().then([](auto response) { return codec::read(response.getResult()); });
  checkout_result late;
  late.status = code::outcome_unknown;
  late.message = impl_->late_message();
  return impl_->deadline(kj::mv(call), std::move(late));
}

kj::Promise<sku_result> client::send_sku(const sku_op& op) {
  auto read = [](auto r) { return codec::read(r.getResult()); };
  switch (op.kind) {
    case sku_op_kind::create: {
      auto req = impl_->inventory.createSkuRequest();
      req.setSku(op.sku);
      req.setStock(op.amount);
      req.setPriceCents(op.price_cents);
      req.setTitle(op.title);
      req.setLimitPerUser(op.limit_per_user);
      return req.send().then(kj::cp(read));
    }
    case sku_op_kind::restock: {
      auto req = impl_->inventory.restockRequest();
      req.setSku(op.sku);
      req.setQty(op.amount);
      return req.send().then(kj::cp(read));
    }
    case sku_op_kind::adjust: {
      auto req = impl_->inventory.adjustRequest();
      req.setSku(op.sku);
      req.setOnHand(op.amount);
      return req.send().then(kj::cp(read));
    }
    case sku_op_kind::set_price: {
      auto req = impl_->inventory.setPriceRequest();
      req.setSku(op.sku);
      req.setPriceCents(op.price_cents);
      return req.send().then(kj::cp(read));
    }
    case sku_op_kind::list_holds: {
      auto req = impl_->inventory.listHoldsRequest();
      auto q = req.initQuery();
      q.setSku(op.sku);
      q.setState(op.state);
      q.setAfter(op.after);
      q.setLimit(op.limit);
      return req.send().then([](auto r) {
        auto out = codec::read(r.getResult());
        for (auto h : r.getHolds()) out.holds.push_back(codec::read(h));
        out.next = codec::str(r.getNext());
        return out;
      });
    }
    case sku_op_kind::query:
      break;
  }
  auto req = impl_->inventory.querySkuRequest();
  req.setSku(op.sku);
  return req.send().then(kj::cp(read));
}

// -- blocking_client ----------------------------------------------------------

blocking_client::blocking_client(const std::string& address, client_options options)
  : io_(kj::setupAsyncIo()) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
                auto connecting = client::connect(*io_.provider, address, options);
                if (options.call_timeout_ms > 0)
                  connecting = io_.provider->getTimer().timeoutAfter(
                    options.call_timeout_ms * kj::MILLISECONDS, kj::mv(connecting));
                client_ = connecting.wait(io_.waitScope);
              })) {
    auto why = describe(*e);
    if (!options.tls_ca.empty() && (tls_refusal(why) || why.find("ssl connection ended") != std::string::npos))
      why += " (the node's TLS refused this client: a cluster with client_certs takes a certificate from holdfast "
             "cluster cert, signed by its CA: --tls-cert, --tls-key)";
    throw std::runtime_error("cannot reach node at " + address + ": " + why);
  }
}

blocking_client::~blocking_client() = default;

template <class T>
T blocking_client::wait(kj::Promise<T>&& p) {
  return p.wait(io_.waitScope);
}

hold_result blocking_client::reserve(const std::string& sku, int64_t qty,
                                     const std::string& hold_id, int64_t ttl_ms,
                                     const std::string& user) {
  return wait(client_->reserve({hold_op_kind::reserve, sku, hold_id, qty, ttl_ms, user}));
}
hold_result blocking_client::confirm(const std::string& hold_id, const std::string& sku) {
  return wait(client_->confirm(hold_id, sku));
}
hold_result blocking_client::release(const std::string& hold_id, const std::string& sku) {
  return wait(client_->release(hold_id, sku));
}
hold_result blocking_client::query_hold(const std::string& hold_id, const std::string& sku) {
  return wait(client_->query_hold(hold_id, sku));
}
sku_result blocking_client::create_sku(const std::string& sku, int64_t stock, int64_t price,
                                       const std::string& title, int64_t limit_per_user) {
  return wait(client_->sku({sku_op_kind::create, sku, stock, price, title, limit_per_user}));
}
hold_result blocking_client::extend(const std::string& hold_id, int64_t ttl_ms,
                                    const std::string& sku) {
  return wait(client_->extend(hold_id, ttl_ms, sku));
}
sku_page blocking_client::list_skus(const sku_list_query& query) {
  return wait(client_->list_skus(query));
}
std::vector<sku_result> blocking_client::create_skus(const std::vector<sku_op>& ops) {
  return wait(client_->create_skus(ops));
}
sku_result blocking_client::query_sku(const std::string& sku) {
  return wait(client_->sku({sku_op_kind::query, sku, 0, 0, {}}));
}
sku_result blocking_client::list_holds(const std::string& sku, const std::string& state, const std::string& after,
                                       uint32_t limit) {
  sku_op op{sku_op_kind::list_holds, sku, 0, 0, {}};
  op.state = state;
  op.after = after;
  op.limit = limit;
  return wait(client_->sku(op));
}
sku_result blocking_client::restock(const std::string& sku, int64_t qty) {
  return wait(client_->sku({sku_op_kind::restock, sku, qty, 0, {}}));
}
cart_result blocking_client::cart(const cart_op& op) {
  return wait(client_->cart_ops({op})).at(0);
}
order_result blocking_client::order(const order_op& op) {
  return wait(client_->order_ops({op})).at(0);
}
checkout_result blocking_client::checkout(const std::string& user, const std::string& card,
                                          const std::string& key) {
  return wait(client_->checkout(user, card, key));
}
sku_result blocking_client::set_price(const std::string& sku, int64_t price_cents) {
  return wait(client_->sku({sku_op_kind::set_price, sku, 0, price_cents, {}, 0}));
}
sku_result blocking_client::adjust(const std::string& sku, int64_t on_hand) {
  return wait(client_->sku({sku_op_kind::adjust, sku, on_hand, 0, {}}));
}

node_status blocking_client::status() { return wait(client_->status()); }
std::vector<member_address> blocking_client::members(std::string* cluster) {
  return wait(client_->members(cluster));
}
order_event_page blocking_client::order_events(uint64_t from, uint32_t limit) {
  return wait(client_->order_events(from, limit));
}
order_page blocking_client::list_orders(const order_list_query& query) {
  return wait(client_->list_orders(query));
}
std::pair<uint64_t, std::string> blocking_client::replace_replica(uint32_t node) {
  return wait(client_->replace_replica(node));
}
std::string blocking_client::promote_replica(uint64_t replica) { return wait(client_->promote_replica(replica)); }
std::pair<uint32_t, std::string> blocking_client::transfer_leadership(uint32_t to) {
  return wait(client_->transfer_leadership(to));
}

std::string blocking_client::fault_partition(const std::vector<uint32_t>& peers) {
  return wait(client_->fault_partition(peers));
}

client& blocking_client::async() { return *client_; }
kj::AsyncIoContext& blocking_client::io() { return io_; }

}  // namespace holdfast
