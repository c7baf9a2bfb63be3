// Wire codec round trips: the contract between clients and nodes.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include "protocol/codec.hpp"

namespace holdfast {
namespace {

hold_result round_trip(const hold_result& in) {
  capnp::MallocMessageBuilder m;
  codec::write(m.initRoot<wire::HoldResult>(), in);
  return codec::read(m.getRoot<wire::HoldResult>().asReader());
}

sku_result round_trip(const sku_result& in) {
  capnp::MallocMessageBuilder m;
  codec::write(m.initRoot<wire::SkuResult>(), in);
  return codec::read(m.getRoot<wire::SkuResult>().asReader());
}

TEST(codec, hold_results_round_trip_every_outcome) {
  hold_info h{"h-1", "tee", 3, hold_state::expired, 1'800'000'000'123};
  for (auto c : {code::ok, code::hold_expired, code::hold_conflict, code::wrong_state}) {
    hold_result in;
    in.status = c;
    in.hold = h;
    auto out = round_trip(in);
    EXPECT_EQ(out.status, c);
    EXPECT_EQ(out.hold.hold_id, "h-1");
    EXPECT_EQ(out.hold.sku, "tee");
    EXPECT_EQ(out.hold.qty, 3);
    EXPECT_EQ(out.hold.state, hold_state::expired);
    EXPECT_EQ(out.hold.deadline_ms, 1'800'000'000'123);
  }
  hold_result oos;
  oos.status = code::out_of_stock;
  oos.available = 7;
  EXPECT_EQ(round_trip(oos).available, 7);
  for (auto c : {code::invalid, code::unavailable, code::storage_full, code::outcome_unknown}) {
    auto out = round_trip(make_hold_error(c, "why"));
    EXPECT_EQ(out.status, c);
    EXPECT_EQ(out.message, "why");
  }
  EXPECT_EQ(round_trip(make_hold_error(code::unknown_sku)).status, code::unknown_sku);
  EXPECT_EQ(round_trip(make_hold_error(code::unknown_hold)).status, code::unknown_hold);
  auto detailed = round_trip(make_hold_error(code::unknown_hold, "hold 'h' is on sku 'a'"));
  EXPECT_EQ(detailed.message, "hold 'h' is on sku 'a'");
}

TEST(codec, sku_results_and_requests_round_trip) {
  sku_result in;
  in.sku = {"mug", 10, 4, 1250, 6, 16, 2, 0, "Mug, blue"};
  for (auto c : {code::ok, code::sku_exists, code::insufficient}) {
    in.status = c;
    auto out = round_trip(in);
    EXPECT_EQ(out.status, c);
    EXPECT_EQ(out.sku.sku, "mug");
    EXPECT_EQ(out.sku.on_hand, 10);
    EXPECT_EQ(out.sku.reserved, 4);
    EXPECT_EQ(out.sku.price_cents, 1250);
    EXPECT_EQ(out.sku.sold, 6);
    EXPECT_EQ(out.sku.stocked, 16);
    EXPECT_EQ(out.sku.active_holds, 2);
    EXPECT_EQ(out.sku.title, "Mug, blue");
  }
  capnp::MallocMessageBuilder m;
  hold_op op{hold_op_kind::reserve, "mug", "h", 2, 500, {}};
  codec::write(m.initRoot<wire::ReserveRequest>(), op);
  auto back = codec::read_reserve(m.getRoot<wire::ReserveRequest>().asReader());
  EXPECT_EQ(back.sku, "mug");
  EXPECT_EQ(back.hold_id, "h");
  EXPECT_EQ(back.qty, 2);
  EXPECT_EQ(back.ttl_ms, 500);
}

TEST(codec, durations_parse_with_units_only) {
  EXPECT_EQ(parse_duration_ms("500ms"), 500);
  EXPECT_EQ(parse_duration_ms("30s"), 30'000);
  EXPECT_EQ(parse_duration_ms("15m"), 900'000);
  EXPECT_EQ(parse_duration_ms("2h"), 7'200'000);
  EXPECT_EQ(parse_duration_ms("30"), -1);
  EXPECT_EQ(parse_duration_ms("-5s"), -1);
  EXPECT_EQ(parse_duration_ms("s"), -1);
  EXPECT_EQ(parse_duration_ms("99999999999999s"), -1);
}


// Names end up in terminals, logs and JSON: only well-formed UTF-8 without controls
// that would make them print as something else.
TEST(names, invalid_utf8_and_invisible_controls_are_refused) {
  request_limits limits;
  auto check = [&](const std::string& sku) {
    return validate(hold_op{hold_op_kind::reserve, sku, "h", 1, 1'000, {}}, limits);
  };
  EXPECT_EQ(check("caf\xc3\xa9"), "");             // é
  EXPECT_EQ(check("\xe6\x97\xa5\xe6\x9c\xac"), "");  // 日本
  EXPECT_NE(check("caf\xc3"), "");                 // cut short
  EXPECT_NE(check("\xc0\xaf"), "");                // overlong '/'
  EXPECT_NE(check("\xed\xa0\x80"), "");            // a surrogate
  EXPECT_NE(check("\xf4\x90\x80\x80"), "");        // past U+10FFFF
  EXPECT_NE(check("x\xc2\x9b" "31m"), "");         // C1 CSI
  EXPECT_NE(check("abc\xe2\x80\xae" "fed"), "");   // right-to-left override
  EXPECT_NE(check("a\xe2\x81\xa6" "b"), "");       // left-to-right isolate
  // Found by the adversarial pass: look-alike names through Unicode spaces and
  // invisible characters.
  EXPECT_NE(check("a\xc2\xa0" "b"), "");          // no-break space
  EXPECT_NE(check("\xe2\x80\x8b"), "");           // zero-width space
  EXPECT_NE(check("tee\xe2\x80\x8d"), "");        // zero-width joiner
  EXPECT_NE(check("a\xe3\x80\x80" "b"), "");      // ideographic space
  EXPECT_NE(check("\xef\xbb\xbf" "tee"), "");     // byte-order mark
  // Second pass (checkout issue): invisible marks that still passed.
  EXPECT_NE(check("ann\xd8\x9c"), "");           // Arabic letter mark U+061C
  EXPECT_NE(check("a\xcd\x8f" "b"), "");         // combining grapheme joiner U+034F
  EXPECT_NE(check("\xe3\x85\xa4"), "");         // Hangul filler U+3164
  EXPECT_NE(check("a\xef\xb8\x8f"), "");        // variation selector U+FE0F
  EXPECT_NE(check("a\xf3\xa0\x80\xa1"), "");   // tag character U+E0021
  EXPECT_NE(check("a\xf0\x9d\x85\xb3"), "");   // musical formatting U+1D173
  EXPECT_EQ(check("\xf0\x9f\x91\x95"), "");      // a T-shirt emoji is a fine name
  EXPECT_NE(check(std::string(sku_bytes_max + 1, 'a')), "");
  EXPECT_EQ(check(std::string(sku_bytes_max, 'a')), "");
  // Printable ASCII passes without the UTF-8 scans; one byte past it still gets them.
  std::string every_printable;
  for (char ch = '!'; ch <= '~'; ++ch) every_printable.push_back(ch);
  EXPECT_EQ(check(every_printable), "");
  EXPECT_NE(check(every_printable + "\x80"), "");
  EXPECT_NE(check(every_printable + "\xe2\x80\x8b"), "");
}

}  // namespace
}  // namespace holdfast
