// A Cap'n Proto RPC peer written by hand over a plain socket, for tests that must send
// what no well-behaved client sends (a batch whose items take no bytes) or must stop
// reading while still sending. Speaks just enough of rpc.capnp: Bootstrap, then Calls on
// the bootstrap capability.
#pragma once

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "protocol/codec.hpp"
#include "protocol/inventory.capnp.h"

namespace holdfast::testing {

// `receive_buffer_bytes` > 0 shrinks the socket's receive buffer before it connects, so
// a peer that does not read fills up quickly.
inline int connect_raw(const std::string& address, int receive_buffer_bytes = 0) {
  auto colon = address.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (receive_buffer_bytes > 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof receive_buffer_bytes);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;  // frames go out as written, not held back for the last one's ACK
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// The bytes of one RPC message.
inline kj::Array<capnp::word> frame(capnp::MallocMessageBuilder& m) {
  return capnp::messageToFlatArray(m);
}

inline kj::Array<capnp::word> bootstrap_frame() {
  capnp::MallocMessageBuilder m;
  m.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(0);
  return frame(m);
}

// A call of Inventory method `method` on the bootstrap capability; `fill` writes the
// params struct. `segment_words` > 0 cuts the message into segments of that size, as a
// sender with small buffers would.
inline kj::Array<capnp::word> call_frame(uint32_t question, uint16_t method,
                                         const std::function<void(capnp::AnyPointer::Builder)>& fill,
                                         unsigned segment_words = 0) {
  capnp::MallocMessageBuilder m(segment_words > 0 ? segment_words : capnp::SUGGESTED_FIRST_SEGMENT_WORDS,
                                segment_words > 0 ? capnp::AllocationStrategy::FIXED_SIZE
                                                  : capnp::SUGGESTED_ALLOCATION_STRATEGY);
  auto call = m.initRoot<capnp::rpc::Message>().initCall();
  call.setQuestionId(question);
  call.initTarget().initPromisedAnswer().setQuestionId(0);
  call.setInterfaceId(capnp::typeId<wire::Inventory>());
  call.setMethodId(method);
  fill(call.initParams().getContent());
  return frame(m);
}

inline kj::Array<capnp::word> finish_frame(uint32_t question) {
  capnp::MallocMessageBuilder m;
  m.initRoot<capnp::rpc::Message>().initFinish().setQuestionId(question);
  return frame(m);
}

inline bool write_all(int fd, kj::ArrayPtr<const capnp::word> words) {
  auto bytes = words.asBytes();
  size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::write(fd, bytes.begin() + done, bytes.size() - done);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads messages until the Return for `question`; calls `on_return` with it. False when
// the connection ends first.
inline bool read_return(int fd, uint32_t question,
                        const std::function<void(capnp::rpc::Return::Reader)>& on_return) {
  auto options = codec::reader_options();
  for (;;) {
    try {
      capnp::StreamFdMessageReader reader(fd, options);
      auto msg = reader.getRoot<capnp::rpc::Message>();
      if (msg.isReturn() && msg.getReturn().getAnswerId() == question) {
        on_return(msg.getReturn());
        return true;
      }
    } catch (const kj::Exception&) {
      return false;
    }
  }
}

}  // namespace holdfast::testing
