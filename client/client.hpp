// The C++ client library. `client` is one connection to a node on the calling
// thread's KJ event loop; calls return promises, so one thread can keep thousands in
// flight. `blocking_client` owns an event loop and waits for each answer: the CLI and
// tests use it. Domain outcomes come back as values; a kj::Exception means transport
// trouble (node unreachable, connection lost, OVERLOADED). A call with no answer within
// `call_timeout_ms` ends as outcome_unknown (mutations) or unavailable (queries).
//
// Auto-batching (TigerBeetle-style): single reserve/confirm/release/query calls made
// while a batch of their kind is on the wire wait for it, then go out together as one
// batch RPC; calls made in one event-loop turn share a batch too. An idle client sends
// a lone call at once, so batching costs latency only when there is a queue anyway.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <kj/async-io.h>

#include "client/cluster_file.hpp"
#include "protocol/order_wire.hpp"
#include "client/status.hpp"
#include "protocol/domain.hpp"
#include "protocol/inventory.capnp.h"

namespace holdfast {

struct client_options {
  // Every RPC answers by then: a mutation with outcome_unknown (retry it with the same
  // hold id), a query with unavailable. 0: wait for ever. An auto-batched call's deadline
  // is its batch's, counted from when the batch is sent; a call still queued (never
  // sent: the batches in flight did not answer) is answered unavailable by its own
  // deadline, counted from when it was made: nothing was applied, retry at will.
  int64_t call_timeout_ms = 15'000;
  bool auto_batch = true;
  size_t batch_size_max = 1024;   // ops per batch RPC; at most the node's --batch-max
  // Per kind: batches on the wire before calls queue. A batch beyond the first leaves
  // only once the oldest in flight is slow: out twice the usual round trip (at least
  // `second_batch_after_us`, at most `second_batch_after_max_us`). Calls made
  // while a quick batch is out all go in the next one, which keeps batches big (a second
  // batch at once split the same callers into two half-size batches: bench hot-sku 1b
  // ran 382-384k/s with one in flight against 328-359k/s with two, alternating runs), and
  // one slow batch (a cold SKU, a stalled fsync) does not hold every later call.
  unsigned batches_in_flight_max = 2;
  int64_t second_batch_after_us = 1'000;
  int64_t second_batch_after_max_us = 50'000;
  // TLS: the CA (PEM file) the node's certificate must chain to; empty: plaintext. The
  // certificate must name `tls_name` (every member of a `cluster init` cluster does).
  std::string tls_ca;
  std::string tls_name = client_tls_name;
  // A client certificate and its key (PEM files, `holdfast cluster cert`) for a cluster with
  // [tls] client_certs: the node gives the connection the certificate's role. Both or neither.
  std::string tls_cert;
  std::string tls_key;
  // A bearer token for a node started with --tokens: the connection logs in with it before
  // any call (a node without --tokens ignores it). Empty: no login.
  std::string token;
};

struct cluster_config;
// The certificate `cluster up` writes beside a client_certs cluster's file for its own use
// (and any tool that reads the file): admin-local.pem and .key.
constexpr const char* local_admin_name = "local";
// How to reach a cluster file's members: its CA when its clients use TLS (unless the
// options name one), and on a client_certs cluster with no certificate given, the local
// admin certificate beside the file if it is there.
void cluster_tls_defaults(client_options& options, const cluster_config& cfg);
// True when a failed call's text says the node's TLS refused this client (no certificate,
// an expired one, another CA's): nothing was read, so nothing was applied.
bool tls_refusal(const std::string& text);

// TCP to `address`, then TLS when options.tls_ca is set.
kj::Promise<kj::Own<kj::AsyncIoStream>> connect_stream(kj::AsyncIoProvider& io,
                                                       const std::string& address,
                                                       const client_options& options);
// A PEM file's text (at most 1 MiB); throws a kj::Exception when it cannot be read.
kj::String read_pem_file(const std::string& path);

class client;
// Sends operations of one kind through `c` and never rejects: a lost answer becomes
// outcome_unknown (queries: unavailable), OVERLOADED becomes unavailable, each naming
// `who`. With a canceler, cancel() ends every such call at once (a link that died).
kj::Promise<std::vector<hold_result>> forward_holds(client& c, std::vector<hold_op> ops,
                                                    const std::string& who, kj::Canceler& calls);
// The same for a call already made: `n` answers whatever happens to it.
kj::Promise<std::vector<hold_result>> answer_all(kj::Promise<std::vector<hold_result>> call, size_t n,
                                                 bool query, const std::string& who, kj::Canceler& calls);
// How a node begins the Abort it sends a connection it refuses before reading a call (the
// connection cap, a plaintext client on a TLS port): the client then knows nothing it sent
// was applied, and answers unavailable rather than outcome_unknown.
constexpr const char* refused_connection_text = "the node refused this connection before reading any call: ";

// The text of `e` for a person: without KJ's debug suffixes ("; x = ...") or its "remote
// exception: " prefix.
std::string describe(const kj::Exception& e);
// What a call that failed with `e` answers, the rule above: (status, message naming `who`).
std::pair<code, std::string> failed_call(const kj::Exception& e, bool query, const std::string& who);
// One SKU operation of any kind, or many creates.
kj::Promise<std::vector<sku_result>> forward_skus(client& c, std::vector<sku_op> ops,
                                                  const std::string& who, kj::Canceler& calls);

// A member's own catalog page through `c`; never rejects: a failed call is a page whose
// `partial` names `who` and why.
kj::Promise<sku_page> forward_list(client& c, sku_list_query query, const std::string& who,
                                   kj::Canceler& calls);
// Cart operations through `c`; never rejects (the rule above: changes outcome_unknown,
// views unavailable).
kj::Promise<std::vector<cart_result>> forward_carts(client& c, std::vector<cart_op> ops,
                                                    const std::string& who, kj::Canceler& calls);
kj::Promise<std::vector<order_result>> forward_orders(client& c, std::vector<order_op> ops,
                                                      const std::string& who, kj::Canceler& calls);

class client {
public:
  static kj::Promise<kj::Own<client>> connect(kj::AsyncIoProvider& io, const std::string& address,
                                              client_options options = {});
  client(kj::Own<kj::AsyncIoStream> stream, kj::Timer& timer, client_options options = {});
  // Over a capability already obtained (a peer link's): the caller keeps its connection.
  client(wire::Inventory::Client inventory, kj::Timer& timer, client_options options = {});
  ~client();

