#include "cluster/connection.hpp"

#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>

#include <chrono>

namespace holdfast::net {

// Reads and drops what `s` sends until it closes (at most 1 MiB).
kj::Promise<void> drain(kj::AsyncIoStream& s, size_t budget) {
  auto buffer = kj::heapArray<kj::byte>(4096);
  auto read = s.tryRead(buffer.begin(), 1, buffer.size());
  return read.then([&s, budget](size_t n) -> kj::Promise<void> {
    if (n == 0 || n >= budget) return kj::READY_NOW;
    return drain(s, budget - n);
  }).attach(kj::mv(buffer));
}

// A Cap'n Proto RPC Abort message with `why`, framed for the wire.
kj::Array<capnp::word> abort_frame(const std::string& why) {
  capnp::MallocMessageBuilder message;
  auto abort = message.initRoot<capnp::rpc::Message>().initAbort();
  abort.setReason(why);
  abort.setType(capnp::rpc::Exception::Type::OVERLOADED);
  return capnp::messageToFlatArray(message);
}

// The host part of "host:port" (IPv6 in brackets too).
std::string host_of(const std::string& address) {
  auto colon = address.rfind(':');
  auto host = colon == std::string::npos ? address : address.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  return host;
}

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

}  // namespace holdfast::net
