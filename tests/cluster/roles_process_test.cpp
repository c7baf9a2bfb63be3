// Who may do what (issue 19): a node started with --tokens serves a connection only once
// it has logged in, and then only what its token's role allows; a refusal is `forbidden`,
// changes nothing and is counted. Real node processes, the real CLI.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "cluster/certs.hpp"
#include "client/client.hpp"
#include "client/cluster_file.hpp"
#include "gateway/http_api.hpp"
#include "harness/node_process.hpp"
#include "harness/processes.hpp"
#include "metrics_text.hpp"

using namespace holdfast;
using namespace std::chrono_literals;

class roles_process_test : public ::testing::Test {
protected:
  roles_process_test() : dir_(make_temp_dir("holdfast-roles")) {}
  ~roles_process_test() override {
    node_.reset();
    std::filesystem::remove_all(dir_);
  }
  // `holdfast token new`: the token, and the entry appended to the tokens file.
  std::string new_token(const std::string& role, const std::string& name) {
    auto r = run_command({HOLDFAST_BINARY, "--json", "token", "new", "--role", role, "--name", name});
    EXPECT_EQ(r.status, 0) << r.output;
    auto j = nlohmann::json::parse(r.output);
    std::ofstream(dir_ + "/tokens.toml", std::ios::app) << j["entry"].get<std::string>() << "\n";
    return j["token"];
  }
  std::unique_ptr<blocking_client> as(const std::string& token) {
    client_options o;
    o.token = token;
    return std::make_unique<blocking_client>(node_->address(), o);
  }
  command_result cli(const std::string& token, std::vector<std::string> args) {
    args.insert(args.begin(), {HOLDFAST_BINARY, "--json", "--node", node_->address(), "--token", token});
    return run_command(args);
  }

  std::string dir_;
  std::unique_ptr<node_process> node_;
};

