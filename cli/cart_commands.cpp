// Cart commands against a running node: cart add|remove|set|show|clear. Any member takes
// them; the cart lives on its user's owner.
#include <nlohmann/json.hpp>

#include <iostream>

#include "cli/commands.hpp"
#include "cluster/client.hpp"

namespace holdfast::cli {
namespace {

using json = nlohmann::json;

struct cart_arguments {
  std::string user, sku;
  int64_t qty = 1;
};

int print(const cart_result& r, const context& ctx) {
  if (ctx.as_json) {
    json j{{"status", to_string(r.status)}};
    if (r.status == code::ok) {
      json lines = json::array();
      for (auto& l : r.cart.lines) lines.push_back({{"sku", l.sku}, {"qty", l.qty}});
      j.update({{"user", r.cart.user}, {"lines", lines}, {"version", r.cart.version},
                {"updated_ms", r.cart.updated_ms}});
    }
    if (!r.message.empty()) j["error"] = r.message;
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else if (r.status == code::ok) {
    std::cout << "cart of " << r.cart.user << ": " << r.cart.lines.size() << " lines (version "
              << r.cart.version << ")\n";
    for (auto& l : r.cart.lines) std::cout << "  " << l.sku << "\t" << l.qty << "\n";
  } else {
    std::cerr << to_string(r.status) << (r.message.empty() ? "" : ": " + r.message) << "\n";
  }
  return exit_code(r.status);
}

}  // namespace

void add_cart_commands(CLI::App& app, context& ctx) {
  auto a = std::make_shared<cart_arguments>();
  auto* cart = app.add_subcommand("cart", "a user's cart: add, remove, set, show, clear");
  cart->require_subcommand(1);
  auto run = [a, &ctx](CLI::App* cmd, cart_op_kind kind) {
    on_node(cmd, ctx, kind != cart_op_kind::view, [a, &ctx, kind](blocking_client& c) {
      return print(c.cart({kind, a->user, a->sku, a->qty}), ctx);
    });
  };
  auto* add = cart->add_subcommand("add", "add QTY units of SKU (an existing line grows)");
  add->add_option("USER", a->user)->required();
  add->add_option("SKU", a->sku)->required();
  add->add_option("QTY", a->qty, "units (default 1)");
  run(add, cart_op_kind::add);
  auto* set = cart->add_subcommand("set", "set the line of SKU to QTY units (0 removes it)");
  set->add_option("USER", a->user)->required();
  set->add_option("SKU", a->sku)->required();
  set->add_option("QTY", a->qty)->required();
  run(set, cart_op_kind::set);
  auto* remove = cart->add_subcommand("remove", "remove the line of SKU");
  remove->add_option("USER", a->user)->required();
  remove->add_option("SKU", a->sku)->required();
  run(remove, cart_op_kind::remove);
  auto* show = cart->add_subcommand("show", "show the cart");
  show->add_option("USER", a->user)->required();
  run(show, cart_op_kind::view);
  auto* clear = cart->add_subcommand("clear", "remove every line");
  clear->add_option("USER", a->user)->required();
  run(clear, cart_op_kind::clear);
}

}  // namespace holdfast::cli
