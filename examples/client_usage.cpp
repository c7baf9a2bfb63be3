// The client library in a few lines: connect, create an SKU, hold a unit, buy it.
//   client_usage 127.0.0.1:7400
// Every answer is checked: a sale is reported only when the confirm says "confirmed".
// A call that times out (outcome_unknown) is retried with the same hold id, which is
// what makes it safe; a hold that ended meanwhile comes back as hold_expired or
// wrong_state, never as a fresh reservation.
#include <iostream>

#include "client/client.hpp"

using namespace holdfast;

namespace {

// Retries a mutation whose outcome is unknown; the hold id makes the retry idempotent.
template <class Call>
hold_result with_retries(Call call) {
  hold_result r;
  for (int attempt = 0; attempt < 3; ++attempt) {
    r = call();
    if (r.status != code::outcome_unknown) break;
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = argc > 1 ? argv[1] : "127.0.0.1:7400";
  const std::string hold_id = "order-17-line-1";
  try {
    client_options options;
    options.call_timeout_ms = 5'000;
    blocking_client node(address, options);
    auto created = node.create_sku("mug", 3, 1250);
    if (created.status != code::ok && created.status != code::sku_exists) {
      std::cerr << "cannot create mug: " << to_string(created.status) << "\n";
      return 1;
    }
    auto hold = with_retries([&] { return node.reserve("mug", 1, hold_id, 30'000); });
    if (hold.status != code::ok) {
      // hold_expired / wrong_state: this id was used before and its hold has ended.
      std::cerr << "not reserved: " << to_string(hold.status);
      if (hold.status == code::hold_expired || hold.status == code::wrong_state)
        std::cerr << " (hold " << hold.hold.hold_id << " is " << to_string(hold.hold.state) << ")";
      std::cerr << "\n";
      return 1;
    }
    auto sale = with_retries([&] { return node.confirm(hold_id, "mug"); });
    if (sale.status != code::ok || sale.hold.state != hold_state::confirmed) {
      std::cerr << "not sold: " << to_string(sale.status) << "\n";
      return 1;
    }
    auto mug = node.query_sku("mug").sku;
    std::cout << "hold " << sale.hold.hold_id << " is " << to_string(sale.hold.state)
              << "; mug on hand " << mug.on_hand << ", sold " << mug.sold << "\n";
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const kj::Exception& e) {
    std::cerr << "connection lost: " << e.getDescription().cStr() << "\n";
    return 2;
  }
}
