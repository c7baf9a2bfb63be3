// Who may do what on a node started with --tokens FILE: each bearer token names a role;
// a client connection logs in once (Inventory.login) and its role holds for the
// connection's life. `client` may reserve, confirm, release, extend, query, read the
// catalog and its orders, use carts and check out, and cancel an order; `admin` may do
// that and everything else: create SKUs, restock, adjust, set prices, return sold holds,
// ship and deliver orders, cut links (chaos). A call the role may not make answers
// `forbidden` and changes nothing. Without --tokens every connection is `admin` (as
// before roles existed). Calls forwarded by a peer were checked by the member that took
// them. `status`, `members` and `login` are open to every connection: a client must learn
// the members and log in, and `cluster status` reads the counters without a token.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "protocol/domain.hpp"

namespace holdfast {

enum class order_op_kind : uint8_t;  // protocol/orders.hpp

enum class role : uint8_t { none, client, admin };  // none: not logged in
const char* to_string(role r);

// What each operation needs.
role needed(hold_op_kind k);
role needed(sku_op_kind k);
role needed(order_op_kind k);
inline bool may(role have, role need) { return static_cast<uint8_t>(have) >= static_cast<uint8_t>(need); }
// Why a connection of role `have` may not make a call that needs `need` (the refusal's
// text beside code::forbidden; "forbidden: " goes before it where only text is sent).
std::string forbidden_text(role have, role need);

// The tokens file (TOML): one [[token]] table per token, each with `name`, `role`
// ("admin" or "client") and `sha256` (of the token, hex), so the file holds no token.
// `holdfast token new --role client --name shop-1` prints a token and its entry.
struct token_table {
  struct entry {
    std::string name;
    role granted = role::none;
  };
  std::map<std::string, entry> by_sha256;
  // The token's entry, or null.
  const entry* find(const std::string& token) const;
};
// A token's name: 1..64 of [A-Za-z0-9._-] (it is written into the tokens file and logs).
bool valid_token_name(const std::string& name);
// Reads `path` (a regular file) into `out`; returns why it cannot be used, or "".
std::string load_tokens(const std::string& path, token_table& out);
// A new random token (32 bytes from the kernel, hex).
std::string new_token();

// The role a client certificate grants (a cluster with [tls] client_certs): its common
// name is "admin:<name>" or "client:<name>" (`holdfast cluster cert`); anything else,
// a node's certificate among them, grants none.
role role_of_certificate(const std::string& common_name);

}  // namespace holdfast
