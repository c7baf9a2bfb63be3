// The node's connection plumbing on the network thread (cluster/rpc_server.cpp and
// cluster/inventory_service.cpp): stream wrappers that watch what a connection reads and
// cannot write, and the bookkeeping each accepted connection shares with its Inventory
// object and the sweeper. Network thread only.
#pragma once

#include <capnp/common.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cluster/frame_watcher.hpp"
#include "cluster/roles.hpp"

namespace holdfast::net {

// Reads and drops what `s` sends until it closes (at most `budget` bytes).
kj::Promise<void> drain(kj::AsyncIoStream& s, size_t budget = 1 << 20);
// A Cap'n Proto RPC Abort message with `why`, framed for the wire.
kj::Array<capnp::word> abort_frame(const std::string& why);
// The host part of "host:port" (IPv6 in brackets too).
std::string host_of(const std::string& address);
// The steady clock in milliseconds (the sweeper's and the watched streams' clock).
int64_t steady_ms();

// Forwards everything to the stream it wraps; the wrappers below change only reading.
class forwarding_stream : public kj::AsyncIoStream {
public:
  explicit forwarding_stream(kj::Own<kj::AsyncIoStream> inner) : inner_(kj::mv(inner)) {}
  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return inner_->tryRead(buffer, min_bytes, max_bytes);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override { return inner_->write(buffer, size); }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner_->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }

protected:
  kj::Own<kj::AsyncIoStream> inner_;
};

// A stream that notes when its first byte arrives: a peer-port connection that says
// nothing is a flood's, and is the first to give its handshake slot away.
class first_byte_stream final : public forwarding_stream {
public:
  first_byte_stream(kj::Own<kj::AsyncIoStream> inner, std::shared_ptr<bool> heard)
    : forwarding_stream(kj::mv(inner)), heard_(std::move(heard)) {}
  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return inner_->tryRead(buffer, min_bytes, max_bytes).then([heard = heard_](size_t n) {
      if (n > 0) *heard = true;
      return n;
    });
  }

private:
  std::shared_ptr<bool> heard_;
};

// A stream whose first byte was already read (to tell TLS from plaintext): it is given back
// first.
class prefixed_stream final : public forwarding_stream {
public:
  prefixed_stream(kj::Own<kj::AsyncIoStream> inner, kj::byte first) : forwarding_stream(kj::mv(inner)), first_(first) {}
  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    if (!pending_ || max_bytes == 0) return inner_->tryRead(buffer, min_bytes, max_bytes);
    pending_ = false;
    auto* out = static_cast<kj::byte*>(buffer);
    out[0] = first_;
    if (min_bytes <= 1) return size_t{1};
    return inner_->tryRead(out + 1, min_bytes - 1, max_bytes - 1).then([](size_t n) { return n + 1; });
  }

private:
  kj::byte first_;
  bool pending_ = true;
};

// One accepted connection's bookkeeping, shared by its stream wrapper, its Inventory
// object and the sweeper. Network thread only.
struct connection_state {
  explicit connection_state(int64_t now_ms, std::shared_ptr<frame_budget> budget = nullptr)
    : frames(now_ms, std::move(budget)) {}
  frame_watcher frames;           // what was read: frames, last byte, questions open
  int64_t write_started_ms = 0;   // when the oldest unfinished write began
  size_t writes_pending = 0;
  size_t inflight_ops = 0;
  kj::Own<kj::PromiseFulfiller<void>> close;  // fulfil to drop the connection
  kj::Own<kj::PromiseFulfiller<void>> resume_reading;  // set while reading is paused
  int64_t paused_since_ms = 0;  // reading paused behind a stuck write: not the peer's time
  // Past this many unfinished questions, nothing more is read from the connection: the
  // sweeper closes it. (Reading on until the sweep let a fast client put thousands more
  // past the limit.)
  int64_t unfinished_max = INT64_MAX;
  // What the connection may do (cluster/roles.hpp): admin on a node without --tokens;
  // with them, none until it logs in.
  role granted = role::admin;
};
using connection_ptr = std::shared_ptr<connection_state>;

// The socket of one connection, watched: what it reads (for the timeouts) and what it
// cannot write. While an answer waits for the client to read, no more requests are
// read from it, so a client that never reads cannot make the node queue answers.
class watched_stream final : public forwarding_stream {
public:
  watched_stream(kj::Own<kj::AsyncIoStream> inner, connection_ptr state)
    : forwarding_stream(kj::mv(inner)), state_(std::move(state)) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    if (state_->frames.unfinished() > state_->unfinished_max) return kj::Promise<size_t>(kj::NEVER_DONE);
    if (state_->writes_pending > 0) {
      auto paf = kj::newPromiseAndFulfiller<void>();
      state_->resume_reading = kj::mv(paf.fulfiller);
      state_->paused_since_ms = steady_ms();
      return paf.promise.then(
        [this, buffer, min_bytes, max_bytes] { return tryRead(buffer, min_bytes, max_bytes); });
    }
    return inner_->tryRead(buffer, min_bytes, max_bytes).then([this, buffer](size_t n) {
      state_->frames.take(static_cast<const kj::byte*>(buffer), n, steady_ms());
      // Fails the read that brought the segment table, before Cap'n Proto allocates the
      // body; the peer is told why (an RPC Abort) and the connection closes.
      if (auto bytes = state_->frames.refused_frame_bytes())
        kj::throwFatalException(KJ_EXCEPTION(OVERLOADED, "frame refused: the node is reading too many large frames "
                                                         "at once (--read-budget-mb); retry later",
                                             bytes));
      return n;
    });
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return watch(inner_->write(buffer, size));
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return watch(inner_->write(pieces));
  }

private:
  kj::Promise<void> watch(kj::Promise<void> written) {
    if (state_->writes_pending++ == 0) state_->write_started_ms = steady_ms();
    return written.attach(kj::defer([state = state_] {
      if (--state->writes_pending > 0) return;
      state->write_started_ms = 0;
      if (state->resume_reading) {
        // The time reading was paused is the node's, not the peer's: a frame begun
        // before the pause gets it back.
        if (state->paused_since_ms != 0) state->frames.paused_for(steady_ms() - state->paused_since_ms);
        state->paused_since_ms = 0;
        auto resume = kj::mv(state->resume_reading);
        resume->fulfill();
      }
    }));
  }

  connection_ptr state_;
};

}  // namespace holdfast::net