  // Operations of one kind, auto-batched with every other call of that kind: one answer
  // per operation, in order. What a peer link forwards with.
  kj::Promise<std::vector<hold_result>> submit(std::vector<hold_op> ops);
  kj::Promise<node_status> status();
  // The cluster's members (empty from a single node), and the cluster's name.
  kj::Promise<std::vector<member_address>> members(std::string* cluster = nullptr);
  // This node's order events from `from` (Inventory.orderEvents).
  kj::Promise<order_event_page> order_events(uint64_t from, uint32_t limit);
  // This node's page of orders (a refusal or a storage error in `error`).
  kj::Promise<order_page> list_orders(const order_list_query& query);
  // Test-only fault hook; answers why it was refused, or "".
  kj::Promise<std::string> fault_partition(const std::vector<uint32_t>& peers);
  // Inventory.transferLeadership: the leader afterwards (`to` when it took over), and why
  // not ("" when it did).
  kj::Promise<std::pair<uint32_t, std::string>> transfer_leadership(uint32_t to);
  // Inventory.replaceReplica and .promoteReplica: the new replica's id and why not.
  kj::Promise<std::pair<uint64_t, std::string>> replace_replica(uint32_t node);
  kj::Promise<std::string> promote_replica(uint64_t replica);

  kj::Promise<hold_result> reserve(const hold_op& op);
  kj::Promise<hold_result> confirm(const std::string& hold_id, const std::string& sku = {});
  kj::Promise<hold_result> release(const std::string& hold_id, const std::string& sku = {});
  kj::Promise<hold_result> query_hold(const std::string& hold_id, const std::string& sku = {});
  // The hold lasts at least ttl_ms from now (never shortened); an ended hold answers its
  // final state.
  kj::Promise<hold_result> extend(const std::string& hold_id, int64_t ttl_ms,
                                  const std::string& sku = {});
  // A confirmed hold's units back on hand, once (see Inventory.returnHold).
  kj::Promise<hold_result> return_hold(const std::string& hold_id, const std::string& sku = {});
  // One page of the catalog from every member (`local_only`: this node's SKUs only). A
  // lost answer rejects: a listing changes nothing, the caller just asks again.
  kj::Promise<sku_page> list_skus(const sku_list_query& query, bool local_only = false);
  // Batches: ops of one kind; the kind is the method's.
  kj::Promise<std::vector<hold_result>> reserve_batch(const std::vector<hold_op>& ops);
  kj::Promise<std::vector<hold_result>> confirm_batch(const std::vector<hold_op>& ops);
  kj::Promise<std::vector<hold_result>> release_batch(const std::vector<hold_op>& ops);
  kj::Promise<std::vector<hold_result>> extend_batch(const std::vector<hold_op>& ops);
  kj::Promise<sku_result> sku(const sku_op& op);
  // Creates many SKUs in one call (ops of kind create): one answer per op, in order.
  kj::Promise<std::vector<sku_result>> create_skus(const std::vector<sku_op>& ops);
  // Cart operations of any users: one answer each, in order. More than batch_size_max or
  // entity_batch_max (protocol/limits.hpp) go as several batch calls at once.
  kj::Promise<std::vector<cart_result>> cart_ops(const std::vector<cart_op>& ops);
  // Order operations of any orders: one answer each, in order; batched as cart_ops.
  kj::Promise<std::vector<order_result>> order_ops(const std::vector<order_op>& ops);
  // The user's cart becomes an order (see Inventory.checkout).
  kj::Promise<checkout_result> checkout(const std::string& user, const std::string& card,
                                        const std::string& key);

