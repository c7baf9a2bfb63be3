// A model inventory replicated by the replication tests: stock per SKU and holds, changed by
// commands a leader decides (see replica_fixture_test.cpp for how it decides them).
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "replication/replica.hpp"

namespace holdfast::replication {

struct hold {
  std::string sku;
  int qty = 0;
  bool operator==(const hold& o) const { return sku == o.sku && qty == o.qty; }
};

// The replicated state: stock per SKU and the holds against it.
struct inventory {
  std::map<std::string, int> stock;
  std::map<std::string, hold> holds;
  std::map<std::string, int> reserved;

  int available(const std::string& sku) const {
    auto s = stock.find(sku);
    auto r = reserved.find(sku);
    return (s == stock.end() ? 0 : s->second) - (r == reserved.end() ? 0 : r->second);
  }
  std::string encode() const {
    std::ostringstream out;
    for (auto& [sku, n] : stock) out << "S " << sku << ' ' << n << '\n';
    for (auto& [id, h] : holds) out << "H " << id << ' ' << h.sku << ' ' << h.qty << '\n';
    return out.str();
  }
  bool decode(std::string_view text) {
    inventory next;
    std::istringstream in{std::string(text)};
    std::string kind;
    while (in >> kind) {
      if (kind == "S") {
        std::string sku;
        int n = 0;
        if (!(in >> sku >> n)) return false;
        next.stock[sku] = n;
      } else if (kind == "H") {
        std::string id;
        hold h;
        if (!(in >> id >> h.sku >> h.qty)) return false;
        next.reserved[h.sku] += h.qty;
        next.holds[id] = h;
      } else {
        return false;
      }
    }
    *this = std::move(next);
    return true;
  }
};

// Commands are effects decided by the leader: "R id sku qty" reserve, "X id" release; and
// "Q ..." changes nothing but carries a refusal's or a retry's reading, which every replica
// checks against the state at that point of the log: "Q O sku qty" (out of stock),
// "Q F id" (no such hold), "Q H id" (held already). An answer waits for its entry to
// commit, so that it is ordered after everything it read.
class inventory_machine : public state_machine {
public:
  explicit inventory_machine(std::map<std::string, int> stock) { applied.stock = std::move(stock); }

  void apply(uint64_t index, std::string_view command) override {
    EXPECT_GT(index, last_index) << "entries applied out of order";
    last_index = index;
    std::istringstream in{std::string(command)};
    std::string kind, id;
    in >> kind;
    if (kind == "R") {
      hold h;
      in >> id >> h.sku >> h.qty;
      if (applied.holds.count(id)) violations.push_back("hold " + id + " reserved twice");
      else if (applied.available(h.sku) < h.qty) violations.push_back("oversold " + h.sku + " by " + id);
      else {
        applied.holds[id] = h;
        applied.reserved[h.sku] += h.qty;
      }
    } else if (kind == "X") {
      in >> id;
      auto it = applied.holds.find(id);
      if (it == applied.holds.end()) violations.push_back("released unknown hold " + id);
      else {
        applied.reserved[it->second.sku] -= it->second.qty;
        applied.holds.erase(it);
      }
    } else if (kind == "Q") {
      std::string what, arg;
      in >> what >> arg;
      if (what == "O") {
        int qty = 0;
        in >> qty;
        if (applied.available(arg) >= qty) violations.push_back("out of stock answered with stock: " + arg);
      } else if (what == "F") {
        if (applied.holds.count(arg)) violations.push_back("not found answered for a held " + arg);
      } else if (what == "H") {
        if (!applied.holds.count(arg)) violations.push_back("retry answered held for a missing " + arg);
      } else {
        violations.push_back("malformed reading");
      }
    } else {
      violations.push_back("malformed command");
    }
  }
  bool snapshot(std::string& out) override {
    out = applied.encode();
    return true;
  }
  bool restore(std::string_view data) override { return applied.decode(data); }
  void leading(uint64_t) override {
    book = applied;
    deciding = true;
  }
  void following() override {
    deciding = false;
    book = {};
  }

  inventory applied;
  inventory book;  // the leader's decisions, ahead of `applied` by what is in flight
  bool deciding = false;
  uint64_t last_index = 0;
  std::vector<std::string> violations;
};

}  // namespace holdfast::replication
