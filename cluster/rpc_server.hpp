// The Cap'n Proto RPC server and its bridge into CAF.
//
// The server runs on its own network thread with a KJ event loop. A call is decoded
// there, handed to the bridge actor with anon_send together with a cross-thread
// fulfiller, and its promise resolves on the network thread when the bridge fulfils it.
// No CAF worker ever blocks on the network and the network thread never blocks on an
// actor. Only this file and rpc_server.cpp see both KJ and CAF.
#pragma once

#include <memory>
#include <string>

#include <caf/actor.hpp>

#include "actors/sku_directory.hpp"

namespace holdfast {

struct server_options {
  std::string listen = "127.0.0.1:7400";
  int64_t request_timeout_ms = 10'000;  // a call not answered by then: outcome_unknown
  size_t inflight_max = 100'000;        // calls in flight; beyond it callers get OVERLOADED
  uint64_t frame_words_max = 4u << 20;  // 32 MiB: larger frames are refused
  request_limits limits;
};

// Spawns the bridge actor that turns directory replies into fulfilled KJ promises.
caf::actor spawn_bridge(caf::actor_system& sys, directory_actor directory,
                        int64_t request_timeout_ms);

class rpc_server {
public:
  rpc_server(caf::actor bridge, server_options options);
  ~rpc_server();
  // Starts the network thread and binds; returns "host:port" or "" with `error` set.
  std::string start(std::string& error);
  // Stops accepting and closes every connection; joins the network thread.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace holdfast
