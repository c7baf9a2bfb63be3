#include "protocol/domain.hpp"

#include <cstring>

#include "protocol/assert.hpp"

namespace holdfast {

const char* to_string(code c) {
  switch (c) {
    case code::ok: return "ok";
    case code::out_of_stock: return "out_of_stock";
    case code::unknown_sku: return "unknown_sku";
    case code::unknown_hold: return "unknown_hold";
    case code::hold_expired: return "hold_expired";
    case code::hold_conflict: return "hold_conflict";
    case code::wrong_state: return "wrong_state";
    case code::sku_exists: return "sku_exists";
    case code::insufficient: return "insufficient";
    case code::invalid: return "invalid";
    case code::unavailable: return "unavailable";
    case code::storage_full: return "storage_full";
    case code::outcome_unknown: return "outcome_unknown";
    case code::limit_reached: return "limit_reached";
    case code::unknown_order: return "unknown_order";
    case code::forbidden: return "forbidden";
  }
  return "?";
}

const char* to_string(hold_state s) {
  switch (s) {
    case hold_state::active: return "active";
    case hold_state::confirmed: return "confirmed";
    case hold_state::released: return "released";
    case hold_state::expired: return "expired";
    case hold_state::returned: return "returned";
  }
  return "?";
}

namespace {

// Characters that make a name print as something it is not, or as nothing: C1 controls
// (U+0080..U+009F, e.g. the 8-bit CSI a terminal obeys), Unicode spaces and invisible
// formatting (no-break and other spaces, zero-width characters, bidirectional marks,
// overrides and isolates, the byte-order mark, the Arabic letter mark, the combining
// grapheme joiner, Hangul fillers, variation selectors, tag characters and musical
// formatting). Called on valid UTF-8 only.
bool invisible_or_space(uint32_t c) {
  return (c >= 0x80 && c <= 0x9f) || c == 0xa0 || c == 0xad || c == 0x034f || c == 0x061c ||
         c == 0x115f || c == 0x1160 || c == 0x1680 || c == 0x180e || (c >= 0x180b && c <= 0x180f) ||
         (c >= 0x2000 && c <= 0x200f) || (c >= 0x2028 && c <= 0x202f) ||
         (c >= 0x205f && c <= 0x206f) || c == 0x3000 || c == 0x3164 || (c >= 0xfe00 && c <= 0xfe0f) ||
         c == 0xfeff || c == 0xffa0 || (c >= 0xfff9 && c <= 0xfffb) ||
         (c >= 0x1d173 && c <= 0x1d17a) || (c >= 0xe0000 && c <= 0xe0fff);
}

bool has_invisible_controls(const std::string& text) {
  auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    uint32_t c = p[i];
    size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (n > 1) c &= 0xff >> (n + 1);
    for (size_t k = 1; k < n && i + k < text.size(); ++k) c = (c << 6) | (p[i + k] & 0x3f);
    if (invisible_or_space(c)) return true;
    i += n;
  }
  return false;
}

std::string validate_name(const std::string& what, const std::string& value, size_t max) {
  if (value.empty()) return what + " must not be empty";
  if (value.size() > max) return what + " longer than " + std::to_string(max) + " bytes";
  bool ascii = true;
  for (unsigned char ch : value) {
    if (ch < 0x21 || ch == 0x7f) return what + " contains whitespace or control characters";
    ascii = ascii && ch < 0x80;
  }
  // Printable ASCII is valid UTF-8 with nothing invisible in it: most names and every
  // UUID hold id stop here (the two scans below were 2% of the node on the hot path).
  if (ascii) return {};
  if (!valid_utf8(value)) return what + " is not valid UTF-8";
  if (has_invisible_controls(value))
    return what + " contains C1 controls, Unicode spaces or invisible formatting characters";
  return {};
}

// Free text: spaces allowed, control characters and invisible formatting not.
std::string validate_title(const std::string& title) {
  if (title.size() > title_bytes_max)
    return "title longer than " + std::to_string(title_bytes_max) + " bytes";
  for (unsigned char ch : title)
    if (ch < 0x20 || ch == 0x7f) return "title contains control characters";
  if (!valid_utf8(title)) return "title is not valid UTF-8";
  if (has_invisible_controls(title)) return "title contains C1 controls or invisible formatting characters";
  return {};
}

}  // namespace

