// The schemas only grow. Every field and method ever released is listed in
// schema_history.txt as "Type.member @ordinal :type"; each must still be there with the
// same ordinal and type. A new field or method is appended to the file in the same
// change (the test prints the lines to add).
#include <gtest/gtest.h>

#include <capnp/schema.h>

#include <fstream>
#include <set>
#include <string>

#include "protocol/inventory.capnp.h"
#include "protocol/storage.capnp.h"

namespace holdfast {
namespace {

// "protocol/inventory.capnp:HoldInfo" -> "inventory:HoldInfo"
std::string short_name(const capnp::Schema& s) {
  auto full = std::string(s.getProto().getDisplayName().cStr());
  auto file = full.substr(0, full.find(':'));
  file = file.substr(file.rfind('/') + 1);
  file = file.substr(0, file.find('.'));
  return file + ":" + full.substr(full.find(':') + 1);
}

std::string type_name(capnp::Type t) {
  using W = capnp::schema::Type;
  switch (t.which()) {
    case W::VOID: return "Void";
    case W::BOOL: return "Bool";
    case W::INT8: return "Int8";
    case W::INT16: return "Int16";
    case W::INT32: return "Int32";
    case W::INT64: return "Int64";
    case W::UINT8: return "UInt8";
    case W::UINT16: return "UInt16";
    case W::UINT32: return "UInt32";
    case W::UINT64: return "UInt64";
    case W::FLOAT32: return "Float32";
    case W::FLOAT64: return "Float64";
    case W::TEXT: return "Text";
    case W::DATA: return "Data";
    case W::LIST: return "List(" + type_name(t.asList().getElementType()) + ")";
    case W::ENUM: return short_name(t.asEnum());
    case W::STRUCT: return short_name(t.asStruct());
    case W::INTERFACE: return short_name(t.asInterface());
    case W::ANY_POINTER: return "AnyPointer";
  }
  return "?";
}

void walk(capnp::Schema s, std::set<std::string>& out, std::set<uint64_t>& seen) {
  if (!seen.insert(s.getProto().getId()).second) return;
  auto name = short_name(s);
  if (s.getProto().isEnum()) {
    for (auto e : s.asEnum().getEnumerants())
      out.insert(name + "." + e.getProto().getName().cStr() + " @" +
                 std::to_string(e.getOrdinal()));
    return;
  }
  if (s.getProto().isInterface()) {
    for (auto m : s.asInterface().getMethods()) {
      auto method = name + "." + m.getProto().getName().cStr();
      out.insert(method + " @" + std::to_string(m.getOrdinal()));
      walk(m.getParamType(), out, seen);
      walk(m.getResultType(), out, seen);
    }
    return;
  }
  for (auto f : s.asStruct().getFields()) {
    auto p = f.getProto();
    std::string field = name + "." + p.getName().cStr();
    if (p.isGroup()) {
      out.insert(field + " :group");
      walk(f.getType().asStruct(), out, seen);
      continue;
    }
    auto ordinal = p.getOrdinal().isExplicit() ? std::to_string(p.getOrdinal().getExplicit()) : "?";
    out.insert(field + " @" + ordinal + " :" + type_name(f.getType()));
    auto t = f.getType();
    while (t.isList()) t = t.asList().getElementType();
    if (t.isStruct()) walk(t.asStruct(), out, seen);
    if (t.isEnum()) walk(t.asEnum(), out, seen);
  }
}

TEST(schema, fields_and_methods_are_only_ever_added) {
  std::set<std::string> now;
  std::set<uint64_t> seen;
  walk(capnp::Schema::from<wire::Inventory>(), now, seen);
  walk(capnp::Schema::from<wire::Peer>(), now, seen);
  for (auto s : {capnp::Schema::from<stored::SkuRecord>(), capnp::Schema::from<stored::HoldLogBlock>(),
                 capnp::Schema::from<stored::HoldRecord>(), capnp::Schema::from<stored::DirectoryMeta>(),
                 capnp::Schema::from<stored::LogCommit>(), capnp::Schema::from<stored::StoredCart>(),
                 capnp::Schema::from<stored::StoredOrder>()})
    walk(s, now, seen);
  std::ifstream in(SCHEMA_HISTORY);
  ASSERT_TRUE(in) << SCHEMA_HISTORY;
  std::set<std::string> released;
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#') released.insert(line);
  for (auto& line : released)
    EXPECT_TRUE(now.count(line)) << "released schema element changed or removed: " << line;
  std::string added;
  for (auto& line : now)
    if (!released.count(line)) added += line + "\n";
  EXPECT_TRUE(added.empty()) << "new schema elements: append them to " << SCHEMA_HISTORY << ":\n"
                             << added;
}

}  // namespace
}  // namespace holdfast
