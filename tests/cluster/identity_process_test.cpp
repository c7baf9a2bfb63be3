// A data directory is one member forever (persistence/identity.hpp), and a node its peers
// refuse serves nothing (peer_links.hpp, "Membership"). Real nodes, real backups, real
// restores; every break the hostile probe of issue 16 found, at the process level.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "cluster_fixture.hpp"
#include "harness/processes.hpp"

namespace holdfast {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class identity_test : public cluster_test {
protected:
  // `holdfast ARGS...`, bounded in time: a node that is wrongly not refused would hang.
  command_result holdfast(std::vector<std::string> args) {
    args.insert(args.begin(), {find_program("timeout"), "30", HOLDFAST_BINARY});
    return run_command(args);
  }
  command_result start_node(const std::string& data, const std::string& file, uint32_t id) {
    return holdfast({"node", "--data", data, "--cluster", file, "--id", std::to_string(id)});
  }
  // The cluster file with member `id`'s client and peer ports changed: what an operator
  // makes to run a copy of a node beside the original. Certificates are copied along.
  std::string drifted_file(uint32_t id) {
    auto dir = dir_ + "/drift";
    fs::create_directories(dir);
    for (std::string f : {std::string("ca.pem"), "node-" + std::to_string(id) + ".pem", "node-" + std::to_string(id) + ".key"})
      fs::copy_file(dir_ + "/c/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
    std::ifstream in(dir_ + "/c/cluster.toml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto* m = nodes_->config().member(id);
    for (auto* address : {&m->client, &m->peer, &m->http})
      if (!address->empty()) text.replace(text.find(*address), address->size(), "127.0.0.1:" + std::to_string(free_port()));
    std::ofstream(dir + "/cluster.toml") << text;
    return dir + "/cluster.toml";
  }
  std::string owner_sku(uint32_t id) { return owned(1)[id][0]; }
};

TEST_F(identity_test, a_backup_never_starts_as_it_is_and_restore_refuses_while_its_member_lives) {
  start();
  auto sku = owner_sku(2);
  ASSERT_EQ(on(1, [&](blocking_client& c) { return c.create_sku(sku, 10, 100); }).status, code::ok);
  auto backup = holdfast({"backup", "--data", dir_ + "/c/node-2", "--to", dir_ + "/bk2"});
  ASSERT_EQ(backup.status, 0) << backup.output;
  // Not beside the original on other ports, not as a single node, not as another member.
  for (auto r : {start_node(dir_ + "/bk2", drifted_file(2), 2), start_node(dir_ + "/bk2", nodes_->file(), 3),
                 holdfast({"node", "--data", dir_ + "/bk2", "--listen", "127.0.0.1:0"})}) {
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("it is a backup"), std::string::npos) << r.output;
  }
  // Restore refuses while node 2 lives...
  auto refused = holdfast({"restore", "--from", dir_ + "/bk2", "--data", dir_ + "/r2", "--cluster", nodes_->file()});
  EXPECT_EQ(refused.status, 2) << refused.output;
  EXPECT_NE(refused.output.find("refusing to restore"), std::string::npos) << refused.output;
  EXPECT_FALSE(fs::exists(dir_ + "/r2/data.mdb"));
  // ...and once it is gone, makes generation 2 of node 2, which serves its SKU.
  nodes_->kill9(2);
  ASSERT_TRUE(wait_until([&] { return on(1, [&](blocking_client& c) { return c.query_sku(sku); }).status == code::unavailable; }, 10s));
  auto restored = holdfast({"restore", "--from", dir_ + "/bk2", "--data", dir_ + "/r2", "--cluster", nodes_->file()});
  ASSERT_EQ(restored.status, 0) << restored.output;
  {
    node_process r2(HOLDFAST_BINARY, dir_ + "/r2", {"--cluster", nodes_->file(), "--id", "2"});
    ASSERT_TRUE(wait_until([&] { return on(1, [&](blocking_client& c) { return c.query_sku(sku); }).status == code::ok; }, 10s));
    EXPECT_EQ(on(1, [&](blocking_client& c) { return c.reserve(sku, 3, "after-restore", 60'000); }).status, code::ok);
    auto links = on(1, [](blocking_client& c) { return c.status(); }).links;
    for (auto& l : links) {
      if (l.node == 2) {
        EXPECT_EQ(l.generation, 2u);
      }
    }
  }
  // The directory the restore replaced is refused by every peer: it serves nothing.
  nodes_->start(2);
  auto old = on(2, [&](blocking_client& c) { return c.query_sku(sku); });
  EXPECT_EQ(old.status, code::unavailable);
  EXPECT_NE(old.message.find("replaced by `holdfast restore`"), std::string::npos) << old.message;
  EXPECT_NE(on(2, [](blocking_client& c) { return c.status(); }).not_serving, "");
  EXPECT_EQ(on(1, [&](blocking_client& c) { return c.query_sku(sku); }).status, code::unavailable);
}

TEST_F(identity_test, a_copy_of_a_member_on_other_ports_serves_nothing_so_nothing_sells_twice) {
  start();
  auto sku = owner_sku(2);
  ASSERT_EQ(on(1, [&](blocking_client& c) { return c.create_sku(sku, 10, 100); }).status, code::ok);
  // A second process claiming node 2 with a drifted file, on a copy made with cp -a while
  // node 2 runs (no backup marker), and on a fresh directory.
  auto drift = drifted_file(2);
  fs::copy(dir_ + "/c/node-2", dir_ + "/copy2", fs::copy_options::recursive);
  for (auto data : {dir_ + "/copy2", dir_ + "/fresh2"}) {
    node_process rogue(HOLDFAST_BINARY, data, {"--cluster", drift, "--id", "2"});
    for (auto r : {on(rogue.address(), [&](blocking_client& c) { return c.reserve(sku, 9, "rogue-" + data, 60'000); }),
                   on(rogue.address(), [&](blocking_client& c) { return c.confirm("rogue-" + data, sku); })}) {
      EXPECT_EQ(r.status, code::unavailable) << r.message;
      EXPECT_NE(r.message.find("serves nothing"), std::string::npos) << r.message;
    }
    EXPECT_EQ(on(rogue.address(), [&](blocking_client& c) { return c.create_sku(sku, 10, 100); }).status,
              code::unavailable);
    auto s = on(rogue.address(), [](blocking_client& c) { return c.status(); });
    EXPECT_NE(s.not_serving.find("cluster file mismatch"), std::string::npos) << s.not_serving;
  }
  // The real node 2 sold through node 3 meanwhile: exactly its stock.
  EXPECT_EQ(on(3, [&](blocking_client& c) { return c.reserve(sku, 9, "real", 60'000); }).status, code::ok);
  EXPECT_EQ(on(3, [&](blocking_client& c) { return c.confirm("real", sku); }).status, code::ok);
  auto books = on(2, [&](blocking_client& c) { return c.query_sku(sku); }).sku;
  EXPECT_EQ(books.sold, 9);
  EXPECT_EQ(books.stocked, 10);
}

TEST_F(identity_test, a_directory_is_one_member_of_one_cluster_forever) {
  start();
  nodes_->kill9(2);
  auto d2 = dir_ + "/c/node-2";
  for (auto r : {start_node(d2, nodes_->file(), 3), holdfast({"node", "--data", d2, "--listen", "127.0.0.1:0"})}) {
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("node 2 of cluster"), std::string::npos) << r.output;
  }
  // Another cluster with the same name, members and ports: another id.
  std::ifstream in(nodes_->file());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text = std::regex_replace(text, std::regex("id = \"[0-9a-f]+\""), "id = \"" + new_cluster_id() + "\"");
  std::ofstream(dir_ + "/c/other.toml") << text;
  auto other = start_node(d2, dir_ + "/c/other.toml", 2);
  EXPECT_EQ(other.status, 2) << other.output;
  EXPECT_NE(other.output.find("not node 2 of cluster"), std::string::npos) << other.output;
  // A single node's directory never joins a cluster.
  {
    node_process single(HOLDFAST_BINARY, dir_ + "/single");
  }
  auto joined = start_node(dir_ + "/single", nodes_->file(), 2);
  EXPECT_EQ(joined.status, 2) << joined.output;
  EXPECT_NE(joined.output.find("single node's data"), std::string::npos) << joined.output;
  // Deleting the identity of a directory with data does not free it: it counts as a
  // single node's (what directories from before identities were).
  fs::remove(d2 + "/identity");
  auto bare = start_node(d2, nodes_->file(), 2);
  EXPECT_EQ(bare.status, 2) << bare.output;
}

// The adversarial pass: a copy of a stopped member's directory (cp -a) ran as that member,
// then the original ran too, and each sold the same units. Every start extends the
// directory's lineage; peers record the newest token they accepted and fence a directory
// whose lineage lacks it.
TEST_F(identity_test, a_copy_that_ran_fences_the_directory_it_was_copied_from) {
  start();
  auto sku = owner_sku(2);
  ASSERT_EQ(on(1, [&](blocking_client& c) { return c.create_sku(sku, 2, 100); }).status, code::ok);
  nodes_->kill9(2);
  fs::copy(dir_ + "/c/node-2", dir_ + "/copy2", fs::copy_options::recursive);
  {
    node_process copy(HOLDFAST_BINARY, dir_ + "/copy2", {"--cluster", nodes_->file(), "--id", "2"});
    ASSERT_TRUE(wait_until([&] { return on(1, [&](blocking_client& c) { return c.reserve(sku, 2, "copy", 60'000); }).status == code::ok; }, 10s));
    ASSERT_EQ(on(1, [&](blocking_client& c) { return c.confirm("copy", sku); }).status, code::ok);
  }
  nodes_->start(2);  // the original directory, now behind the copy
  auto r = on(2, [&](blocking_client& c) { return c.reserve(sku, 2, "original", 60'000); });
  EXPECT_EQ(r.status, code::unavailable) << r.message;
  EXPECT_NE(r.message.find("is behind: another copy of it"), std::string::npos) << r.message;
  EXPECT_EQ(on(1, [&](blocking_client& c) { return c.reserve(sku, 1, "via-1", 60'000); }).status, code::unavailable);
}

// The adversarial pass: two restores of one backup both became generation 2 and both sold.
// Now every restore tells the members its generation first: the later restore wins, and the
// earlier one is a replaced directory.
TEST_F(identity_test, of_two_restores_of_one_backup_only_the_later_serves) {
  start();
  auto sku = owner_sku(2);
  ASSERT_EQ(on(1, [&](blocking_client& c) { return c.create_sku(sku, 3, 100); }).status, code::ok);
  ASSERT_EQ(holdfast({"backup", "--data", dir_ + "/c/node-2", "--to", dir_ + "/bk2"}).status, 0);
  nodes_->kill9(2);
  ASSERT_TRUE(wait_until([&] { return on(1, [&](blocking_client& c) { return c.query_sku(sku); }).status == code::unavailable; }, 10s));
  for (auto to : {"/rA", "/rB"}) {
    auto r = holdfast({"restore", "--from", dir_ + "/bk2", "--data", dir_ + to, "--cluster", nodes_->file()});
    ASSERT_EQ(r.status, 0) << r.output;
  }
  {
    node_process a(HOLDFAST_BINARY, dir_ + "/rA", {"--cluster", nodes_->file(), "--id", "2"});
    auto r = on(a.address(), [&](blocking_client& c) { return c.reserve(sku, 3, "rA", 60'000); });
    EXPECT_EQ(r.status, code::unavailable) << r.message;
    EXPECT_NE(r.message.find("replaced by `holdfast restore`"), std::string::npos) << r.message;
  }
  node_process b(HOLDFAST_BINARY, dir_ + "/rB", {"--cluster", nodes_->file(), "--id", "2"});
  EXPECT_TRUE(wait_until([&] { return on(1, [&](blocking_client& c) { return c.reserve(sku, 3, "rB", 60'000); }).status == code::ok; }, 10s));
}

// The adversarial pass: a member frozen for two seconds looked gone to restore, woke up,
// and kept acknowledging sales the restored directory did not have. The restore now tells
// the members first, and they refuse the old process when it wakes.
TEST_F(identity_test, a_frozen_member_that_wakes_after_a_restore_is_fenced) {
  start();
  auto sku = owner_sku(2);
  ASSERT_EQ(on(1, [&](blocking_client& c) { return c.create_sku(sku, 2, 100); }).status, code::ok);
  ASSERT_EQ(holdfast({"backup", "--data", dir_ + "/c/node-2", "--to", dir_ + "/bk2"}).status, 0);
  nodes_->stop_signal(2);
  ASSERT_TRUE(wait_until([&] { return on(1, [&](blocking_client& c) { return c.query_sku(sku); }).status == code::unavailable; }, 10s));
  auto restored = holdfast({"restore", "--from", dir_ + "/bk2", "--data", dir_ + "/r2", "--cluster", nodes_->file()});
  ASSERT_EQ(restored.status, 0) << restored.output;
  nodes_->continue_signal(2);
  // The old process wakes; whatever it is asked, it acknowledges nothing.
  EXPECT_TRUE(wait_until([&] {
    auto r = on(2, [&](blocking_client& c) { return c.reserve(sku, 1, "woke", 60'000); });
    EXPECT_NE(r.status, code::ok) << "the replaced process sold";
    return r.status == code::unavailable && r.message.find("replaced by `holdfast restore`") != std::string::npos;
  }, 15s));
  EXPECT_EQ(on(1, [&](blocking_client& c) { return c.reserve(sku, 1, "via-1", 60'000); }).status, code::unavailable);
}

// The second adversarial pass: a restore that only node 1 recorded (node 3 down) let the
// replaced node 2 sell through node 3 once node 1 was down. A restore now needs a majority
// of the other members (with three: both) to record it.
TEST_F(identity_test, a_restore_a_minority_could_confirm_is_refused) {
  start();
  ASSERT_EQ(holdfast({"backup", "--data", dir_ + "/c/node-2", "--to", dir_ + "/bk2"}).status, 0);
  nodes_->kill9(2);
  nodes_->kill9(3);
  auto r = holdfast({"restore", "--from", dir_ + "/bk2", "--data", dir_ + "/r2", "--cluster", nodes_->file()});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("fewer than a majority"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_ + "/r2/data.mdb")) << "nothing startable was made";
}

// A member that no peer has confirmed in this run serves nothing: it cannot tell a cold
// start from a stale copy cut off from its cluster (the adversarial pass ran a replaced
// directory with unreachable peers as a "lone survivor").
TEST_F(identity_test, a_member_no_peer_confirmed_serves_nothing_until_one_does) {
  start();
  auto sku = owner_sku(2);
  ASSERT_EQ(on(2, [&](blocking_client& c) { return c.create_sku(sku, 5, 100); }).status, code::ok);
  nodes_->kill9(1);
  nodes_->kill9(3);
  nodes_->kill9(2);
  nodes_->start(2);
  auto alone = on(2, [&](blocking_client& c) { return c.reserve(sku, 1, "alone", 60'000); });
  EXPECT_EQ(alone.status, code::unavailable) << alone.message;
  EXPECT_NE(alone.message.find("until a peer accepts it"), std::string::npos) << alone.message;
  nodes_->start(1);
  EXPECT_TRUE(wait_until([&] { return on(2, [&](blocking_client& c) { return c.reserve(sku, 1, "confirmed", 60'000); }).status == code::ok; }, 10s));
}

TEST_F(identity_test, a_survivor_alone_sells_its_own_skus_and_no_one_elses) {
  start();
  auto mine = owner_sku(2), theirs = owner_sku(1);
  ASSERT_EQ(on(2, [&](blocking_client& c) { return c.create_sku(mine, 5, 100); }).status, code::ok);
  ASSERT_EQ(on(2, [&](blocking_client& c) { return c.create_sku(theirs, 5, 100); }).status, code::ok);
  nodes_->kill9(1);
  nodes_->kill9(3);
  ASSERT_TRUE(wait_until([&] { return on(2, [&](blocking_client& c) { return c.query_sku(theirs); }).status == code::unavailable; }, 10s));
  EXPECT_EQ(on(2, [&](blocking_client& c) { return c.reserve(mine, 1, "alone", 60'000); }).status, code::ok);
  EXPECT_EQ(on(2, [](blocking_client& c) { return c.status(); }).not_serving, "");
}

}  // namespace
}  // namespace holdfast