std::string validate(const sku_list_query& q) {
  if (q.limit > sku_list_limit_max)
    return "limit must be within 1.." + std::to_string(sku_list_limit_max) + " (0: " +
           std::to_string(sku_list_limit_default) + ")";
  for (auto* field : {&q.prefix, &q.after}) {
    const char* what = field == &q.prefix ? "prefix" : "after";
    if (field->size() > sku_bytes_max)
      return std::string(what) + " longer than " + std::to_string(sku_bytes_max) + " bytes";
    if (!valid_utf8(*field)) return std::string(what) + " is not valid UTF-8";
  }
  return {};
}

bool valid_utf8(const std::string& text) {
  auto* p = reinterpret_cast<const unsigned char*>(text.data());
  auto* end = p + text.size();
  while (p < end) {
    unsigned c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    size_t n;
    unsigned cp, min;
    if ((c & 0xe0) == 0xc0) n = 1, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) n = 2, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) n = 3, cp = c & 0x07, min = 0x10000;
    else return false;
    if (static_cast<size_t>(end - p) <= n) return false;
    for (size_t i = 1; i <= n; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    p += n + 1;
  }
  return true;
}

std::string check_invariants(const sku_info& s) {
  auto show = [](const char* name, int64_t v) { return std::string(name) + " " + std::to_string(v); };
  if (s.on_hand < 0 || s.reserved < 0 || s.sold < 0 || s.stocked < 0 || s.active_holds < 0 ||
      s.written_off < 0 || s.price_cents < 0)
    return "a counter is negative";
  if (s.reserved > s.on_hand)
    return "reserved exceeds on_hand (" + show("reserved", s.reserved) + ", " +
           show("on_hand", s.on_hand) + ")";
  if (s.sold + s.on_hand + s.written_off != s.stocked)
    return "sold + on_hand + written_off != stocked (" + show("sold", s.sold) + ", " +
           show("on_hand", s.on_hand) + ", " + show("written_off", s.written_off) + ", " +
           show("stocked", s.stocked) + ")";
  if ((s.active_holds == 0) != (s.reserved == 0))
    return "reserved units without active holds or the reverse (" + show("reserved", s.reserved) +
           ", " + show("active_holds", s.active_holds) + ")";
  return {};
}

std::string validate(const hold_op& op, const request_limits& limits) {
  if (op.kind == hold_op_kind::reserve || !op.sku.empty())
    if (auto e = validate_name("sku", op.sku, sku_bytes_max); !e.empty()) return e;
  if (auto e = validate_name("hold id", op.hold_id, hold_id_bytes_max); !e.empty())
    return e;
  auto ttl_ok = [&] { return op.ttl_ms >= limits.hold_ttl_min_ms && op.ttl_ms <= limits.hold_ttl_max_ms; };
  auto ttl_range = [&] {
    return "ttl must be within " + std::to_string(limits.hold_ttl_min_ms) + ".." +
           std::to_string(limits.hold_ttl_max_ms) + " ms";
  };
  if (op.kind == hold_op_kind::extend) return ttl_ok() ? std::string() : ttl_range();
  if (op.kind != hold_op_kind::reserve) return {};
  if (op.qty <= 0) return "qty must be positive";
  if (op.qty > limits.qty_max) return "qty above " + std::to_string(limits.qty_max);
  if (!ttl_ok()) return ttl_range();
  if (!op.user.empty()) return validate_name("user", op.user, user_bytes_max);
  return {};
}

bool hold_state_wanted(const std::string& filter, hold_state s) {
  if (filter.empty()) return true;
  if (filter == "finished") return s != hold_state::active;
  return filter == to_string(s);
}

