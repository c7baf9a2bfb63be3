// Checkout commands against a running node: cart add|remove|set|show|clear, checkout,
// order show|cancel|ship|deliver|fail-shipping. Any member takes them; a cart lives on
// its user's owner, an order on its id's.
#include <nlohmann/json.hpp>
#include <algorithm>
#include <deque>
#include <map>
#include <sstream>

#include <chrono>
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "client/client.hpp"

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
      for (auto& l : r.cart.lines) lines.push_back({{"sku", l.sku}, {"qty", l.qty}, {"price", l.price_cents}});
      j.update({{"user", r.cart.user}, {"lines", lines}, {"version", r.cart.version},
                {"updated_ms", r.cart.updated_ms}});
    }
    if (!r.message.empty()) j["error"] = r.message;
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else if (r.status == code::ok) {
    std::cout << "cart of " << r.cart.user << ": " << r.cart.lines.size() << " lines (version "
              << r.cart.version << ")\n";
    for (auto& l : r.cart.lines) std::cout << "  " << l.sku << "\t" << l.qty << " x " << l.price_cents << " cents\n";
  } else {
    std::cerr << to_string(r.status) << (r.message.empty() ? "" : ": " + r.message) << "\n";
  }
  return exit_code(r.status);
}

json to_json(const order_record& o) {
  json lines = json::array();
  for (auto& l : o.lines) lines.push_back({{"sku", l.sku}, {"qty", l.qty}, {"price", l.price_cents}});
  return {{"order", o.order_id}, {"user", o.user},     {"state", to_string(o.state)},
          {"step", to_string(o.phase)}, {"lines", lines}, {"total", o.total_cents},
          {"intent", o.intent_id}, {"reason", o.reason}, {"last_error", o.last_error},
          {"created_ms", o.created_ms}, {"updated_ms", o.updated_ms}, {"version", o.version}};
}

// "N" (a single node) or "ID:N,ID:N" (members): where each node's events resume.
bool parse_cursor(const std::string& text, std::map<uint32_t, uint64_t>& out) {
  if (text.empty()) return true;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    // Offsets are unsigned: stoull would wrap "-1" to 2^64-1.
    if (part.empty() || part.find_first_not_of("0123456789:") != std::string::npos) return false;
    auto colon = part.find(':');
    try {
      size_t used = 0;
      if (colon == std::string::npos) {
        out[0] = std::stoull(part, &used);
        if (used != part.size()) return false;
        continue;
      }
      auto id = std::stoul(part.substr(0, colon), &used);
      if (used != colon) return false;
      auto rest = part.substr(colon + 1);
      out[static_cast<uint32_t>(id)] = std::stoull(rest, &used);
      if (used != rest.size()) return false;
    } catch (const std::exception&) {
      return false;
    }
  }
  return true;
}

std::string cursor_text(const std::map<uint32_t, uint64_t>& cursor) {
  std::string out;
  for (auto& [id, next] : cursor) {
    if (!out.empty()) out += ",";
    out += id == 0 ? std::to_string(next) : std::to_string(id) + ":" + std::to_string(next);
  }
  return out;
}

// Calls that are not routed (order events, order list) go to every member: the node
// named by --node says who they are (itself alone outside a cluster). 0, or an exit code.
int members_of(const context& ctx, std::vector<member_address>& members) {
  auto got = with_node(ctx, false, [&](blocking_client& c) {
    members = c.members();
    return 0;
  });
  if (got == 0 && members.empty()) members.push_back({0, ctx.node_address});
  return got;
}

// Asks one member; empty when it answered, else why it could not be asked.
std::string ask_member(const context& ctx, const member_address& m, const std::function<void(blocking_client&)>& f) {
  auto options = connection_options(ctx);
  try {
    blocking_client c(m.client, options);
    f(c);
    return {};
  } catch (const std::exception& e) {
    return "node " + std::to_string(m.id) + " (" + m.client + "): " + e.what();
  } catch (const kj::Exception& e) {
    return "node " + std::to_string(m.id) + " (" + m.client + "): " + e.getDescription().cStr();
  }
}

