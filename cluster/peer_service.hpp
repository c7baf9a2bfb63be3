// What a dialing member reaches on a node's peer port (protocol/inventory.capnp's Peer):
// its hello must carry this node's cluster file hash and an id its certificate names,
// and pass the fencing checks (cluster/peer_links.hpp judge_hello); only then does it get the Inventory
// its forwarded calls go to. Network thread only.
#pragma once

#include <memory>
#include <string>

#include "cluster/inventory_service.hpp"

namespace holdfast::net {

// The Peer object of one accepted peer-port connection; `certificate_name` is the common
// name of the dialer's TLS certificate ("" in plaintext).
kj::Own<wire::Peer::Server> make_peer_service(network_context& net, std::shared_ptr<network_context::inbound> in,
                                              std::string certificate_name);

}  // namespace holdfast::net