  // What auto-batching did so far: batch RPCs sent and the operations they carried.
  struct batching {
    uint64_t batches = 0, ops = 0;
  };
  batching batched() const;
  // The most operations one batch RPC of this client carries (client_options).
  size_t batch_size_max() const;

private:
  kj::Promise<sku_result> send_sku(const sku_op& op);
  kj::Promise<std::vector<cart_result>> send_cart_ops(const std::vector<cart_op>& ops);
  kj::Promise<std::vector<order_result>> send_order_ops(const std::vector<order_op>& ops);
  struct impl;
  std::unique_ptr<impl> impl_;
};

class blocking_client {
public:
  // Throws std::runtime_error when the node cannot be reached within the call timeout.
  explicit blocking_client(const std::string& address, client_options options = {});
  ~blocking_client();

  hold_result reserve(const std::string& sku, int64_t qty, const std::string& hold_id,
                      int64_t ttl_ms, const std::string& user = {});
  hold_result confirm(const std::string& hold_id, const std::string& sku = {});
  hold_result release(const std::string& hold_id, const std::string& sku = {});
  hold_result query_hold(const std::string& hold_id, const std::string& sku = {});
  sku_result create_sku(const std::string& sku, int64_t stock, int64_t price_cents,
                        const std::string& title = {}, int64_t limit_per_user = 0);
  hold_result extend(const std::string& hold_id, int64_t ttl_ms, const std::string& sku = {});
  sku_page list_skus(const sku_list_query& query);
  std::vector<sku_result> create_skus(const std::vector<sku_op>& ops);
  node_status status();
  std::vector<member_address> members(std::string* cluster = nullptr);
  std::string fault_partition(const std::vector<uint32_t>& peers);
  std::pair<uint32_t, std::string> transfer_leadership(uint32_t to);
  std::pair<uint64_t, std::string> replace_replica(uint32_t node);
  std::string promote_replica(uint64_t replica);
  sku_result query_sku(const std::string& sku);
  // One page of the SKU's holds (admin): `holds` and `next` of the result; see sku_op.
  sku_result list_holds(const std::string& sku, const std::string& state = {}, const std::string& after = {},
                        uint32_t limit = 0);
  sku_result restock(const std::string& sku, int64_t qty);
  sku_result adjust(const std::string& sku, int64_t on_hand);
  sku_result set_price(const std::string& sku, int64_t price_cents);
  cart_result cart(const cart_op& op);
  order_result order(const order_op& op);
  checkout_result checkout(const std::string& user, const std::string& card, const std::string& key);
  order_event_page order_events(uint64_t from, uint32_t limit);
  order_page list_orders(const order_list_query& query);

  client& async();
  kj::AsyncIoContext& io();

private:
  template <class T>
  T wait(kj::Promise<T>&& p);
  kj::AsyncIoContext io_;
  kj::Own<client> client_;
};

}  // namespace holdfast
