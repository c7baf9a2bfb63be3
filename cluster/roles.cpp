#include "cluster/roles.hpp"

#include <toml++/toml.h>

#include <set>

#include "protocol/orders.hpp"
#include "client/cluster_file.hpp"
#include "cluster/toml_file.hpp"
#include "protocol/limits.hpp"

namespace holdfast {

const char* to_string(role r) {
  switch (r) {
    case role::none: return "none";
    case role::client: return "client";
    case role::admin: return "admin";
  }
  return "none";
}

role needed(hold_op_kind k) {
  // Giving a sold unit back is a refund's, the shop's: not a buyer's.
  return k == hold_op_kind::return_hold ? role::admin : role::client;
}

role needed(sku_op_kind k) { return k == sku_op_kind::query ? role::client : role::admin; }

role needed(order_op_kind k) {
  switch (k) {
    case order_op_kind::show:
    case order_op_kind::cancel: return role::client;
    default: return role::admin;  // fulfilment (ship, deliver, shipping failed); place and
                                  // payment events are a member's, never a client's
  }
}

std::string forbidden_text(role have, role need) {
  if (have == role::none)
    return std::string("this connection has no role: this node requires a token (log in first: holdfast "
                       "--token, or HOLDFAST_TOKEN) or a client certificate from holdfast cluster cert "
                       "(--tls-cert, --tls-key); this call needs the ") + to_string(need) + " role";
  return std::string("this call needs the ") + to_string(need) + " role; this connection's is " +
         to_string(have);
}

const token_table::entry* token_table::find(const std::string& token) const {
  if (token.empty()) return nullptr;
  auto it = by_sha256.find(sha256_hex(token));
  return it == by_sha256.end() ? nullptr : &it->second;
}

bool valid_token_name(const std::string& name) {
  return !name.empty() && name.size() <= token_name_bytes_max && name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                                      "0123456789._-") == std::string::npos;
}

std::string load_tokens(const std::string& path, token_table& out) {
  toml::table file;
  if (auto why = read_toml_file("--tokens", path, file); !why.empty()) return why;
  auto where = [&](const toml::node& n) { return "--tokens " + path + ":" + std::to_string(n.source().begin.line) + ": "; };
  for (auto& [key, value] : file)
    if (key.str() != "token") return where(value) + "unknown key '" + std::string(key.str()) + "' (expected [[token]] tables)";
  auto* list = file["token"].as_array();
  if (!list || list->empty()) return "--tokens " + path + ": no [[token]] entries";
  std::set<std::string> names;
  for (auto& item : *list) {
    auto* t = item.as_table();
    if (!t) return where(item) + "each token is a [[token]] table";
    for (auto& [key, value] : *t)
      if (key.str() != "name" && key.str() != "role" && key.str() != "sha256")
        return where(value) + "unknown key '" + std::string(key.str()) + "' (name, role, sha256)";
    auto name = (*t)["name"].value<std::string>();
    auto granted = (*t)["role"].value<std::string>();
    auto hash = (*t)["sha256"].value<std::string>();
    if (!name || !valid_token_name(*name))
      return where(item) + "a token needs a name of 1..64 letters, digits, '.', '_' or '-'";
    if (!names.insert(*name).second) return where(item) + "two tokens are named '" + *name + "'";
    if (!granted || (*granted != "admin" && *granted != "client"))
      return where(item) + "token '" + *name + "': role must be \"admin\" or \"client\"";
    if (!hash || hash->size() != 64 || hash->find_first_not_of("0123456789abcdef") != std::string::npos)
      return where(item) + "token '" + *name + "': sha256 must be 64 lowercase hex digits (holdfast token new)";
    if (out.by_sha256.count(*hash)) return where(item) + "token '" + *name + "' repeats another token";
    out.by_sha256[*hash] = {*name, *granted == "admin" ? role::admin : role::client};
  }
  return {};
}

std::string new_token() { return random_hex(32); }

role role_of_certificate(const std::string& common_name) {
  auto colon = common_name.find(':');
  if (colon == std::string::npos || !valid_token_name(common_name.substr(colon + 1))) return role::none;
  auto granted = common_name.substr(0, colon);
  return granted == "admin" ? role::admin : granted == "client" ? role::client : role::none;
}

}  // namespace holdfast
