// Inventory commands against a running node: sku create/show, reserve, confirm,
// release, hold show, restock, adjust.
#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <iostream>

#include "cli/commands.hpp"
#include "client/client.hpp"
#include "client/cluster_file.hpp"

namespace holdfast::cli {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) {
  // Names come from users: never let an encoding problem turn into a failed command.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// When a hold's deadline falls, from now: "in 14m59s", "2m3s ago".
std::string from_now(int64_t unix_ms) {
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch()).count();
  auto left_s = (unix_ms - now_ms) / 1000;
  return left_s < 0 ? span_text(-left_s) + " ago" : "in " + span_text(left_s);
}

json to_json(const hold_info& h) {
  return {{"hold", h.hold_id},     {"sku", h.sku},
          {"qty", h.qty},          {"state", to_string(h.state)},
          {"deadline_ms", h.deadline_ms}, {"deadline", utc_text(h.deadline_ms)}};
}

json to_json(const sku_info& s) {
  return {{"sku", s.sku},           {"on_hand", s.on_hand},   {"reserved", s.reserved},
          {"available", s.available()}, {"price", s.price_cents}, {"sold", s.sold},
          {"stocked", s.stocked},   {"written_off", s.written_off},
          {"active_holds", s.active_holds}, {"title", s.title}, {"limit_per_user", s.limit_per_user}};
}

int print(const hold_result& r, bool as_json, const char* verb) {
  bool has_hold = r.status == code::ok || r.status == code::hold_expired ||
                  r.status == code::hold_conflict || r.status == code::wrong_state;
  if (as_json) {
    json j{{"status", to_string(r.status)}};
    if (has_hold) j.update(to_json(r.hold));
    if (r.status == code::out_of_stock || r.status == code::limit_reached) j["available"] = r.available;
    if (!r.message.empty()) j["error"] = r.message;
    std::cout << dump(j) << "\n";
  } else if (r.status == code::ok) {
    std::cout << verb << " hold " << r.hold.hold_id << ": " << r.hold.qty << " x " << r.hold.sku
              << ", state " << to_string(r.hold.state);
    if (r.hold.state == hold_state::active)
      std::cout << ", until " << utc_text(r.hold.deadline_ms) << " (" << from_now(r.hold.deadline_ms) << ")";
    std::cout << "\n";
  } else {
    std::cerr << to_string(r.status);
    if (r.status == code::out_of_stock) std::cerr << ": " << r.available << " available";
    if (r.status == code::limit_reached) std::cerr << ": " << r.available << " more for this user";
    if (has_hold)
      std::cerr << ": hold " << r.hold.hold_id << " on " << r.hold.sku << " is "
                << to_string(r.hold.state) << " (qty " << r.hold.qty << ")";
    if (!r.message.empty()) std::cerr << ": " << r.message;
    std::cerr << "\n";
  }
  return exit_code(r.status);
}

int print(const sku_result& r, bool as_json) {
  bool has_sku = r.status == code::ok || r.status == code::sku_exists ||
                 r.status == code::insufficient;
  if (as_json) {
    json j{{"status", to_string(r.status)}};
    if (has_sku) j.update(to_json(r.sku));
    if (!r.message.empty()) j["error"] = r.message;
    std::cout << dump(j) << "\n";
  } else if (r.status == code::ok) {
    const auto& s = r.sku;
    std::cout << s.sku << ": on_hand " << s.on_hand << ", reserved " << s.reserved
              << ", available " << s.available() << ", price " << s.price_cents
              << " cents, sold " << s.sold << ", active holds " << s.active_holds
              << (s.title.empty() ? "" : ", title \"" + s.title + "\"") << "\n";
  } else {
    std::cerr << to_string(r.status) << (r.message.empty() ? "" : ": " + r.message) << "\n";
  }
  return exit_code(r.status);
}

// A refusal that names nothing says what it is about ("unknown_sku: no SKU 'tee'").
sku_result about(sku_result r, const std::string& sku) {
  if (r.status == code::unknown_sku && r.message.empty()) r.message = "no SKU '" + sku + "'";
  return r;
}
hold_result about(hold_result r, const std::string& sku, const std::string& hold) {
  if (!r.message.empty()) return r;
  if (r.status == code::unknown_sku) r.message = "no SKU '" + sku + "'";
  if (r.status == code::unknown_hold) r.message = "no hold '" + hold + "'" + (sku.empty() ? "" : " on SKU '" + sku + "'");
  return r;
}