// Every member's order events from the cursor on, merged by time within each round;
// with `follow`, polls for more until interrupted. At least once: a consumer that keeps
// the cursor printed last resumes without a gap (and may see an event again).
// A member that cannot be read is not asked again (without --follow: each try would wait
// the call timeout), and the run ends with exit 2 and the cursor to resume from, unless
// `partial_ok`: a consumer must not take a run that skipped a member for everything.
int order_events(const context& ctx, const std::string& from, uint32_t limit, bool follow, bool partial_ok) {
  std::map<uint32_t, uint64_t> cursor;
  if (!parse_cursor(from, cursor)) return fail(ctx, "invalid", "--from: N, or ID:N,ID:N (as `next` printed it)");
  std::vector<member_address> members;
  if (auto got = members_of(ctx, members); got != 0) return got;
  std::map<uint32_t, std::string> unread;  // member -> why
  for (;;) {
    std::map<uint32_t, std::deque<order_event>> pages;
    bool more = false;
    for (auto& m : members) {
      if (!follow && unread.count(m.id)) continue;
      auto& next = cursor[m.id];
      auto why = ask_member(ctx, m, [&](blocking_client& c) {
        auto page = c.order_events(std::max<uint64_t>(next, 1), limit);
        if (!page.error.empty()) {
          unread[m.id] = "node " + std::to_string(m.id) + ": " + page.error;
          std::cerr << unread[m.id] << "\n";
          return;
        }
        unread.erase(m.id);
        more |= page.events.size() >= limit;
        auto& mine = pages[m.id];
        for (auto& e : page.events) mine.push_back(std::move(e));
        next = page.next;
      });
      if (!why.empty()) {
        unread[m.id] = why;
        std::cerr << why << ": not read this round\n";
      }
    }
    // Merged by time, each node's events kept in their own order (by seq): the next
    // printed is the earliest of the nodes' next events.
    std::vector<std::pair<uint32_t, order_event>> round;
    for (;;) {
      std::deque<order_event>* earliest = nullptr;
      uint32_t from_node = 0;
      for (auto& [node, q] : pages)
        if (!q.empty() && (!earliest || q.front().order.updated_ms < earliest->front().order.updated_ms)) {
          earliest = &q;
          from_node = node;
        }
      if (!earliest) break;
      round.emplace_back(from_node, std::move(earliest->front()));
      earliest->pop_front();
    }
    for (auto& [node, e] : round) {
      auto& o = e.order;
      if (ctx.as_json) {
        auto j = to_json(o);
        j["node"] = node;
        j["seq"] = e.seq;
        std::cout << j.dump() << "\n";
      } else {
        std::cout << node << ":" << e.seq << "\t" << o.order_id << "\t" << o.user << "\t" << to_string(o.state)
                  << (o.phase == saga_phase::done ? "" : std::string(" (") + to_string(o.phase) + ")") << "\t"
                  << o.total_cents << "\n";
      }
    }
    std::cout.flush();
    if (!follow && !more) break;
    if (!more) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  std::string partial;
  for (auto& [id, why] : unread) partial += (partial.empty() ? "" : "; ") + why;
  if (ctx.as_json) {
    json j{{"next", cursor_text(cursor)}};
    if (!partial.empty()) j["partial"] = partial;
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    std::cout << "# next: --from " << cursor_text(cursor) << "\n";
  }
  if (!partial.empty() && !partial_ok)
    return fail(ctx, "unavailable", "some members' events were not read (resume from next; --partial accepts): " + partial);
  return 0;
}

// One page of orders from every member, merged in id order (every page with --all). A
// member that cannot be asked fails the page unless `partial_ok`: a consumer paging on
// would skip its orders for good.
int order_list(const context& ctx, order_list_query query, bool all, bool partial_ok) {
  if (auto why = validate(query); !why.empty()) return fail(ctx, "invalid", why);
  std::vector<member_address> members;
  if (auto got = members_of(ctx, members); got != 0) return got;
  json listed = json::array();
  std::map<uint32_t, std::string> unreachable;  // asked once per run: each try waits the call timeout
  auto partial_text = [&] {
    std::string out;
    for (auto& [id, why] : unreachable) out += (out.empty() ? "" : "; ") + why;
    return out;
  };
  for (;;) {
    std::vector<order_page> pages;
    for (auto& m : members) {
      if (unreachable.count(m.id)) continue;
      order_page page;
      auto why = ask_member(ctx, m, [&](blocking_client& c) { page = c.list_orders(query); });
      if (!why.empty()) {
        unreachable[m.id] = why;
        continue;
      }
      // Queries were validated here: what a node refuses now is its storage.
      if (!page.error.empty())
        return fail(ctx, refusal_status(page.error, "unavailable"), "node " + std::to_string(m.id) + ": " + page.error);
      pages.push_back(std::move(page));
    }
    if (!unreachable.empty() && !partial_ok)
      return fail(ctx, "unavailable", "some members could not be asked (--partial lists the rest): " + partial_text());
    auto merged = merge_order_pages(std::move(pages), query.limit);
    for (auto& o : merged.orders) {
      if (ctx.as_json) {
        listed.push_back(to_json(o));
        continue;
      }
      std::cout << o.order_id << "\t" << o.user << "\t" << to_string(o.state)
                << (o.phase == saga_phase::done ? "" : std::string(" (") + to_string(o.phase) + ")") << "\t"
                << o.total_cents << " cents\t" << o.lines.size() << (o.lines.size() == 1 ? " line" : " lines") << "\n";
    }
    query.after = merged.next;
    if (!all || merged.next.empty()) break;
  }
  auto partial = partial_text();
  if (ctx.as_json) {
    json j{{"status", "ok"}, {"orders", listed}, {"next", query.after}};
    if (!partial.empty()) j["partial"] = partial;
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    if (!query.after.empty()) std::cout << "# more: --after " << query.after << "\n";
    if (!partial.empty()) std::cerr << "partial: " << partial << "\n";
  }
  return 0;
}

void print_order(const order_record& o) {
  std::cout << "order " << o.order_id << " of " << o.user << ": " << to_string(o.state)
            << (o.phase == saga_phase::done ? "" : std::string(" (") + to_string(o.phase) + " step)")
            << ", total " << o.total_cents << " cents\n";
  for (auto& l : o.lines) std::cout << "  " << l.sku << "\t" << l.qty << " x " << l.price_cents << " cents\n";
  if (!o.reason.empty()) std::cout << "  reason: " << o.reason << "\n";
  if (!o.last_error.empty()) std::cout << "  last error: " << o.last_error << "\n";
}

int print(const order_result& r, const context& ctx) {
  if (ctx.as_json) {
    json j{{"status", to_string(r.status)}};
    if (r.status == code::ok || r.status == code::wrong_state) j.update(to_json(r.order));
    if (!r.message.empty()) j["error"] = r.message;
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else if (r.status == code::ok) {
    print_order(r.order);
  } else {
    std::cerr << to_string(r.status) << (r.message.empty() ? "" : ": " + r.message) << "\n";
  }
  return exit_code(r.status);
}

bool finished(const order_record& o) { return o.phase == saga_phase::done; }

struct order_arguments {
  std::string user, card, key, order_id, reason;
  int64_t wait_s = 0;
};

}  // namespace

void add_cart_commands(CLI::App& app, context& ctx) {
  auto o = std::make_shared<order_arguments>();
  auto* checkout = app.add_subcommand("checkout", "turn the user's cart into an order (the saga runs on)");
  checkout->add_option("USER", o->user)->required();
  checkout->add_option("--card", o->card, "card token (tok_visa; tok_decline is always declined)")->required();
  checkout->add_option("--key", o->key, "idempotency key: the same key, the same order")->required();
  checkout->add_option("--wait", o->wait_s, "wait up to this many seconds for the order to finish");
  on_node(checkout, ctx, true, [o, &ctx](blocking_client& c) {
    auto r = c.checkout(o->user, o->card, o->key);
    if (r.status != code::ok) return fail(ctx, to_string(r.status), r.message);
    if (r.empty_cart) {
      if (ctx.as_json) std::cout << json{{"status", "empty_cart"}}.dump() << "\n";
      else std::cerr << "empty_cart: the cart of " << o->user << " has no lines\n";
      return exit_refused;
    }
    if (!r.changed.empty()) {
      json lines = json::array();
      for (auto& l : r.changed)
        lines.push_back({{"sku", l.sku}, {"qty", l.qty}, {"price", l.price_cents}, {"available", l.available},
                         {"problem", l.problem}, {"cart_price", l.cart_price_cents}});
      if (ctx.as_json) {
        std::cout << json{{"status", "changed"}, {"lines", lines}}.dump(-1, ' ', false, json::error_handler_t::replace)
                  << "\n";
      } else {
        std::cerr << "changed: nothing was ordered; these lines cannot be bought as they are:\n";
        for (auto& l : r.changed)
          if (!l.problem.empty())
            std::cerr << "  " << l.sku << ": " << l.problem << " (" << l.available << " available, "
                      << l.price_cents << " cents now, " << l.cart_price_cents << " in the cart)\n";
      }
      return exit_refused;
    }
    order_result shown{code::ok, {}, r.order};
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o->wait_s);
    while (o->wait_s > 0 && !finished(shown.order) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      auto again = c.order(order_op_on(order_op_kind::show, r.order.order_id));
      if (again.status == code::ok) shown = again;
    }
    auto status = print(shown, ctx);
    // Waited for an order that ended cancelled: refused, as a declined card is.
    return status == 0 && o->wait_s > 0 && shown.order.state == order_state::cancelled ? exit_refused : status;
  });

  auto* order = app.add_subcommand("order", "show, list, cancel, ship or deliver orders; follow their events");
  order->require_subcommand(1);
  auto op = [o, &ctx](CLI::App* cmd, order_op_kind kind) {
    cmd->add_option("ORDER", o->order_id)->required();
    on_node(cmd, ctx, kind != order_op_kind::show, [o, &ctx, kind](blocking_client& c) {
      return print(c.order(order_op_on(kind, o->order_id, o->reason)), ctx);
    });
  };
  op(order->add_subcommand("show", "the order's state, lines and why it ended as it did"), order_op_kind::show);
  op(order->add_subcommand("cancel", "cancel before capture: holds released, authorization voided"),
     order_op_kind::cancel);
  op(order->add_subcommand("ship", "a captured order left the warehouse"), order_op_kind::ship);
  op(order->add_subcommand("deliver", "a shipped order arrived"), order_op_kind::deliver);
  struct list_arguments {
    order_list_query query;
    bool all = false, partial = false;
  };
  auto ls = std::make_shared<list_arguments>();
  ls->query.limit = order_list_limit_default;
  auto* list = order->add_subcommand("list", "orders of every member in id order: all, one user's, one state's");
  list->add_option("--user", ls->query.user, "only this user's orders");
  list->add_option("--state", ls->query.state,
                   "only orders in this state (placed ... delivered, cancelled, refunded), or 'active' "
                   "for every order whose saga still runs");
  list->add_option("--after", ls->query.after, "only orders after this id (the last page's 'next')");
  list->add_option("--limit", ls->query.limit, "at most this many per page")
    ->check(CLI::Range(1u, order_list_limit_max))
    ->capture_default_str();
  list->add_flag("--all", ls->all, "every page, not just the first");
  list->add_flag("--partial", ls->partial, "list what the reachable members have when some cannot be asked");
  list->callback([&ctx, ls] {
    ctx.action = [&ctx, ls] { return order_list(ctx, ls->query, ls->all, ls->partial); };
  });

  auto* failed = order->add_subcommand("fail-shipping", "shipping failed: units restocked, payment refunded");
  failed->add_option("--reason", o->reason, "why");
  op(failed, order_op_kind::shipping_failed);
  struct events_arguments {
    std::string from;
    uint32_t limit = 500;
    bool follow = false, partial = false;
  };
  auto ev = std::make_shared<events_arguments>();
  auto* events = order->add_subcommand("events", "every order transition of every member, from an offset");
  events->add_option("--from", ev->from, "resume here: `next` as printed last (ID:N,ID:N; N for a single node)");
  events->add_option("--limit", ev->limit, "events per member per page")->check(CLI::Range(1u, 1000u))->capture_default_str();
  events->add_flag("--follow", ev->follow, "keep polling for new events (Ctrl-C stops)");
  events->add_flag("--partial", ev->partial, "exit 0 even when some members could not be read (their cursor stays)");
  events->callback([&ctx, ev] {
    ctx.action = [&ctx, ev] { return order_events(ctx, ev->from, ev->limit, ev->follow, ev->partial); };
  });

  auto a = std::make_shared<cart_arguments>();
  auto* cart = app.add_subcommand("cart", "a user's cart: add, remove, set, show, clear");
  cart->require_subcommand(1);
  auto run = [a, &ctx](CLI::App* cmd, cart_op_kind kind) {
    on_node(cmd, ctx, kind != cart_op_kind::view, [a, &ctx, kind](blocking_client& c) {
      return print(c.cart({kind, a->user, a->sku, a->qty, 0, 0, {}}), ctx);
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