std::string validate(const sku_op& op, const request_limits& limits) {
  if (auto e = validate_name("sku", op.sku, sku_bytes_max); !e.empty()) return e;
  switch (op.kind) {
    case sku_op_kind::create:
      if (op.amount < 0 || op.amount > on_hand_max)
        return "stock must be within 0.." + std::to_string(on_hand_max);
      if (op.price_cents < 0 || op.price_cents > limits.price_cents_max)
        return "price must be within 0.." + std::to_string(limits.price_cents_max) + " cents";
      if (op.limit_per_user < 0 || op.limit_per_user > on_hand_max)
        return "limit per user must be within 0.." + std::to_string(on_hand_max) + " (0: none)";
      return validate_title(op.title);
    case sku_op_kind::restock:
      if (op.amount <= 0 || op.amount > limits.qty_max)
        return "restock qty must be within 1.." + std::to_string(limits.qty_max);
      return {};
    case sku_op_kind::adjust:
      if (op.amount < 0 || op.amount > on_hand_max)
        return "on_hand must be within 0.." + std::to_string(on_hand_max);
      return {};
    case sku_op_kind::set_price:
      if (op.price_cents < 0 || op.price_cents > limits.price_cents_max)
        return "price must be within 0.." + std::to_string(limits.price_cents_max) + " cents";
      return {};
    case sku_op_kind::query:
      return {};
    case sku_op_kind::list_holds:
      if (op.after.size() > hold_id_bytes_max || !valid_utf8(op.after))
        return "after: a hold id of at most " + std::to_string(hold_id_bytes_max) + " bytes of UTF-8";
      if (op.limit > hold_list_limit_max) return "limit: 1.." + std::to_string(hold_list_limit_max) + " (0: the default)";
      if (op.state.empty() || op.state == "active" || op.state == "finished") return {};
      for (auto s : {hold_state::confirmed, hold_state::released, hold_state::expired, hold_state::returned})
        if (op.state == to_string(s)) return {};
      return "state: active, finished, confirmed, released, expired or returned (empty: any)";
  }
  return "unknown operation";
}

std::string validate(const cart_op& op, const request_limits& limits) {
  if (auto e = validate_name("user", op.user, user_bytes_max); !e.empty()) return e;
  switch (op.kind) {
    case cart_op_kind::add:
    case cart_op_kind::set:
    case cart_op_kind::remove:
      if (auto e = validate_name("sku", op.sku, sku_bytes_max); !e.empty()) return e;
      if (op.kind == cart_op_kind::add && (op.qty <= 0 || op.qty > limits.qty_max))
        return "qty must be within 1.." + std::to_string(limits.qty_max);
      if (op.kind == cart_op_kind::set && (op.qty < 0 || op.qty > limits.qty_max))
        return "qty must be within 0.." + std::to_string(limits.qty_max) + " (0 removes the line)";
      return {};
    case cart_op_kind::view:
    case cart_op_kind::clear:
      return {};
    case cart_op_kind::take:
      if (op.order_id.empty() || op.order_id.size() > order_id_bytes_max) return "take needs the order id";
      return {};
  }
  return "unknown cart operation";
}

cart_result make_cart_error(code status, std::string message) {
  cart_result r;
  r.status = status;
  r.message = std::move(message);
  return r;
}

hold_result make_hold_error(code status, std::string message) {
  hold_result r;
  r.status = status;
  r.message = std::move(message);
  return r;
}

sku_result make_sku_error(code status, std::string message) {
  sku_result r;
  r.status = status;
  r.message = std::move(message);
  return r;
}

}  // namespace holdfast

namespace holdfast {

int64_t parse_duration_ms(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0 || digits > 12) return -1;
  int64_t n = std::stoll(text.substr(0, digits));
  auto unit = text.substr(digits);
  if (unit == "ms") return n;
  if (unit == "s") return n * 1000;
  if (unit == "m") return n * 60'000;
  if (unit == "h") return n * 3'600'000;
  return -1;
}

}  // namespace holdfast

namespace holdfast {

std::atomic<unsigned> detail::armed_faults{0};

void arm_fault(fault_point p, bool on) {
  auto bit = 1u << static_cast<unsigned>(p);
  if (on) detail::armed_faults.fetch_or(bit);
  else detail::armed_faults.fetch_and(~bit);
}

void fail_assertion(const char* file, int line, const char* condition, const std::string& what) {
  const char* base = std::strrchr(file, '/');
  throw assertion_failed(fmt::format("{} ({}:{}: {})", what, base ? base + 1 : file, line, condition));
}

}  // namespace holdfast
