// Placement, the cluster file and the router, in process (the router over a simulated
// transport: boundary 1 of ARCHITECTURE.md).
#include <gtest/gtest.h>

#include <kj/async.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "cluster/certs.hpp"
#include "client/cluster_file.hpp"
#include "cluster/roles.hpp"
#include "cluster/peer_links.hpp"
#include "client/placement.hpp"
#include "client/router.hpp"
#include "cluster/local_node.hpp"

namespace holdfast {
namespace {

std::vector<std::string> keys(size_t n) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.push_back("sku-" + std::to_string(i));
  return out;
}

TEST(placement, is_a_pure_function_of_key_and_members) {
  placement a({1, 2, 3}), b({3, 1, 2});  // listing order does not matter
  for (auto& k : keys(1000)) EXPECT_EQ(a.owner(k), b.owner(k)) << k;
  // Pinned: these owners are a contract with every data directory already written.
  EXPECT_EQ(a.owner("a"), 2u);
  EXPECT_EQ(a.owner("b"), 1u);
  EXPECT_EQ(a.owner("c"), 2u);
  EXPECT_EQ(placement(std::vector<uint32_t>{}).owner("x"), 0u);
}

TEST(placement, is_balanced_over_100k_keys) {
  for (size_t n : {3, 5, 8}) {
    std::vector<uint32_t> ids;
    for (uint32_t i = 1; i <= n; ++i) ids.push_back(i);
    placement p(ids);
    std::map<uint32_t, size_t> owned;
    for (auto& k : keys(100'000)) ++owned[p.owner(k)];
    ASSERT_EQ(owned.size(), n);
    size_t lo = SIZE_MAX, hi = 0;
    for (auto& [id, c] : owned) {
      lo = std::min(lo, c);
      hi = std::max(hi, c);
    }
    // Stated bound: max/min owned keys within 1.08 (binomial spread at 100k keys is ~1-3%).
    EXPECT_LT(double(hi) / double(lo), 1.08) << n << " nodes: " << hi << " / " << lo;
  }
}

TEST(placement, adding_a_node_moves_about_one_in_n_keys_and_only_to_it) {
  placement before({1, 2, 3}), after({1, 2, 3, 4});
  size_t moved = 0;
  auto all = keys(100'000);
  for (auto& k : all) {
    auto was = before.owner(k), now = after.owner(k);
    if (was != now) {
      ++moved;
      EXPECT_EQ(now, 4u) << k << " moved between old nodes";
    }
  }
  double share = double(moved) / double(all.size());
  EXPECT_NEAR(share, 0.25, 0.02);
  // Removing a node moves only its own keys.
  for (auto& k : keys(10'000))
    if (before.owner(k) != 3) {
      EXPECT_EQ(placement({1, 2}).owner(k), before.owner(k));
    }
}

const char* good_file = R"(
[cluster]
name = "t"
id = "00112233445566778899aabbccddeeff"
down_after_ms = 900
[tls]
ca = "ca.pem"
[[node]]
id = 2
client = "127.0.0.1:7402"
peer = "127.0.0.1:7502"
cert = "n2.pem"
key = "n2.key"
[[node]]
id = 1
client = "127.0.0.1:7401"
peer = "127.0.0.1:7501"
cert = "n1.pem"
key = "n1.key"
)";

TEST(cluster_file, parses_sorts_and_hashes_what_members_agree_on) {
  cluster_config c;
  std::string error;
  ASSERT_TRUE(parse_cluster_text(good_file, "/etc/hf", c, error)) << error;
  EXPECT_EQ(c.name, "t");
  EXPECT_EQ(c.down_after_ms, 900);
  EXPECT_EQ(c.heartbeat_interval_ms, 250);  // default
  // A `*_ms` key also takes a duration with its unit: the same setting, the same hash.
  {
    auto text = std::string(good_file);
    text.replace(text.find("down_after_ms = 900"), 19, "down_after_ms = \"900ms\"");
    cluster_config with_unit;
    ASSERT_TRUE(parse_cluster_text(text, "/etc/hf", with_unit, error)) << error;
    EXPECT_EQ(with_unit.down_after_ms, 900);
    EXPECT_EQ(with_unit.hash, c.hash);
  }
  ASSERT_EQ(c.members.size(), 2u);
  EXPECT_EQ(c.members[0].id, 1u);
  EXPECT_EQ(c.path_of(c.members[0].cert), "/etc/hf/n1.pem");
  EXPECT_EQ(c.hash.size(), 16u);
  // Comments, order and key paths do not change the hash; a setting does.
  std::string reordered = std::string("# comment\n") + good_file;
  cluster_config same, other;
  ASSERT_TRUE(parse_cluster_text(reordered, "/elsewhere", same, error));
  EXPECT_EQ(same.hash, c.hash);
  std::string changed = good_file;
  changed.replace(changed.find("900"), 3, "901");
  ASSERT_TRUE(parse_cluster_text(changed, "/etc/hf", other, error));
  EXPECT_NE(other.hash, c.hash);
  // Written back, it reads the same.
  cluster_config again;
  ASSERT_TRUE(parse_cluster_text(cluster_file_text(c), "/etc/hf", again, error)) << error;
  EXPECT_EQ(again.hash, c.hash);
}

TEST(cluster_file, refuses_what_would_split_or_break_a_cluster) {
  auto bad = [](std::string text, const char* expect) {
    cluster_config c;
    std::string error;
    EXPECT_FALSE(parse_cluster_text(text, ".", c, error)) << text;
    EXPECT_NE(error.find(expect), std::string::npos) << error;
  };
  std::string f = good_file;
  auto with = [&](const std::string& from, const std::string& to) {
    auto s = f;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  bad(with("id = 1", "id = 2"), "listed twice");
  bad(with("127.0.0.1:7501", "127.0.0.1:7402"), "used twice");
  bad(with("127.0.0.1:7501", "nowhere"), "HOST:PORT");
  bad(with("down_after_ms = 900", "down_aftr_ms = 900"), "unknown key");
  // A `*_ms` key takes a bare number of ms or a duration with its unit, nothing else.
  bad(with("down_after_ms = 900", "down_after_ms = \"900\""), "expected a duration");
  bad(with("down_after_ms = 900", "down_after_ms = 0"), "expected a duration");
  bad(with("down_after_ms = 900", "down_after_ms = \"2 fortnights\""), "expected a duration");
  bad(with("down_after_ms = 900", "down_after_ms = 1.5"), "expected a duration");
  bad(with("down_after_ms = 900", "down_after_ms = 100"), "below heartbeat_interval_ms");
  bad(with("ca = \"ca.pem\"", ""), "mutual TLS");
  bad(with("cert = \"n1.pem\"", ""), "cert and key");
  bad(with("name = \"t\"", "name = \"t"), "line");
  bad("[cluster]\nname = \"x\"\n", "no [[node]]");
  bad(with("id = \"00112233445566778899aabbccddeeff\"\n", ""), "[cluster] id: missing");
  bad(with("00112233445566778899aabbccddeeff", "short"), "16-64 hex digits");
}

TEST(peer_hello, a_second_process_with_a_live_members_identity_is_refused) {
  cluster_role role;
  std::string error;
  ASSERT_TRUE(parse_cluster_text(good_file, ".", role.config, error)) << error;
  role.self = 1;
  hello_claim h{role.config.name, role.config.hash, 2, 1, 777, "node-2", 0};
  EXPECT_EQ(judge_hello(role, h).refused, "");
  h.live_incarnation = 777;  // the same process dialing again
  EXPECT_EQ(judge_hello(role, h).refused, "");
  h.live_incarnation = 555;  // node 2 is up here as another process: refused (a copy is also
                             // fenced by its lineage; a restart racing its old link is not)
  EXPECT_NE(judge_hello(role, h).refused.find("a second process with its identity"), std::string::npos);
  EXPECT_FALSE(judge_hello(role, h).fenced);
  h.live_incarnation = 0;
  h.file_hash = "0000000000000000";  // a disagreement about the file: refused, not fenced
  EXPECT_NE(judge_hello(role, h).refused.find("cluster file mismatch"), std::string::npos);
  EXPECT_FALSE(judge_hello(role, h).fenced);
  h.file_hash = role.config.hash;
  h.certificate_name = "node-3";
  EXPECT_NE(judge_hello(role, h).refused.find("the certificate names"), std::string::npos);
  h.certificate_name = "node-2";
  h.to = 2;
  EXPECT_NE(judge_hello(role, h).refused.find("this is node 1"), std::string::npos);
}

TEST(cluster_file, the_cluster_id_is_part_of_the_hash) {
  // Two clusters that share a name, members and settings are still two clusters.
  std::string other = good_file;
  other.replace(other.find("00112233445566778899aabbccddeeff"), 32, new_cluster_id());
  cluster_config a, b;
  std::string error;
  ASSERT_TRUE(parse_cluster_text(good_file, ".", a, error)) << error;
  ASSERT_TRUE(parse_cluster_text(other, ".", b, error)) << error;
  EXPECT_NE(a.hash, b.hash);
  EXPECT_NE(new_cluster_id(), new_cluster_id());
}

TEST(cluster_file, client_certificates_need_client_tls_and_leave_older_files_hash_alone) {
  auto with = [](const std::string& tls) {
    auto s = std::string(good_file);
    s.replace(s.find("ca = \"ca.pem\""), std::string("ca = \"ca.pem\"").size(), "ca = \"ca.pem\"\n" + tls);
    return s;
  };
  cluster_config plain, off, on;
  std::string error;
  ASSERT_TRUE(parse_cluster_text(good_file, ".", plain, error)) << error;
  ASSERT_TRUE(parse_cluster_text(with("client_certs = false"), ".", off, error)) << error;
  EXPECT_EQ(plain.hash, off.hash) << "a file written before the key existed keeps its hash";
  EXPECT_FALSE(parse_cluster_text(with("client_certs = true"), ".", on, error));
  EXPECT_NE(error.find("client_certs needs client_tls"), std::string::npos) << error;
  ASSERT_TRUE(parse_cluster_text(with("client_tls = true\nclient_certs = true"), ".", on, error)) << error;
  EXPECT_TRUE(on.client_certs);
  EXPECT_NE(on.hash, plain.hash);
  // The role a certificate grants comes from its common name, as `cluster cert` writes it.
  EXPECT_EQ(role_of_certificate("admin:ops"), role::admin);
  EXPECT_EQ(role_of_certificate("client:shop-1"), role::client);
  for (auto* none : {"node-1", "holdfast-node", "root:x", "admin:", "client:a b", ":client", "admin"})
    EXPECT_EQ(role_of_certificate(none), role::none) << none;
  EXPECT_EQ(role_of_certificate(std::string("admin:x\0client", 14)), role::none) << "a NUL in the name";
}

TEST(cluster_init, a_failed_init_removes_what_it_wrote_and_never_touches_what_was_there) {
  std::string pattern = (std::filesystem::temp_directory_path() / "holdfast-init-XXXXXX").string();
  ASSERT_NE(mkdtemp(pattern.data()), nullptr);
  auto dir = pattern;
  std::ofstream(dir + "/node-2.pem") << "planted";  // init fails at node 2: the file exists
  cluster_config cfg;
  std::string error;
  EXPECT_FALSE(init_cluster_dir(dir, 3, 0, "t", false, cfg, error));
  EXPECT_NE(error.find("node-2.pem exists"), std::string::npos) << error;
  for (auto* gone : {"ca.pem", "ca.key", "node-1.pem", "node-1.key", "cluster.toml"})
    EXPECT_FALSE(std::filesystem::exists(dir + "/" + gone)) << gone;
  std::ifstream in(dir + "/node-2.pem");
  std::string kept((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(kept, "planted");
  std::filesystem::remove(dir + "/node-2.pem");
  EXPECT_TRUE(init_cluster_dir(dir, 3, 0, "t", false, cfg, error, true)) << error;  // and now it can run
  EXPECT_TRUE(cfg.client_certs && cfg.client_tls);
  EXPECT_TRUE(std::filesystem::exists(dir + "/admin-local.pem"));
  std::filesystem::remove_all(dir);
}

TEST(cluster_file, only_a_regular_file_is_read) {
  auto dir = std::filesystem::temp_directory_path() /
             ("hf-cf-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  cluster_config c;
  std::string error;
  EXPECT_FALSE(load_cluster_file(dir.string(), c, error));
  EXPECT_NE(error.find("not a regular file (a directory)"), std::string::npos) << error;
  // A FIFO nobody writes to must not hang the reader (a node's start, a CLI call).
  auto fifo = (dir / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_FALSE(load_cluster_file(fifo, c, error));
  EXPECT_NE(error.find("not a regular file"), std::string::npos) << error;
  std::string text;
  EXPECT_NE(read_small_file(fifo, 100, text), "");
  {
    std::ofstream big(dir / "big");
    big << std::string(101, 'x');
  }
  EXPECT_NE(read_small_file((dir / "big").string(), 100, text).find("larger than"), std::string::npos);
  EXPECT_EQ(read_small_file((dir / "big").string(), 101, text), "");
  EXPECT_EQ(text.size(), 101u);
  EXPECT_NE(read_small_file((dir / "missing").string(), 100, text).find("cannot read"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// A simulated network: answers from per-node tables, records what was sent where, and
// can hold a node's answers back or mark it down.
class fake_transport final : public transport {
public:
  std::map<uint32_t, std::vector<std::vector<hold_op>>> sent;
  std::set<uint32_t> down;
  kj::Promise<std::vector<hold_result>> hold_ops(uint32_t node, std::vector<hold_op> ops) override {
    sent[node].push_back(ops);
    std::vector<hold_result> out;
    for (auto& op : ops) {
      if (down.count(node)) {
        out.push_back(make_hold_error(code::unavailable, "node " + std::to_string(node) + " is down"));
        continue;
      }
      if (op.kind != hold_op_kind::query) mutations.push_back(op);
      out.push_back(answer(node, op));
    }
    return out;
  }
  kj::Promise<std::vector<sku_result>> sku_ops(uint32_t node, std::vector<sku_op> ops) override {
    std::vector<sku_result> out;
    for (auto& op : ops) {
      if (down.count(node)) {
        out.push_back(make_sku_error(code::unavailable, "down"));
        continue;
      }
      sku_result r;
      r.sku.sku = op.sku;
      r.sku.on_hand = node;  // who answered
      out.push_back(r);
    }
    return out;
  }
  // A cart's answer says who answered (version = node).
  kj::Promise<std::vector<cart_result>> cart_ops(uint32_t node, std::vector<cart_op> ops) override {
    std::vector<cart_result> out;
    for (auto& op : ops) out.push_back(cart_answer(node, op, down.count(node) > 0));
    return out;
  }
  kj::Promise<std::vector<order_result>> order_ops(uint32_t node, std::vector<order_op> ops) override {
    std::vector<order_result> out;
    for (auto& op : ops) {
      order_result r;
      r.order.order_id = op.order_id;
      r.order.version = node;  // who answered
      out.push_back(r);
    }
    return out;
  }
  static cart_result cart_answer(uint32_t node, const cart_op& op, bool is_down = false) {
    if (is_down) return make_cart_error(code::unavailable, "node " + std::to_string(node) + " is down");
    cart_result r;
    r.cart.user = op.user;
    r.cart.version = node;
    return r;
  }
  // Node n has SKUs "n-0" .. "n-9".
  kj::Promise<sku_page> list_skus(uint32_t node, sku_list_query q) override {
    sku_page p;
    if (down.count(node)) {
      p.partial = "node " + std::to_string(node) + " is down";
      return p;
    }
    for (int i = 0; i < 10 && p.skus.size() < q.limit; ++i) {
      auto name = std::to_string(node) + "-" + std::to_string(i);
      if (name <= q.after) continue;
      sku_info s;
      s.sku = name;
      p.skus.push_back(s);
    }
    if (p.skus.size() == q.limit && p.skus.back().sku != std::to_string(node) + "-9")
      p.next = p.skus.back().sku;
    return p;
  }
  // Node n "has" holds whose id starts with its number.
  // Ids starting with 'D' are held on every node (SKU "s<node>").
  std::vector<hold_op> mutations;  // confirms and releases that reached a node
  static hold_result answer(uint32_t node, const hold_op& op) {
    bool everywhere = op.hold_id[0] == 'D';
    if (op.sku.empty() && !everywhere && op.hold_id[0] - '0' != static_cast<int>(node))
      return make_hold_error(code::unknown_hold);
    hold_result r;
    r.hold.hold_id = op.hold_id;
    r.hold.sku = op.sku.empty() ? (everywhere ? "s" + std::to_string(node) : "sku-of-" + op.hold_id) : op.sku;
    r.hold.qty = node;  // who answered
    return r;
  }
};

struct router_fixture : ::testing::Test {
  // KJ's loop and wait scope destructors may throw; gtest's fixture may not.
  std::unique_ptr<kj::EventLoop> loop_owner = std::make_unique<kj::EventLoop>();
  std::unique_ptr<kj::WaitScope> wait_owner = std::make_unique<kj::WaitScope>(*loop_owner);
  kj::WaitScope& wait = *wait_owner;
  ~router_fixture() noexcept override {
    wait_owner.reset();
    loop_owner.reset();
  }
  fake_transport net;
  std::vector<std::vector<hold_op>> local_sent;
  local_calls local{[this](std::vector<hold_op> ops) -> kj::Promise<std::vector<hold_result>> {
                      local_sent.push_back(ops);
                      std::vector<hold_result> out;
                      for (auto& op : ops) out.push_back(fake_transport::answer(1, op));
                      return out;
                    },
                    [](std::vector<sku_op> ops) -> kj::Promise<std::vector<sku_result>> {
                      std::vector<sku_result> out(ops.size());
                      for (size_t i = 0; i < ops.size(); ++i) {
                        out[i].sku.sku = ops[i].sku;
                        out[i].sku.on_hand = 1;
                      }
                      return out;
                    },
                    nullptr,
                    [](std::vector<cart_op> ops) -> kj::Promise<std::vector<cart_result>> {
                      std::vector<cart_result> out;
                      for (auto& op : ops) out.push_back(fake_transport::cart_answer(1, op));
                      return out;
                    },
                    nullptr};
  router r{placement({1, 2, 3}), 1, net, local};
};

TEST_F(router_fixture, splits_a_batch_by_owner_and_answers_in_the_callers_order) {
  std::vector<hold_op> ops;
  for (auto& k : keys(300)) ops.push_back({hold_op_kind::reserve, k, "h-" + k, 1, 1000, {}});
  auto rs = r.holds(ops).wait(wait);
  ASSERT_EQ(rs.size(), ops.size());
  placement p({1, 2, 3});
  for (size_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ(rs[i].hold.hold_id, ops[i].hold_id);
    EXPECT_EQ(uint32_t(rs[i].hold.qty), p.owner(ops[i].sku)) << ops[i].sku;
  }
  // One batch per owner, nothing local sent away.
  EXPECT_EQ(net.sent[2].size(), 1u);
  EXPECT_EQ(net.sent[3].size(), 1u);
  EXPECT_EQ(local_sent.size(), 1u);
  EXPECT_EQ(net.sent.count(1), 0u);
  EXPECT_EQ(r.forwarded(), net.sent[2][0].size() + net.sent[3][0].size());
}

TEST_F(router_fixture, a_hold_without_its_sku_is_looked_for_on_every_node) {
  std::vector<hold_op> ops{{hold_op_kind::confirm, "", "3-x", 0, 0, {}},
                           {hold_op_kind::confirm, "", "1-y", 0, 0, {}},
                           {hold_op_kind::confirm, "", "9-z", 0, 0, {}}};
  auto rs = r.holds(ops).wait(wait);
  placement p({1, 2, 3});
  ASSERT_EQ(rs[0].status, code::ok);
  EXPECT_EQ(rs[0].hold.sku, "sku-of-3-x");  // found on node 3, then confirmed by its SKU's owner
  EXPECT_EQ(uint32_t(rs[0].hold.qty), p.owner("sku-of-3-x"));
  EXPECT_EQ(rs[1].hold.sku, "sku-of-1-y");
  EXPECT_EQ(rs[2].status, code::unknown_hold);
}

TEST_F(router_fixture, a_confirm_by_id_alone_acts_on_one_node_only_and_never_on_a_duplicate_id) {
  // Found on node 3 only: one confirm, sent there with the SKU the lookup found.
  auto one = r.holds({{hold_op_kind::confirm, "", "3-x", 0, 0, {}}}).wait(wait);
  ASSERT_EQ(one[0].status, code::ok);
  ASSERT_EQ(net.mutations.size(), 1u);
  EXPECT_EQ(net.mutations[0].sku, "sku-of-3-x");
  // The same id on several nodes: refused, nothing changes anywhere.
  net.mutations.clear();
  auto dup = r.holds({{hold_op_kind::release, "", "Dup", 0, 0, {}}}).wait(wait);
  EXPECT_EQ(dup[0].status, code::invalid);
  EXPECT_NE(dup[0].message.find("several SKUs"), std::string::npos) << dup[0].message;
  EXPECT_TRUE(net.mutations.empty());
  // Found, but a node that may hold the same id is down: not acted on.
  net.down.insert(2);
  auto unsure = r.holds({{hold_op_kind::confirm, "", "3-y", 0, 0, {}}}).wait(wait);
  EXPECT_EQ(unsure[0].status, code::unavailable);
  EXPECT_NE(unsure[0].message.find("name the SKU"), std::string::npos) << unsure[0].message;
  EXPECT_TRUE(net.mutations.empty());
}

TEST(router, lookups_combine_lost_answers_before_unreachable_nodes) {
  auto unknown = make_hold_error(code::unknown_hold);
  auto lost = make_hold_error(code::outcome_unknown, "lost");
  auto down = make_hold_error(code::unavailable, "node 3 is down");
  hold_result found;
  found.hold.hold_id = "h";
  EXPECT_EQ(combine_lookups({unknown, found, down}).hold.hold_id, "h");
  EXPECT_EQ(combine_lookups({unknown, down, lost}).status, code::outcome_unknown);
  auto r = combine_lookups({unknown, down});
  EXPECT_EQ(r.status, code::unavailable);
  EXPECT_NE(r.message.find("node 3 is down"), std::string::npos);
  EXPECT_EQ(combine_lookups({unknown, unknown}).status, code::unknown_hold);
  // One id held on two nodes' SKUs: a query by id alone names neither (second
  // adversarial pass: `hold show ID` printed one of them).
  auto other = found;
  other.hold.sku = "elsewhere";
  auto both = combine_lookups({found, unknown, other});
  EXPECT_EQ(both.status, code::invalid);
  EXPECT_NE(both.message.find("held on several SKUs"), std::string::npos) << both.message;
}

TEST_F(router_fixture, sku_calls_go_to_the_owner_and_creates_split) {
  std::vector<sku_op> ops;
  for (auto& k : keys(50)) ops.push_back({sku_op_kind::create, k, 5, 1, {}});
  auto rs = r.skus(ops).wait(wait);
  placement p({1, 2, 3});
  for (size_t i = 0; i < ops.size(); ++i) EXPECT_EQ(uint32_t(rs[i].sku.on_hand), p.owner(ops[i].sku));
  net.down.insert(2);
  for (auto& k : keys(50))
    if (p.owner(k) == 2) {
      auto one = r.skus({{sku_op_kind::query, k, 0, 0, {}}}).wait(wait);
      EXPECT_EQ(one[0].status, code::unavailable);
      break;
    }
}

TEST(router, a_client_router_without_a_local_node_sends_everything_over_the_transport) {
  kj::EventLoop loop;
  kj::WaitScope wait(loop);
  fake_transport net;
  router r(placement({1, 2, 3}), 0, net, {});
  std::vector<hold_op> ops;
  for (auto& k : keys(60)) ops.push_back({hold_op_kind::reserve, k, "h", 1, 1000, {}});
  auto rs = r.holds(ops).wait(wait);
  placement p({1, 2, 3});
  for (size_t i = 0; i < ops.size(); ++i) EXPECT_EQ(uint32_t(rs[i].hold.qty), p.owner(ops[i].sku));
  auto found = r.holds({{hold_op_kind::query, "", "2-q", 0, 0, {}}}).wait(wait);
  EXPECT_EQ(found[0].hold.qty, 2);
}

// The shipped example parses (its certificates are made by `cluster init`, not shipped).
TEST(cluster_file, the_example_file_parses) {
  cluster_config c;
  std::string error;
  ASSERT_TRUE(load_cluster_file(EXAMPLES_DIR "/cluster-3.toml", c, error)) << error;
  EXPECT_EQ(c.members.size(), 3u);
  EXPECT_EQ(c.name, "holdfast-local");
}

// Carts go to their user's owner, answered in the caller's order; a down owner fails
// only its users' operations.
TEST_F(router_fixture, cart_operations_go_to_each_users_owner) {
  std::vector<cart_op> ops;
  for (auto& k : keys(60)) ops.push_back(cart_op{cart_op_kind::add, "user-" + k, "sku", 1, 0, 0, {}});
  placement p({1, 2, 3});
  auto rs = r.carts(ops).wait(wait);
  ASSERT_EQ(rs.size(), ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ(rs[i].cart.user, ops[i].user);
    EXPECT_EQ(rs[i].cart.version, p.owner(ops[i].user)) << ops[i].user;
  }
  net.down.insert(3);
  rs = r.carts(ops).wait(wait);
  for (size_t i = 0; i < ops.size(); ++i)
    EXPECT_EQ(rs[i].status == code::unavailable, p.owner(ops[i].user) == 3u) << ops[i].user;
}

// The catalog is read from every node and merged in SKU order; paging by `next` reads
// each SKU exactly once, whatever the page size.
TEST_F(router_fixture, catalog_pages_merge_every_node_in_order_exactly_once) {
  for (uint32_t limit : {1u, 4u, 7u, 30u, 100u}) {
    std::vector<std::string> seen;
    sku_list_query q;
    q.limit = limit;
    for (int pages = 0; pages < 100; ++pages) {
      auto page = r.list_skus(q).wait(wait);
      EXPECT_EQ(page.partial, "");
      EXPECT_LE(page.skus.size(), limit);
      for (auto& s : page.skus) seen.push_back(s.sku);
      if (page.next.empty()) break;
      EXPECT_EQ(page.next, page.skus.back().sku);
      q.after = page.next;
    }
    std::vector<std::string> want;
    for (int n = 1; n <= 3; ++n)
      for (int i = 0; i < 10; ++i) want.push_back(std::to_string(n) + "-" + std::to_string(i));
    EXPECT_EQ(seen, want) << "limit " << limit;
  }
  // A node that cannot answer makes the page partial, and says which.
  net.down.insert(2);
  sku_list_query q;
  q.limit = 100;
  auto page = r.list_skus(q).wait(wait);
  EXPECT_EQ(page.skus.size(), 20u);
  EXPECT_NE(page.partial.find("node 2"), std::string::npos) << page.partial;
}

}  // namespace
}  // namespace holdfast

namespace holdfast::testing {
namespace {

// The node's own deadline on a batch of holds its actors do not answer in time: a change
// may still be applied (outcome_unknown), a query changes nothing (unavailable).
TEST(local_node, a_late_query_is_unavailable_and_a_late_change_outcome_unknown) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto kept = std::make_shared<std::vector<hold_sink_ptr>>();  // never answered
  auto silent = sys.spawn([kept](caf::event_based_actor*) -> caf::behavior {
    return {[kept](hold_ops_atom, std::vector<hold_op>&, hold_sink_ptr& sink) { kept->push_back(sink); }};
  });
  auto io = kj::setupAsyncIo();
  net::local_node node(caf::actor{}, caf::actor_cast<directory_actor>(silent), io.provider->getTimer(), 5);
  auto answers = node.holds({{hold_op_kind::query, "tee", "h1", 0, 0, {}},
                             {hold_op_kind::reserve, "tee", "h2", 1, 60'000, {}},
                             {hold_op_kind::release, "tee", "h3", 0, 0, {}}})
                   .wait(io.waitScope);
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(answers[0].status, code::unavailable) << answers[0].message;
  EXPECT_EQ(answers[1].status, code::outcome_unknown) << answers[1].message;
  EXPECT_EQ(answers[2].status, code::outcome_unknown) << answers[2].message;
  EXPECT_NE(answers[0].message.find("no answer within 5 ms"), std::string::npos) << answers[0].message;
  caf::anon_send_exit(silent, caf::exit_reason::kill);
}

}  // namespace
}  // namespace holdfast::testing