// One page of an SKU's holds (`hold list`).
int print_holds(const sku_result& r, bool as_json, const context& ctx) {
  if (r.status != code::ok) return print(r, as_json);
  if (as_json) {
    json list = json::array();
    for (auto& h : r.holds) list.push_back(to_json(h));
    std::cout << dump({{"status", "ok"}, {"sku", to_json(r.sku)}, {"holds", list}, {"next", r.next}}) << "\n";
    return 0;
  }
  for (auto& h : r.holds) {
    std::cout << h.hold_id << "\t" << to_string(h.state) << "\t" << h.qty << "\t";
    if (h.state == hold_state::active)
      std::cout << "until " << utc_text(h.deadline_ms) << " (" << from_now(h.deadline_ms) << ")";
    else
      std::cout << "deadline " << utc_text(h.deadline_ms);
    std::cout << "\n";
  }
  if (r.holds.empty()) std::cerr << "no holds" << (r.next.empty() ? "" : " in this page") << "\n";
  if (!r.next.empty()) std::cout << "# more: --after " << r.next << "\n";
  return 0;
}

struct arguments {
  std::string sku, hold_id, title, user, state;
  uint32_t limit = hold_list_limit_default;
  int64_t ttl_ms = 15 * 60'000;
  int64_t stock = 0, price = 0, qty = 0, limit_per_user = 0;
  sku_list_query list;
  bool partial_ok = false;
};

// One page of the catalog. A page missing members
// fails unless `partial_ok`: a storefront that pages on would skip their SKUs for good.
int print(const sku_page& page, bool as_json, bool partial_ok, const context& ctx) {
  if (!page.invalid.empty()) return fail(ctx, refusal_status(page.invalid, "invalid"), page.invalid);
  if (!page.partial.empty() && !partial_ok)
    return fail(ctx, "unavailable", "some members could not be asked (--partial lists the rest): " + page.partial);
  if (as_json) {
    json list = json::array();
    for (auto& s : page.skus) list.push_back(to_json(s));
    json j{{"status", "ok"}, {"skus", list}, {"next", page.next}};
    if (!page.partial.empty()) j["partial"] = page.partial;
    std::cout << dump(j) << "\n";
    return 0;
  }
  for (auto& s : page.skus)
    std::cout << s.sku << "\t" << s.available() << " available\t" << s.price_cents << " cents\t"
              << s.title << "\n";
  if (!page.next.empty()) std::cout << "# more: --after " << page.next << "\n";
  if (!page.partial.empty()) std::cerr << "partial: " << page.partial << "\n";
  return 0;
}

}  // namespace

int exit_code(code c) {
  if (c == code::ok) return 0;
  if (c == code::invalid || c == code::unavailable || c == code::outcome_unknown) return exit_usage;
  return exit_refused;
}

client_options connection_options(const context& ctx, const cluster_config* cfg) {
  client_options options;
  options.call_timeout_ms = ctx.timeout_ms;
  options.tls_ca = ctx.tls_ca;
  options.tls_cert = ctx.tls_cert;
  options.tls_key = ctx.tls_key;
  options.token = ctx.token;
  if (cfg) cluster_tls_defaults(options, *cfg);
  return options;
}

int with_node(const context& ctx, bool mutation, const std::function<int(blocking_client&)>& call) {
  auto options = connection_options(ctx);
  // A malformed address is a usage error, said before anything is dialled (not KJ's
  // "connection refused" or "expected port < 65536").
  if (auto why = address_problem(ctx.node_address); !why.empty())
    return fail(ctx, "invalid", "--node " + ctx.node_address + ": " + why);
  std::unique_ptr<blocking_client> c;
  try {
    c = std::make_unique<blocking_client>(ctx.node_address, options);
  } catch (const std::exception& e) {
    std::string why = e.what();
    if (why.find("forbidden: login refused") != std::string::npos) return fail(ctx, "forbidden", why);
    return fail(ctx, "unreachable", e.what());
  }
  try {
    return call(*c);
  } catch (const kj::Exception& e) {
    auto [status, why] = failed_call(e, !mutation, "node " + ctx.node_address);
    if (status == code::unavailable) return fail(ctx, "unavailable", why);
    return fail(ctx, "outcome_unknown", why + " (retry with the same hold id)");
  }
}

void on_node(CLI::App* cmd, context& ctx, bool mutation, std::function<int(blocking_client&)> call) {
  cmd->callback([&ctx, mutation, call] {
    ctx.action = [&ctx, mutation, call] { return with_node(ctx, mutation, call); };
  });
}

