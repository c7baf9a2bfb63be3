// The client library in a few lines: connect, create an SKU, hold a unit, buy it.
//   client_usage 127.0.0.1:7400
#include <iostream>

#include "cluster/client.hpp"

int main(int argc, char** argv) {
  std::string address = argc > 1 ? argv[1] : "127.0.0.1:7400";
  try {
    holdfast::blocking_client node(address);
    node.create_sku("mug", 3, 1250);  // sku_exists on a second run: fine
    auto hold = node.reserve("mug", 1, "order-17-line-1", 30'000);
    if (hold.status != holdfast::code::ok) {
      std::cerr << "not reserved: " << holdfast::to_string(hold.status) << "\n";
      return 1;
    }
    auto sale = node.confirm("order-17-line-1", "mug");
    auto mug = node.query_sku("mug").sku;
    std::cout << "hold " << sale.hold.hold_id << " is " << holdfast::to_string(sale.hold.state)
              << "; mug on hand " << mug.on_hand << ", sold " << mug.sold << "\n";
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
}