TEST_F(roles_process_test, each_role_does_what_it_may_and_is_refused_the_rest_changing_nothing) {
  auto admin = new_token("admin", "ops");
  auto shop = new_token("client", "shop-1");
  node_ = std::make_unique<node_process>(HOLDFAST_BINARY, dir_ + "/data",
                                         std::vector<std::string>{"--tokens", dir_ + "/tokens.toml", "--http",
                                                                  "127.0.0.1:0"});
  {
    auto ops = as(admin);
    ASSERT_EQ(ops->create_sku("tee", 10, 500).status, code::ok);
    EXPECT_EQ(ops->restock("tee", 5).status, code::ok);
  }
  {
    auto owned = as(shop);  // one blocking client per thread at a time
    auto& client = *owned;
    // The client role buys.
    EXPECT_EQ(client.reserve("tee", 2, "h1", 60'000).status, code::ok);
    EXPECT_EQ(client.confirm("h1", "tee").status, code::ok);
    EXPECT_EQ(client.reserve("tee", 1, "h2", 60'000).status, code::ok);
    EXPECT_EQ(client.release("h2", "tee").status, code::ok);
    ASSERT_EQ(client.query_sku("tee").status, code::ok);
    // ...and may not change the catalog, nor give a sold unit back.
    auto adjusted = client.adjust("tee", 1);
    EXPECT_EQ(adjusted.status, code::forbidden);
    EXPECT_NE(adjusted.message.find("needs the admin role"), std::string::npos) << adjusted.message;
    EXPECT_EQ(client.restock("tee", 100).status, code::forbidden);
    EXPECT_EQ(client.create_sku("free", 1'000, 0).status, code::forbidden);
    EXPECT_EQ(client.set_price("tee", 1).status, code::forbidden);
    EXPECT_EQ(client.create_skus({{sku_op_kind::create, "b1", 1, 1, {}, 0}}).at(0).status, code::forbidden);
    auto returned = client.async().submit({{hold_op_kind::return_hold, "tee", "h1", 0, 0, {}}}).wait(client.io().waitScope);
    EXPECT_EQ(returned.at(0).status, code::forbidden);
    // Nothing of the refused calls happened.
    auto tee = client.query_sku("tee").sku;
    EXPECT_EQ(tee.on_hand, 13);  // 15 stocked, 2 sold
    EXPECT_EQ(tee.price_cents, 500);
    EXPECT_EQ(client.query_sku("free").status, code::unknown_sku);
    EXPECT_EQ(client.query_hold("h1", "tee").hold.state, hold_state::confirmed);
    // Listing an SKU's holds hands out ids any client could confirm or release: admin only.
    auto listed = client.list_holds("tee");
    EXPECT_EQ(listed.status, code::forbidden);
    EXPECT_TRUE(listed.holds.empty());
  }
  {
    auto listed = as(admin)->list_holds("tee");
    ASSERT_EQ(listed.status, code::ok) << listed.message;
    ASSERT_EQ(listed.holds.size(), 2u);
    EXPECT_EQ(listed.holds[0].hold_id, "h1");
    EXPECT_EQ(listed.holds[0].state, hold_state::confirmed);
    EXPECT_EQ(listed.holds[1].state, hold_state::released);
  }
  // A connection that never logged in may do nothing but ask the node's status.
  {
    blocking_client anonymous(node_->address());
    auto r = anonymous.reserve("tee", 1, "h3", 60'000);
    EXPECT_EQ(r.status, code::forbidden);
    EXPECT_NE(r.message.find("requires a token"), std::string::npos) << r.message;
    EXPECT_EQ(anonymous.query_sku("tee").status, code::forbidden);
    EXPECT_NO_THROW(anonymous.status());
  }
  // An unknown token is refused at login: the client says so and calls nothing.
  try {
    as("not-a-token");
    ADD_FAILURE() << "a login with an unknown token was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("forbidden: login refused (unknown token)"), std::string::npos) << e.what();
  }

  // The CLI: --token (or HOLDFAST_TOKEN); a refusal exits 1 and says forbidden.
  auto r = cli(shop, {"adjust", "tee", "1"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("forbidden"), std::string::npos) << r.output;
  r = cli(admin, {"adjust", "tee", "20"});
  EXPECT_EQ(r.status, 0) << r.output;
  r = cli("wrong", {"sku", "show", "tee"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("\"status\":\"forbidden\""), std::string::npos) << r.output;
  EXPECT_EQ(as(admin)->query_sku("tee").sku.on_hand, 20);
  // Commands that ask every member log in on each connection (the review found `order
  // list` and `order events` asked without the token), and a refusal sent only as text
  // is still `forbidden`, exit 1.
  r = cli(shop, {"order", "list"});
  EXPECT_EQ(r.status, 0) << r.output;
  r = cli(shop, {"order", "events"});
  EXPECT_EQ(r.status, 0) << r.output;
  r = cli(shop, {"sku", "list"});
  EXPECT_EQ(r.status, 0) << r.output;
  r = run_command({HOLDFAST_BINARY, "--json", "--node", node_->address(), "sku", "list"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("\"status\":\"forbidden\""), std::string::npos) << r.output;

  // Counted on /metrics.
  std::string body, error;
  ASSERT_EQ(http_get("http://" + node_->http_address() + "/metrics", 5'000, body, error), 200) << error;
  EXPECT_GE(metrics_sample(body, "holdfast_forbidden_total"), 10);
  EXPECT_EQ(metrics_sample(body, "holdfast_logins_refused_total"), 2);
}

// Without --tokens nothing changes: every connection may do everything, and a client that
// sends a token anyway is served.
TEST_F(roles_process_test, without_tokens_every_connection_may_do_everything) {
  node_ = std::make_unique<node_process>(HOLDFAST_BINARY, dir_ + "/data");
  {
    blocking_client anonymous(node_->address());
    EXPECT_EQ(anonymous.create_sku("tee", 10, 1).status, code::ok);
    EXPECT_EQ(anonymous.adjust("tee", 3).status, code::ok);
  }
  EXPECT_EQ(as("anything")->reserve("tee", 1, "h", 60'000).status, code::ok);
}

// A tokens file that cannot be used stops the node at start, naming the line, before
// anything is created.
TEST_F(roles_process_test, a_bad_tokens_file_refuses_to_start) {
  auto file = dir_ + "/tokens.toml";
  for (auto [text, says] : std::vector<std::pair<std::string, std::string>>{
         {"", "no [[token]] entries"},
         {"[[token]]\nname = \"a\"\nrole = \"root\"\nsha256 = \"" + std::string(64, 'a') + "\"\n",
          "role must be \"admin\" or \"client\""},
         {"[[token]]\nname = \"a\"\nrole = \"client\"\nsha256 = \"abc\"\n", "sha256 must be 64"},
         {"[[token]]\nname = \"a\"\nrole = \"client\"\nsecret = \"x\"\n", "tokens.toml:4: unknown key 'secret'"}}) {
    std::ofstream(file) << text;
    auto r = run_command_for({HOLDFAST_BINARY, "node", "--data", dir_ + "/data", "--listen", "127.0.0.1:0",
                              "--tokens", file},
                             10s);
    EXPECT_FALSE(r.timed_out) << text;
    EXPECT_EQ(r.status, 2) << text << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << says << "\n" << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/data")) << text;
  }
}

// A token's name is written into the tokens file: one that would break out of its TOML
// string (found by the adversarial pass: a name with a quote and newlines made
// `token new` print an entry granting another token admin) is refused.
TEST_F(roles_process_test, token_names_that_could_rewrite_the_tokens_file_are_refused) {
  for (auto name : {std::string("shop-7\"\nrole = \"admin\""), std::string(""), std::string("a b"), std::string(65, 'x')}) {
    auto r = run_command({HOLDFAST_BINARY, "token", "new", "--role", "client", "--name", name});
    EXPECT_EQ(r.status, 2) << name << r.output;
    EXPECT_EQ(r.output.find("sha256"), std::string::npos) << r.output;
  }
  std::ofstream(dir_ + "/tokens.toml") << "[[token]]\nname = \"a\\\"b\"\nrole = \"client\"\nsha256 = \""
                                        << std::string(64, 'a') << "\"\n";
  auto r = run_command_for({HOLDFAST_BINARY, "node", "--data", dir_ + "/data", "--listen", "127.0.0.1:0", "--tokens",
                            dir_ + "/tokens.toml"},
                           10s);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("a token needs a name of 1..64"), std::string::npos) << r.output;
}

// Roles by client certificate: a cluster with [tls] client_certs asks every client for a
// certificate its CA signed (`holdfast cluster cert`), whose name is the connection's role.
TEST_F(roles_process_test, client_certificates_give_their_role_and_nothing_else_is_served) {
  auto cluster_dir = dir_ + "/c";
  auto init = run_command({HOLDFAST_BINARY, "cluster", "init", "--nodes", "1", "--dir", cluster_dir,
                           "--base-port", "0", "--client-certs"});
  ASSERT_EQ(init.status, 0) << init.output;
  EXPECT_TRUE(std::filesystem::exists(cluster_dir + "/admin-local.pem")) << "the cluster commands' own certificate";
  auto cert = [&](const std::string& dir, const std::string& role, const std::string& name) {
    return run_command({HOLDFAST_BINARY, "--json", "cluster", "cert", "--dir", dir, "--role", role, "--name", name});
  };
  ASSERT_EQ(cert(cluster_dir, "admin", "ops").status, 0);
  ASSERT_EQ(cert(cluster_dir, "client", "shop-1").status, 0);
  auto again = cert(cluster_dir, "client", "shop-1");
  EXPECT_EQ(again.status, 2) << "a certificate is never overwritten: " << again.output;
  EXPECT_NE(cert(cluster_dir, "root", "x").status, 0);
  EXPECT_NE(cert(cluster_dir, "client", "a\"b").status, 0);
  // A certificate another CA signed, with the admin role in its name.
  ASSERT_EQ(run_command({HOLDFAST_BINARY, "cluster", "init", "--nodes", "1", "--dir", dir_ + "/other", "--base-port", "0"}).status, 0);
  ASSERT_EQ(cert(dir_ + "/other", "admin", "evil").status, 0);

  node_ = std::make_unique<node_process>(HOLDFAST_BINARY, dir_ + "/data",
                                         std::vector<std::string>{"--cluster", cluster_dir + "/cluster.toml", "--id", "1"});
  auto with = [&](const std::string& pem, std::vector<std::string> args) {
    std::vector<std::string> all{HOLDFAST_BINARY, "--json", "--node", node_->address(), "--tls-ca", cluster_dir + "/ca.pem"};
    if (!pem.empty()) {
      for (auto a : {std::string("--tls-cert"), pem + ".pem", std::string("--tls-key"), pem + ".key"}) all.push_back(a);
    }
    all.insert(all.end(), args.begin(), args.end());
    return run_command(all);
  };
  auto admin = cluster_dir + "/admin-ops", shop = cluster_dir + "/client-shop-1";
  auto created = with(admin, {"sku", "create", "tee", "--stock", "5", "--price", "900"});
  ASSERT_EQ(created.status, 0) << created.output;
  // The client role buys and is refused the catalog's changes, which change nothing.
  auto held = with(shop, {"reserve", "tee", "2", "--hold", "c1"});
  EXPECT_EQ(held.status, 0) << held.output;
  auto refused = with(shop, {"restock", "tee", "100"});
  EXPECT_EQ(refused.status, 1) << refused.output;
  EXPECT_NE(refused.output.find("forbidden"), std::string::npos) << refused.output;
  EXPECT_NE(with(shop, {"sku", "create", "mug", "--stock", "1", "--price", "1"}).status, 0);
  // Without a certificate, with another CA's, or with a node's: no call is served.
  for (auto* who : {"", "other", "node"}) {
    std::string pem = std::string(who) == "other" ? dir_ + "/other/admin-evil"
                      : std::string(who) == "node" ? cluster_dir + "/node-1" : "";
    auto r = with(pem, {"restock", "tee", "100"});
    EXPECT_NE(r.status, 0) << who << ": " << r.output;
  }
  auto unnamed = with(cluster_dir + "/node-1", {"reserve", "tee", "1", "--hold", "n1"});
  EXPECT_EQ(unnamed.status, 1) << "a node's certificate names no role: " << unnamed.output;
  EXPECT_NE(unnamed.output.find("no role"), std::string::npos) << unnamed.output;
  // A mutation without a certificate is refused before it is sent: unreachable (exit 2),
  // never outcome_unknown (the client asks status first on a TLS connection).
  auto bare = with("", {"reserve", "tee", "1", "--hold", "bare-1"});
  EXPECT_EQ(bare.status, 2) << bare.output;
  EXPECT_EQ(bare.output.find("outcome_unknown"), std::string::npos) << bare.output;
  EXPECT_NE(bare.output.find("--tls-cert"), std::string::npos) << bare.output;
  auto stranger = with(dir_ + "/other/admin-evil", {"sku", "show", "tee"});
  EXPECT_EQ(stranger.status, 2) << stranger.output;
  // The node's alert, or (TLS 1.3: the client's handshake is done before the node judges its
  // certificate) the connection closed at the first write: either way the CLI names the flags.
  EXPECT_NE(stranger.output.find("--tls-cert"), std::string::npos) << stranger.output;
  // What each did: 5 on hand, 2 held, nothing restocked or created.
  auto shown = with(admin, {"sku", "show", "tee"});
  ASSERT_EQ(shown.status, 0) << shown.output;
  auto j = nlohmann::json::parse(shown.output);
  EXPECT_EQ(j["on_hand"], 5) << shown.output;
  EXPECT_EQ(j["reserved"], 2) << shown.output;
  EXPECT_NE(with(admin, {"sku", "show", "mug"}).status, 0);
  // The peer port trusts the same CA: a client certificate completes the handshake there,
  // and is closed at once rather than holding a member's slot (it could keep members out).
  {
    cluster_config cfg;
    std::string error;
    ASSERT_TRUE(load_cluster_file(cluster_dir + "/cluster.toml", cfg, error)) << error;
    auto io = kj::setupAsyncIo();
    client_options o;
    o.tls_ca = cluster_dir + "/ca.pem";
    o.tls_cert = shop + ".pem";
    o.tls_key = shop + ".key";
    o.tls_name = node_tls_name(1);
    auto stream = connect_stream(*io.provider, cfg.members[0].peer, o).wait(io.waitScope);
    char byte;
    auto read = stream->tryRead(&byte, 1, 1).then([](size_t n) { return n; }, [](kj::Exception&&) { return size_t{0}; });
    auto n = io.provider->getTimer().timeoutAfter(5 * kj::SECONDS, kj::mv(read)).wait(io.waitScope);
    EXPECT_EQ(n, 0u) << "the node closed the peer connection of a client certificate";
  }
  // cluster cert writes no key through a link someone planted, even a dangling one.
  std::filesystem::create_symlink(dir_ + "/planted.key", cluster_dir + "/client-sym.key");
  EXPECT_NE(cert(cluster_dir, "client", "sym").status, 0);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/planted.key"));
  // cluster status with the client certificate (status is open to every role).
  auto status = run_command({HOLDFAST_BINARY, "cluster", "status", "--cluster", cluster_dir + "/cluster.toml",
                             "--tls-cert", shop + ".pem", "--tls-key", shop + ".key"});
  EXPECT_EQ(status.status, 0) << status.output;
  EXPECT_NE(status.output.find(" up "), std::string::npos) << status.output;
}

// cluster up, status and down on a client_certs cluster: the cluster commands use the
// local admin certificate cluster init wrote (a client without one is refused by every node).
TEST_F(roles_process_test, cluster_up_status_and_down_work_on_a_client_certs_cluster) {
  auto cluster_dir = dir_ + "/up";
  struct down_at_end {
    std::string dir;
    ~down_at_end() { run_command({HOLDFAST_BINARY, "cluster", "down", "--dir", dir}); }
  } guard{cluster_dir};
  auto up = run_command({HOLDFAST_BINARY, "cluster", "up", "--nodes", "2", "--dir", cluster_dir, "--base-port", "0",
                         "--client-certs"});
  ASSERT_EQ(up.status, 0) << up.output;
  auto status = run_command({HOLDFAST_BINARY, "--json", "cluster", "status", "--dir", cluster_dir});
  ASSERT_EQ(status.status, 0) << status.output;
  auto nodes = nlohmann::json::parse(status.output)["nodes"];
  ASSERT_EQ(nodes.size(), 2u) << status.output;
  for (auto& n : nodes) EXPECT_EQ(n["state"], "up") << status.output;
  // Without the local certificate the members refuse the CLI, and status says they answer
  // nothing it may read (never that they are fine).
  std::filesystem::rename(cluster_dir + "/admin-local.pem", cluster_dir + "/hidden.pem");
  auto refused = run_command({HOLDFAST_BINARY, "cluster", "status", "--dir", cluster_dir});
  EXPECT_NE(refused.status, 0) << refused.output;
  std::filesystem::rename(cluster_dir + "/hidden.pem", cluster_dir + "/admin-local.pem");
  EXPECT_EQ(run_command({HOLDFAST_BINARY, "cluster", "down", "--dir", cluster_dir}).status, 0);
}
