#include "cluster/client.hpp"

#include <capnp/rpc-twoparty.h>

#include <stdexcept>

#include "protocol/codec.hpp"

namespace holdfast {

struct client::impl {
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  wire::Inventory::Client inventory;

  static capnp::ReaderOptions reader_options() {
    capnp::ReaderOptions o;
    o.traversalLimitInWords = 32u << 20;  // 256 MiB: a 4096-result batch is far below
    o.nestingLimit = 16;
    return o;
  }

  explicit impl(kj::Own<kj::AsyncIoStream> s)
    : stream(kj::mv(s)),
      network(*stream, capnp::rpc::twoparty::Side::CLIENT, reader_options()),
      rpc(capnp::makeRpcClient(network)),
      inventory(bootstrap()) {}

  wire::Inventory::Client bootstrap() {
    capnp::word scratch[4] = {};
    capnp::MallocMessageBuilder message(scratch);
    auto vat = message.getRoot<capnp::rpc::twoparty::VatId>();
    vat.setSide(capnp::rpc::twoparty::Side::SERVER);
    return rpc.bootstrap(vat).castAs<wire::Inventory>();
  }
};

kj::Promise<kj::Own<client>> client::connect(kj::AsyncIoProvider& io, const std::string& address) {
  return io.getNetwork()
    .parseAddress(address)
    .then([](kj::Own<kj::NetworkAddress> a) { return a->connect().attach(kj::mv(a)); })
    .then([](kj::Own<kj::AsyncIoStream> s) { return kj::heap<client>(kj::mv(s)); });
}

client::client(kj::Own<kj::AsyncIoStream> stream) : impl_(std::make_unique<impl>(kj::mv(stream))) {}
client::~client() = default;

kj::Promise<hold_result> client::reserve(const hold_op& op) {
  auto req = impl_->inventory.reserveRequest();
  codec::write(req.initRequest(), op);
  return req.send().then([](auto r) { return codec::read(r.getResult()); });
}

namespace {
hold_op ref(const std::string& hold_id, const std::string& sku) {
  hold_op op;
  op.hold_id = hold_id;
  op.sku = sku;
  return op;
}
}  // namespace

kj::Promise<hold_result> client::confirm(const std::string& hold_id, const std::string& sku) {
  auto req = impl_->inventory.confirmRequest();
  codec::write(req.initHold(), ref(hold_id, sku));
  return req.send().then([](auto r) { return codec::read(r.getResult()); });
}

kj::Promise<hold_result> client::release(const std::string& hold_id, const std::string& sku) {
  auto req = impl_->inventory.releaseRequest();
  codec::write(req.initHold(), ref(hold_id, sku));
  return req.send().then([](auto r) { return codec::read(r.getResult()); });
}

kj::Promise<hold_result> client::query_hold(const std::string& hold_id, const std::string& sku) {
  auto req = impl_->inventory.queryHoldRequest();
  codec::write(req.initHold(), ref(hold_id, sku));
  return req.send().then([](auto r) { return codec::read(r.getResult()); });
}

namespace {
template <class Response>
std::vector<hold_result> read_all(const Response& r) {
  std::vector<hold_result> out;
  for (auto x : r.getResults()) out.push_back(codec::read(x));
  return out;
}
}  // namespace

kj::Promise<std::vector<hold_result>> client::reserve_batch(const std::vector<hold_op>& ops) {
  auto req = impl_->inventory.reserveBatchRequest();
  auto list = req.initRequests(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) codec::write(list[i], ops[i]);
  return req.send().then([](auto r) { return read_all(r); });
}

kj::Promise<std::vector<hold_result>> client::confirm_batch(const std::vector<hold_op>& ops) {
  auto req = impl_->inventory.confirmBatchRequest();
  auto list = req.initHolds(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) codec::write(list[i], ops[i]);
  return req.send().then([](auto r) { return read_all(r); });
}

kj::Promise<std::vector<hold_result>> client::release_batch(const std::vector<hold_op>& ops) {
  auto req = impl_->inventory.releaseBatchRequest();
  auto list = req.initHolds(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) codec::write(list[i], ops[i]);
  return req.send().then([](auto r) { return read_all(r); });
}

kj::Promise<sku_result> client::sku(const sku_op& op) {
  auto read = [](auto r) { return codec::read(r.getResult()); };
  switch (op.kind) {
    case sku_op_kind::create: {
      auto req = impl_->inventory.createSkuRequest();
      req.setSku(op.sku);
      req.setStock(op.amount);
      req.setPriceCents(op.price_cents);
      return req.send().then(read);
    }
    case sku_op_kind::restock: {
      auto req = impl_->inventory.restockRequest();
      req.setSku(op.sku);
      req.setQty(op.amount);
      return req.send().then(read);
    }
    case sku_op_kind::adjust: {
      auto req = impl_->inventory.adjustRequest();
      req.setSku(op.sku);
      req.setOnHand(op.amount);
      return req.send().then(read);
    }
    case sku_op_kind::query:
      break;
  }
  auto req = impl_->inventory.querySkuRequest();
  req.setSku(op.sku);
  return req.send().then(read);
}

// -- blocking_client ----------------------------------------------------------

blocking_client::blocking_client(const std::string& address) : io_(kj::setupAsyncIo()) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
                client_ = client::connect(*io_.provider, address).wait(io_.waitScope);
              })) {
    throw std::runtime_error("cannot reach node at " + address + ": " +
                             e->getDescription().cStr());
  }
}

blocking_client::~blocking_client() = default;

template <class T>
T blocking_client::wait(kj::Promise<T>&& p) {
  return p.wait(io_.waitScope);
}

hold_result blocking_client::reserve(const std::string& sku, int64_t qty,
                                     const std::string& hold_id, int64_t ttl_ms) {
  return wait(client_->reserve({hold_op_kind::reserve, sku, hold_id, qty, ttl_ms}));
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
sku_result blocking_client::create_sku(const std::string& sku, int64_t stock, int64_t price) {
  return wait(client_->sku({sku_op_kind::create, sku, stock, price}));
}
sku_result blocking_client::query_sku(const std::string& sku) {
  return wait(client_->sku({sku_op_kind::query, sku, 0, 0}));
}
sku_result blocking_client::restock(const std::string& sku, int64_t qty) {
  return wait(client_->sku({sku_op_kind::restock, sku, qty, 0}));
}
sku_result blocking_client::adjust(const std::string& sku, int64_t on_hand) {
  return wait(client_->sku({sku_op_kind::adjust, sku, on_hand, 0}));
}

client& blocking_client::async() { return *client_; }
kj::AsyncIoContext& blocking_client::io() { return io_; }

}  // namespace holdfast
