#include "protocol/payment.hpp"

namespace holdfast {

const char* to_string(payment_op op) {
  switch (op) {
    case payment_op::authorize: return "authorize";
    case payment_op::capture: return "capture";
    case payment_op::void_auth: return "void";
    case payment_op::refund: return "refund";
    case payment_op::lookup: return "lookup";
  }
  return "?";
}

const char* to_string(intent_status s) {
  switch (s) {
    case intent_status::none: return "none";
    case intent_status::authorized: return "requires_capture";
    case intent_status::captured: return "succeeded";
    case intent_status::voided: return "canceled";
    case intent_status::refunded: return "refunded";
    case intent_status::declined: return "declined";
  }
  return "?";
}

const char* to_string(payment_reply::outcome o) {
  switch (o) {
    case payment_reply::outcome::ok: return "ok";
    case payment_reply::outcome::declined: return "declined";
    case payment_reply::outcome::unknown: return "unknown";
    case payment_reply::outcome::refused: return "refused";
  }
  return "?";
}

}  // namespace holdfast