void add_inventory_commands(CLI::App& app, context& ctx) {
  auto a = std::make_shared<arguments>();
  auto on = [&ctx](CLI::App* cmd, bool mutation, std::function<int(blocking_client&)> call) {
    on_node(cmd, ctx, mutation, std::move(call));
  };

  auto* sku_cmd = app.add_subcommand("sku", "create, show or list SKUs");
  sku_cmd->require_subcommand(1);
  auto* sku_create = sku_cmd->add_subcommand("create", "create an SKU");
  sku_create->add_option("SKU", a->sku)->required();
  sku_create->add_option("--stock", a->stock, "units on hand")->required();
  sku_create->add_option("--price", a->price, "price in cents")->required();
  sku_create->add_option("--title", a->title, "what a storefront shows (free text)");
  sku_create->add_option("--limit-per-user", a->limit_per_user,
                         "units one user may hold and buy in all (reserves must then name --user)");
  on(sku_create, true, [a, &ctx](blocking_client& c) {
    return print(c.create_sku(a->sku, a->stock, a->price, a->title, a->limit_per_user), ctx.as_json);
  });
  auto* sku_list = sku_cmd->add_subcommand(
    "list", "page through the catalog with availability, from every member, in SKU order");
  sku_list->add_option("--prefix", a->list.prefix, "only SKUs whose names start with it");
  sku_list->add_option("--after", a->list.after, "only SKUs after this name (the last page's 'next')");
  sku_list->add_option("--limit", a->list.limit, "at most this many (1..1000)")
    ->default_val(sku_list_limit_default);
  sku_list->add_flag("--partial", a->partial_ok,
                     "print what the reachable members have when some cannot be asked");
  on(sku_list, false, [a, &ctx](blocking_client& c) {
    if (a->list.limit == 0) return fail(ctx, "invalid", "--limit must be within 1..1000");
    return print(c.list_skus(a->list), ctx.as_json, a->partial_ok, ctx);
  });
  auto* sku_show = sku_cmd->add_subcommand("show", "show an SKU");
  sku_show->add_option("SKU", a->sku)->required();
  on(sku_show, false,
     [a, &ctx](blocking_client& c) { return print(about(c.query_sku(a->sku), a->sku), ctx.as_json); });

  // `holdfast status`: what any node says of itself (a single node or a cluster member).
  auto* status_cmd = app.add_subcommand("status", "what the node says of itself: version, uptime, calls, links");
  on(status_cmd, false, [&ctx](blocking_client& c) {
    auto s = c.status();
    auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
    auto up_s = s.started_ms > 0 ? std::max<int64_t>(0, (now_ms - s.started_ms) / 1000) : 0;
    if (ctx.as_json) {
      json links = json::array();
      for (auto& l : s.links)
        links.push_back({{"node", l.node}, {"state", l.state}, {"detail", l.detail}, {"rtt_us", l.rtt_us},
                         {"since", utc_text(l.since_ms)}, {"since_ms", l.since_ms}, {"forwarded", l.forwarded},
                         {"downs", l.downs}});
      std::cout << dump({{"status", "ok"},
                         {"address", ctx.node_address},
                         {"version", s.version},
                         {"node_id", s.node_id},
                         {"cluster", s.cluster},
                         {"serving", s.not_serving.empty()},
                         {"not_serving", s.not_serving},
                         {"started", utc_text(s.started_ms)},
                         {"started_ms", s.started_ms},
                         {"uptime_s", up_s},
                         {"calls_total", s.calls_total},
                         {"calls_per_second", s.calls_per_second},
                         {"skus_active", s.skus_active},
                         {"forwarded_total", s.forwarded_total},
                         {"generation", s.generation},
                         {"links", links}})
                << "\n";
      return 0;
    }
    std::cout << "node " << ctx.node_address << ": "
              << (s.node_id == 0 ? std::string("a single node")
                                 : "member " + std::to_string(s.node_id) + " of cluster '" + s.cluster + "'")
              << ", Holdfast " << (s.version.empty() ? "(version not said)" : s.version) << ", "
              << (s.not_serving.empty() ? "serving" : "NOT SERVING: " + s.not_serving) << "\n"
              << "up " << span_text(up_s) << " (since " << utc_text(s.started_ms) << "); " << s.calls_total
              << " operations, " << static_cast<int64_t>(s.calls_per_second) << "/s now; " << s.skus_active
              << " SKU actors in memory\n";
    for (auto& l : s.links)
      std::cout << "  link to node " << l.node << ": " << l.state
                << (l.state == "up" ? ", rtt " + std::to_string(l.rtt_us) + " us" : ", " + l.detail) << ", since "
                << utc_text(l.since_ms) << "; " << l.forwarded << " operations forwarded, " << l.downs << " downs\n";
    return 0;
  });

  auto* reserve_cmd = app.add_subcommand("reserve", "hold units of an SKU");
  reserve_cmd->add_option("SKU", a->sku)->required();
  reserve_cmd->add_option("QTY", a->qty)->required();
  reserve_cmd->add_option("--hold", a->hold_id, "hold id (idempotency key)")->required();
  add_duration_ms(reserve_cmd, "--ttl", a->ttl_ms, "how long the hold lasts", request_limits{}.hold_ttl_min_ms,
                  request_limits{}.hold_ttl_max_ms);
  reserve_cmd->add_option("--user", a->user, "who buys (an SKU with a per-user limit needs it)");
  on(reserve_cmd, true, [a, &ctx](blocking_client& c) {
    return print(about(c.reserve(a->sku, a->qty, a->hold_id, a->ttl_ms, a->user), a->sku, a->hold_id), ctx.as_json,
                 "reserved");
  });

  auto* confirm_cmd = app.add_subcommand("confirm", "turn a hold into a sale");
  confirm_cmd->add_option("HOLD", a->hold_id)->required();
  confirm_cmd->add_option("--sku", a->sku, "the hold's SKU (saves a lookup)");
  on(confirm_cmd, true, [a, &ctx](blocking_client& c) {
    return print(about(c.confirm(a->hold_id, a->sku), a->sku, a->hold_id), ctx.as_json, "confirmed");
  });
  auto* release_cmd = app.add_subcommand("release", "give a hold's units back");
  release_cmd->add_option("HOLD", a->hold_id)->required();
  release_cmd->add_option("--sku", a->sku, "the hold's SKU (saves a lookup)");
  on(release_cmd, true, [a, &ctx](blocking_client& c) {
    return print(about(c.release(a->hold_id, a->sku), a->sku, a->hold_id), ctx.as_json, "released");
  });
  auto* extend_cmd = app.add_subcommand("extend", "make a hold last at least --ttl from now");
  extend_cmd->add_option("HOLD", a->hold_id)->required();
  add_duration_ms(extend_cmd, "--ttl", a->ttl_ms, "the hold lasts at least this long from now",
                  request_limits{}.hold_ttl_min_ms,
                  request_limits{}.hold_ttl_max_ms)
    ->required();
  extend_cmd->add_option("--sku", a->sku, "the hold's SKU (saves a lookup)");
  on(extend_cmd, true, [a, &ctx](blocking_client& c) {
    return print(about(c.extend(a->hold_id, a->ttl_ms, a->sku), a->sku, a->hold_id), ctx.as_json, "extended");
  });

  auto* hold_cmd = app.add_subcommand("hold", "inspect holds");
  hold_cmd->require_subcommand(1);
  auto* hold_show = hold_cmd->add_subcommand("show", "show a hold");
  hold_show->add_option("HOLD", a->hold_id)->required();
  hold_show->add_option("--sku", a->sku, "the hold's SKU");
  on(hold_show, false, [a, &ctx](blocking_client& c) {
    return print(about(c.query_hold(a->hold_id, a->sku), a->sku, a->hold_id), ctx.as_json, "");
  });
  auto* hold_list = hold_cmd->add_subcommand(
    "list", "page through an SKU's holds in hold-id order: active ones, and finished ones the node still keeps "
            "(admin)");
  hold_list->add_option("SKU", a->sku)->required();
  hold_list->add_option("--state", a->state, "active, finished, confirmed, released, expired or returned (default: any)")
    ->check(CLI::IsMember({"active", "finished", "confirmed", "released", "expired", "returned"}));
  hold_list->add_option("--after", a->hold_id, "only holds after this id (the last page's 'next')");
  hold_list->add_option("--limit", a->limit, "at most this many (1..1000)")->default_val(hold_list_limit_default)
    ->check(CLI::Range(1u, hold_list_limit_max));
  on(hold_list, false, [a, &ctx](blocking_client& c) {
    return print_holds(about(c.list_holds(a->sku, a->state, a->hold_id, a->limit), a->sku), ctx.as_json, ctx);
  });

  auto* price_cmd = sku_cmd->add_subcommand("price", "set an SKU's price (carts see price_changed at checkout)");
  price_cmd->add_option("SKU", a->sku)->required();
  price_cmd->add_option("--price", a->price, "price in cents")->required();
  on(price_cmd, true, [a, &ctx](blocking_client& c) { return print(about(c.set_price(a->sku, a->price), a->sku), ctx.as_json); });
  auto* restock_cmd = app.add_subcommand("restock", "add units to an SKU");
  restock_cmd->add_option("SKU", a->sku)->required();
  restock_cmd->add_option("QTY", a->qty)->required();
  on(restock_cmd, true,
     [a, &ctx](blocking_client& c) { return print(about(c.restock(a->sku, a->qty), a->sku), ctx.as_json); });
  auto* adjust_cmd = app.add_subcommand("adjust", "set an SKU's on-hand count (stock take)");
  adjust_cmd->add_option("SKU", a->sku)->required();
  adjust_cmd->add_option("ON_HAND", a->qty)->required();
  on(adjust_cmd, true,
     [a, &ctx](blocking_client& c) { return print(about(c.adjust(a->sku, a->qty), a->sku), ctx.as_json); });
}

}  // namespace holdfast::cli
