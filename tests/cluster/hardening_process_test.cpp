// The hardening issue's defects (#8) as a user or an attacker meets them: real
// `holdfast` processes on loopback, the CLI as a user types it, hand-made RPC frames.
#include <gtest/gtest.h>
#include <sstream>

#include <nlohmann/json.hpp>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "client/client.hpp"
#include "harness/node_process.hpp"
#include "harness/processes.hpp"
#include "metrics_text.hpp"
#include "raw_rpc.hpp"
#include "gateway/http_api.hpp"
#include "gateway/webhook.hpp"
#include "faultfs.hpp"

namespace holdfast::testing {
namespace {

using namespace std::chrono_literals;

class hardening_process_test : public ::testing::Test {
protected:
  hardening_process_test() : dir_(make_temp_dir("holdfast-hardening")), data_(dir_ + "/data") {}
  ~hardening_process_test() override {
    node_.reset();
    std::filesystem::remove_all(dir_);
  }
  void start(const std::vector<std::string>& args = {},
             const std::vector<std::string>& prefix = {}) {
    node_ = std::make_unique<node_process>(HOLDFAST_BINARY, data_, args, 30s,
                                           std::vector<std::string>{}, prefix);
  }
  // Runs the CLI; returns (exit status, stdout and stderr together).
  command_result cli(std::vector<std::string> args) {
    args.insert(args.begin(), HOLDFAST_BINARY);
    return run_command(args);
  }
  command_result cli_node(std::vector<std::string> args) {
    args.insert(args.begin(), {"--node", node_->address()});
    return cli(args);
  }
  // The JSON object a --json command printed.
  static nlohmann::json json_of(const command_result& r) {
    auto at = r.output.find('{');
    if (at == std::string::npos) return nullptr;
    return nlohmann::json::parse(r.output.substr(at, r.output.find('\n', at) - at), nullptr, false);
  }
  static int64_t rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
    return -1;
  }

  // A stopped node's directory with one SKU in it, for copies to damage; the name of its
  // log segment ("log/000...1.log").
  std::string stopped_directory_with_data() {
    start();
    {
      blocking_client c(node_->address());
      EXPECT_EQ(c.create_sku("tee", 10, 100).status, code::ok);
    }
    EXPECT_EQ(node_->terminate(), 0);
    std::string segment;
    for (auto& e : std::filesystem::directory_iterator(data_ + "/log"))
      if (e.path().extension() == ".log") segment = "log/" + e.path().filename().string();
    EXPECT_FALSE(segment.empty());
    return segment;
  }
  std::string copy_of_data(const std::string& name) {
    auto copy = dir_ + "/" + name;
    std::filesystem::copy(data_, copy, std::filesystem::copy_options::recursive);
    return copy;
  }
  // Both tools give `directory` one verdict, at once: the node exits 2 and check says
  // damaged, each naming `reason`. Each has 10 s before it is killed.
  void expect_refused_by_node_and_check(const std::string& directory, const std::string& reason) {
    auto node = run_command_for(
      {HOLDFAST_BINARY, "node", "--data", directory, "--listen", "127.0.0.1:0"}, 10s);
    EXPECT_FALSE(node.timed_out) << "the node still ran after 10 s on " << directory;
    EXPECT_EQ(node.status, 2) << node.output;
    EXPECT_NE(node.output.find(reason), std::string::npos) << reason << "\n" << node.output;
    auto check = run_command_for({HOLDFAST_BINARY, "--json", "check", "--data", directory}, 10s);
    EXPECT_FALSE(check.timed_out) << "check still ran after 10 s on " << directory;
    EXPECT_EQ(check.status, 1) << check.output;
    EXPECT_EQ(json_of(check)["status"], "damaged") << check.output;
    EXPECT_NE(check.output.find(reason), std::string::npos) << reason << "\n" << check.output;
  }

  std::string dir_, data_;
  std::unique_ptr<node_process> node_;
};

// Defect 1.
TEST_F(hardening_process_test, a_second_node_on_one_directory_is_refused) {
  start();
  try {
    node_process second(HOLDFAST_BINARY, data_);
    FAIL() << "a second node started on " << data_;
  } catch (const std::runtime_error& e) {
    std::string why = e.what();
    EXPECT_NE(why.find("status 2"), std::string::npos) << why;
    EXPECT_NE(why.find("in use by another Holdfast process"), std::string::npos) << why;
    EXPECT_NE(why.find(std::to_string(node_->pid())), std::string::npos) << why;
  }
  // A backup onto the live directory is refused; a backup of it is fine.
  EXPECT_EQ(cli({"backup", "--data", dir_ + "/elsewhere-missing", "--to", data_}).status, 2);
  auto copy = cli({"backup", "--data", data_, "--to", dir_ + "/copy"});
  EXPECT_EQ(copy.status, 0) << copy.output;
  // check wants a stopped node's directory (it reads in several transactions), or a copy.
  auto live = cli({"check", "--data", data_});
  EXPECT_EQ(live.status, 2) << live.output;
  EXPECT_NE(live.output.find("in use by a running node"), std::string::npos) << live.output;
  EXPECT_EQ(cli({"check", "--data", dir_ + "/copy"}).status, 0);
  EXPECT_NE(cli({"backup", "--data", data_, "--to", dir_ + "/copy"}).status, 0)
    << "a backup overwrote a directory that was not empty";
  EXPECT_NE(cli({"backup", "--data", data_, "--to", data_}).status, 0);
}

// Defect 5, as an operator meets it.
TEST_F(hardening_process_test, truncated_or_lost_data_refuses_to_start_and_check_says_why) {
  start();
  {
    blocking_client c(node_->address());
    for (int i = 0; i < 200; ++i)
      ASSERT_EQ(c.create_sku("sku-" + std::to_string(i), 10, 100).status, code::ok);
  }
  node_->terminate();
  auto ok = cli({"check", "--data", data_});
  EXPECT_EQ(ok.status, 0) << ok.output;
  EXPECT_NE(ok.output.find("200 SKUs"), std::string::npos) << ok.output;

  auto file = data_ + "/data.mdb";
  ASSERT_EQ(truncate(file.c_str(), static_cast<off_t>(std::filesystem::file_size(file) / 2)), 0);
  EXPECT_THROW(start(), std::runtime_error);
  auto damaged = cli({"--json", "check", "--data", data_});
  EXPECT_EQ(damaged.status, 1);
  auto report = json_of(damaged);
  EXPECT_EQ(report["status"], "damaged") << damaged.output;
  EXPECT_NE(damaged.output.find("truncated"), std::string::npos) << damaged.output;

  std::filesystem::remove(file);
  try {
    start();
    FAIL() << "a node served an empty catalogue after its data was deleted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
  // A typo is not a new empty directory.
  auto typo = cli({"backup", "--data", dir_ + "/dat", "--to", dir_ + "/b"});
  EXPECT_EQ(typo.status, 2);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/dat"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/b"));
}

// open() of a FIFO waits for a writer: a FIFO where a data file belongs hung the node,
// holding the directory's lock and deaf to SIGTERM, and check with it. A directory or a
// device there is refused as clearly.
TEST_F(hardening_process_test, a_fifo_directory_or_device_where_a_data_file_belongs_is_refused_at_once) {
  auto segment = stopped_directory_with_data();
  struct damage {
    std::string file;
    std::string kind;
  };
  std::vector<damage> cases = {{"log/newest", "a FIFO"},      {"holdfast.format", "a FIFO"},
                               {segment, "a FIFO"},           {"data.mdb", "a FIFO"},
                               {"holdfast.lock", "a FIFO"},   {"lock.mdb", "a FIFO"},
                               {"holdfast.format", "a directory"}, {segment, "a directory"},
                               {"data.mdb", "a directory"},   {"data.mdb", "a character device"}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    SCOPED_TRACE(c.file + " as " + c.kind);
    auto copy = copy_of_data("case-" + std::to_string(i));
    auto path = copy + "/" + c.file;
    ASSERT_TRUE(std::filesystem::remove(path));
    if (c.kind == "a FIFO") {
      ASSERT_EQ(mkfifo(path.c_str(), 0644), 0);
    }
    if (c.kind == "a directory") std::filesystem::create_directory(path);
    if (c.kind == "a character device") std::filesystem::create_symlink("/dev/null", path);
    expect_refused_by_node_and_check(copy, c.file + " is not a regular file (" + c.kind + ")");
  }
}

// check and the node disagreed: an empty holdfast.format was "damaged" to check while the
// node rewrote it and started; `log/newest` as a directory was "ok" to check while the
// node refused. Both come from one verdict now, and both refuse: neither is something a
// crash leaves (both files are written aside, synced and renamed into place).
TEST_F(hardening_process_test, check_and_the_node_give_one_verdict) {
  stopped_directory_with_data();
  auto empty_marker = copy_of_data("empty-marker");
  std::ofstream(empty_marker + "/holdfast.format", std::ios::trunc).flush();
  expect_refused_by_node_and_check(empty_marker, "holdfast.format is empty");

  auto newest_directory = copy_of_data("newest-directory");
  ASSERT_TRUE(std::filesystem::remove(newest_directory + "/log/newest"));
  std::filesystem::create_directory(newest_directory + "/log/newest");
  expect_refused_by_node_and_check(newest_directory,
                                   "log/newest is not a regular file (a directory)");
  // The directory they were copied from is sound to both.
  EXPECT_EQ(cli({"check", "--data", data_}).status, 0);
  start();
}

// A first start killed after LMDB made its files and before holdfast.format was written
// left a directory every later start refused. It starts now, as a new directory.
TEST_F(hardening_process_test, a_first_start_killed_before_marking_leaves_a_directory_that_starts) {
  std::filesystem::create_directories(data_ + "/log");
  std::ofstream(data_ + "/lock.mdb").flush();
  std::ofstream(data_ + "/data.mdb").flush();
  auto check = run_command_for({HOLDFAST_BINARY, "check", "--data", data_}, 10s);
  EXPECT_EQ(check.status, 1) << check.output;
  EXPECT_NE(check.output.find("not a Holdfast data directory yet"), std::string::npos)
    << check.output;
  start();
  ASSERT_EQ(cli_node({"sku", "create", "tee", "--stock", "3", "--price", "100"}).status, 0);
  node_->terminate();
  auto sound = cli({"check", "--data", data_});
  EXPECT_EQ(sound.status, 0) << sound.output;
}

// create and adjust stop at 1,000,000,000 units on hand; restock went past it.
TEST_F(hardening_process_test, a_restock_past_the_stock_maximum_is_invalid_and_changes_nothing) {
  start();
  ASSERT_EQ(cli_node({"sku", "create", "big", "--stock", "1000000000", "--price", "1"}).status, 0);
  auto past = cli_node({"--json", "restock", "big", "1"});
  EXPECT_EQ(past.status, 2) << past.output;
  EXPECT_EQ(json_of(past)["status"], "invalid") << past.output;
  auto shown = json_of(cli_node({"--json", "sku", "show", "big"}));
  EXPECT_EQ(shown["on_hand"], 1'000'000'000) << shown;
  EXPECT_EQ(shown["stocked"], 1'000'000'000) << shown;
}

// Defects 4 and 6, through the CLI.
TEST_F(hardening_process_test, the_cli_never_reports_an_ended_hold_as_reserved_nor_unreachable) {
  start();
  ASSERT_EQ(cli_node({"sku", "create", "mug", "--stock", "3", "--price", "100"}).status, 0);
  ASSERT_EQ(cli_node({"reserve", "mug", "1", "--hold", "h1", "--ttl", "300ms"}).status, 0);
  ASSERT_EQ(cli_node({"reserve", "mug", "1", "--hold", "h2", "--ttl", "1m"}).status, 0);
  ASSERT_EQ(cli_node({"confirm", "h2"}).status, 0);
  // The retry the README recommends after outcome_unknown, once the hold ended.
  ASSERT_TRUE(wait_until(
    [&] { return cli_node({"--json", "hold", "show", "h1"}).output.find("expired") != std::string::npos; },
    10s));
  auto retry = cli_node({"--json", "reserve", "mug", "1", "--hold", "h1", "--ttl", "300ms"});
  EXPECT_EQ(retry.status, 1) << retry.output;
  EXPECT_EQ(json_of(retry)["status"], "hold_expired");
  EXPECT_EQ(json_of(retry)["state"], "expired");
  auto text = cli_node({"reserve", "mug", "1", "--hold", "h2", "--ttl", "1m"});
  EXPECT_EQ(text.status, 1);
  EXPECT_NE(text.output.find("wrong_state"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("confirmed"), std::string::npos) << text.output;
  EXPECT_EQ(text.output.find("reserved hold"), std::string::npos) << text.output;

  // Invalid UTF-8 is refused by the node, and the CLI says so (not "unreachable").
  auto bad = cli_node({"--json", "sku", "create", "caf\xc3", "--stock", "1", "--price", "1"});
  EXPECT_EQ(bad.status, 2);
  auto j = json_of(bad);
  ASSERT_FALSE(j.is_discarded()) << bad.output;
  EXPECT_EQ(j["status"], "invalid") << bad.output;
  EXPECT_NE(j["error"].get<std::string>().find("UTF-8"), std::string::npos);
  auto hold = cli_node({"--json", "reserve", "mug", "1", "--hold", "x\xff\xfe", "--ttl", "1m"});
  EXPECT_EQ(json_of(hold)["status"], "invalid") << hold.output;
  auto mug = json_of(cli_node({"--json", "sku", "show", "mug"}));
  EXPECT_EQ(mug["reserved"], 0);
  EXPECT_EQ(mug["sold"], 1);
}

// Defect 12.
TEST_F(hardening_process_test, a_call_to_a_frozen_node_ends_at_the_deadline_as_outcome_unknown) {
  start();
  ASSERT_EQ(cli_node({"sku", "create", "ice", "--stock", "3", "--price", "100"}).status, 0);
  node_->stop_signal();
  auto t0 = std::chrono::steady_clock::now();
  auto r = cli_node({"--json", "--timeout-ms", "500", "reserve", "ice", "1", "--hold", "f1"});
  auto took = std::chrono::steady_clock::now() - t0;
  node_->continue_signal();
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_EQ(json_of(r)["status"], "outcome_unknown") << r.output;
  EXPECT_LT(took, 10s);
  auto q = cli_node({"--json", "--timeout-ms", "500", "sku", "show", "ice"});
  EXPECT_EQ(q.status, 0) << "the node serves again once it runs";
  // The retry with the same hold id settles it.
  auto retry = cli_node({"--json", "reserve", "ice", "1", "--hold", "f1"});
  EXPECT_EQ(json_of(retry)["status"], "ok") << retry.output;
  EXPECT_EQ(json_of(cli_node({"--json", "sku", "show", "ice"}))["reserved"], 1);
}

// The node's own deadline (--request-timeout-ms, kept on the network thread's timer): a
// call its actors have not answered by then gets outcome_unknown, and the node serves on.
TEST_F(hardening_process_test, a_call_the_actors_answer_late_is_outcome_unknown_at_the_node_deadline) {
  start({"--request-timeout-ms", "1"});
  client_options options;
  options.call_timeout_ms = 30'000;
  blocking_client c(node_->address(), options);
  // 4096 SKUs created, logged and fsync'd in one call take far longer than 1 ms.
  std::vector<sku_op> creates;
  for (int i = 0; i < 4096; ++i) creates.push_back({sku_op_kind::create, "late-" + std::to_string(i), 5, 1, {}});
  auto rs = c.create_skus(creates);
  ASSERT_EQ(rs.size(), creates.size());
  EXPECT_EQ(rs.back().status, code::outcome_unknown) << to_string(rs.back().status) << " " << rs.back().message;
  EXPECT_NE(rs.back().message.find("no answer within 1 ms"), std::string::npos) << rs.back().message;
  // The work went on behind the answer: once done, the SKUs are there (outcome_unknown
  // means "may have been applied"), and the node answers what it can in time.
  bool created = wait_until([&] { return c.query_sku("late-4095").status == code::ok; }, 30s);
  EXPECT_TRUE(created);
}

// Left open in an earlier closing note: admission was given back when the node answered
// outcome_unknown at --request-timeout-ms, while the operations stayed queued behind a stalled
// fsync, so retrying callers could queue more than --inflight-max. A disk that stops
// answering (faultfs stall-sync) makes the first batch late; the retry is refused until the
// late batch really ends.
TEST_F(hardening_process_test, a_late_answer_keeps_its_operations_counted_until_they_really_end) {
  faultfs::options fs;
  fs.data_dir = data_;
  fs.state_dir = dir_ + "/faultfs-state";
  fs.shim_path = FAULTFS_SHIM_PATH;
  fs.control_path = dir_ + "/faultfs-control";
  faultfs::set_fault(fs, "normal");
  node_ = std::make_unique<node_process>(HOLDFAST_BINARY, data_,
                                         std::vector<std::string>{"--request-timeout-ms", "300", "--inflight-max", "100"},
                                         30s, faultfs::child_environment(fs));
  client_options o;
  o.call_timeout_ms = 30'000;
  o.auto_batch = false;
  blocking_client c(node_->address(), o);
  ASSERT_EQ(c.create_sku("stall", 1'000, 1).status, code::ok);
  auto batch = [&](const std::string& prefix) {
    std::vector<hold_op> ops;
    for (int i = 0; i < 60; ++i) ops.push_back({hold_op_kind::reserve, "stall", prefix + std::to_string(i), 1, 60'000, {}});
    return c.async().reserve_batch(ops).wait(c.io().waitScope);
  };
  faultfs::set_fault(fs, "stall-sync");
  auto late = batch("first-");
  EXPECT_EQ(late.front().status, code::outcome_unknown) << late.front().message;
  // 60 late + 60 new > 100: refused (OVERLOADED), not queued behind the stall.
  bool overloaded = false;
  try {
    batch("retry-");
  } catch (const kj::Exception& e) {
    overloaded = e.getType() == kj::Exception::Type::OVERLOADED;
  }
  EXPECT_TRUE(overloaded);
  faultfs::set_fault(fs, "normal");
  // Once the late batch ends for real, the room is back.
  ASSERT_TRUE(wait_until([&] { return c.query_hold("first-59", "stall").status == code::ok; }, 20s));
  auto after = batch("after-");
  EXPECT_EQ(after.front().status, code::ok) << after.front().message;
}

// A blocking client runs its event loop only inside calls, and KJ's timer advances only
// while the loop runs: a call after an idle spell longer than the timeout used to time
// out at once ("no answer within ...") against a node that answers in microseconds
// (found by bench hot-sku's 30-second rows).
TEST_F(hardening_process_test, a_blocking_client_idle_longer_than_its_timeout_still_gets_answers) {
  start();
  client_options options;
  options.call_timeout_ms = 300;
  blocking_client c(node_->address(), options);
  ASSERT_EQ(c.create_sku("idle", 5, 1).status, code::ok);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  auto r = c.query_sku("idle");
  EXPECT_EQ(r.status, code::ok) << to_string(r.status) << " " << r.message;
  EXPECT_EQ(c.reserve("idle", 1, "after-idle", 60'000).status, code::ok);
}

// Defect 3, with real concurrency: two connections reserve one id on two SKUs at once.
TEST_F(hardening_process_test, concurrent_reserves_of_one_id_on_two_skus_grant_it_once) {
  start();
  blocking_client c(node_->address());
  ASSERT_EQ(c.create_sku("a", 1'000, 1).status, code::ok);
  ASSERT_EQ(c.create_sku("b", 1'000, 1).status, code::ok);
  auto& io = c.io();
  auto other = client::connect(*io.provider, node_->address()).wait(io.waitScope);
  int granted_total = 0;
  for (int i = 0; i < 30; ++i) {
    auto id = "dup-" + std::to_string(i);
    auto pa = c.async().reserve({hold_op_kind::reserve, "a", id, 1, 60'000, {}});
    auto pb = other->reserve({hold_op_kind::reserve, "b", id, 1, 60'000, {}});
    auto ra = pa.wait(io.waitScope);
    auto rb = pb.wait(io.waitScope);
    int granted = (ra.status == code::ok) + (rb.status == code::ok);
    EXPECT_EQ(granted, 1) << id;
    granted_total += granted;
    auto& lost = ra.status == code::ok ? rb : ra;
    EXPECT_EQ(lost.status, code::hold_conflict);
    EXPECT_EQ(lost.hold.qty, 1) << "the conflict carries the real hold";
    EXPECT_EQ(lost.hold.state, hold_state::active);
  }
  EXPECT_EQ(c.query_sku("a").sku.reserved + c.query_sku("b").sku.reserved, granted_total);
}

// Defect 7: more connections than the fd limit, idle and half-open-frame timeouts.
TEST_F(hardening_process_test, the_listener_survives_fd_exhaustion_and_idle_or_stuck_peers) {
  start({"--idle-timeout-ms", "1000", "--frame-timeout-ms", "1000"},
        {"/usr/bin/prlimit", "--nofile=64", "--"});
  // A peer that starts a frame and stops: closed at the frame timeout.
  int stuck = connect_raw(node_->address());
  uint32_t header[2] = {0, 16};  // one segment of 16 words, none of which arrive
  ASSERT_EQ(write(stuck, header, sizeof header), static_cast<ssize_t>(sizeof header));
  std::vector<int> fds;
  for (int i = 0; i < 120; ++i) {  // past the fd limit: refused (or accept fails with EMFILE)
    int fd = connect_raw(node_->address());
    if (fd >= 0) fds.push_back(fd);
  }
  // Idle and refused connections are closed; then a normal client is served.
  ASSERT_TRUE(wait_until(
    [&] {
      try {
        client_options o;
        o.call_timeout_ms = 2'000;
        blocking_client c(node_->address(), o);
        return c.query_sku("nothing").status == code::unknown_sku;
      } catch (const std::exception&) {
        return false;
      }
    },
    30s));
  char byte;
  EXPECT_LE(read(stuck, &byte, 1), 0) << "the half-open frame was not closed";
  for (int fd : fds) close(fd);
  close(stuck);
  // With 64 descriptors the node keeps them for itself: it lowers --connections-max at
  // start (found by the adversarial pass: connections took the descriptors the log needed
  // to open a segment, and writes failed with i/o errors).
  EXPECT_NE(node_->log().find("--connections-max 1024 lowered to 1"), std::string::npos) << node_->log();
}

// Newcomer edges (issue 19): `--version`, and a mistyped command is named, with the
// nearest one, as text or as JSON under --json; nothing is contacted.
TEST_F(hardening_process_test, version_and_mistyped_commands_say_what_they_are) {
  auto version = cli({"--version"});
  EXPECT_EQ(version.status, 0) << version.output;
  EXPECT_EQ(version.output.rfind("holdfast ", 0), 0u) << version.output;
  auto typo = cli({"--node", "127.0.0.1:1", "resrve", "tee", "1", "--hold", "h"});
  EXPECT_EQ(typo.status, 2) << typo.output;
  EXPECT_NE(typo.output.find("unknown command 'resrve'; did you mean 'reserve'?"), std::string::npos) << typo.output;
  auto more = cli({"sku-create", "tee"});
  EXPECT_NE(more.output.find("did you mean 'sku'?"), std::string::npos) << more.output;
  auto json = cli({"--json", "chekout"});
  EXPECT_EQ(json.status, 2);
  auto j = json_of(json);
  ASSERT_TRUE(j.is_object()) << json.output;
  EXPECT_EQ(j["status"], "invalid");
  EXPECT_NE(j["error"].get<std::string>().find("did you mean 'checkout'?"), std::string::npos) << json.output;
}

// Found by the adversarial pass: node options out of their range started a node that
// could not work (--request-timeout-ms -5 answered every call outcome_unknown at once,
// --connections-max 0 refused every client, --batch-max below a cart's lines cancelled
// every large checkout). Each is refused at start with its range, and nothing is created.
TEST_F(hardening_process_test, node_options_out_of_range_are_refused_at_start) {
  for (auto [flag, value] : std::vector<std::pair<std::string, std::string>>{
         {"--request-timeout-ms", "-5"}, {"--connections-max", "0"},    {"--frame-timeout-ms", "-1"},
         {"--inflight-max", "0"},        {"--idle-timeout-ms", "0"},    {"--connection-unfinished-max", "0"},
         {"--map-size-mb", "0"},         {"--batch-max", "99"},         {"--batch-max", "16385"},
         {"--write-stall-timeout-ms", "0"}, {"--payment-timeout-ms", "0"}, {"--idle-ms", "-1"}}) {
    auto r = cli({"node", "--data", data_, flag, value});
    EXPECT_EQ(r.status, 2) << flag << " " << value << ": " << r.output;
    EXPECT_NE(r.output.find(flag), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("not in range"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(data_)) << flag << " " << value << " created the data directory";
  }
}

// Issue 19: `holdfast node --config FILE` takes every long flag as a key; the command
// line overrides the file; durations take units, in the file and as flags (the old
// bare-ms spelling still works); a misspelt key or a bad value stops the node at start,
// naming the file and line, and creates nothing.
TEST_F(hardening_process_test, a_config_file_gives_the_flags_and_the_command_line_overrides_it) {
  auto file = dir_ + "/node.toml";
  std::ofstream(file) << "data = \"" << dir_ << "/from-the-file\"  # overridden by --data\n"
                      << "batch-max = 100\n"
                      << "http = \"127.0.0.1:0\"\n"
                      << "request-timeout = \"7s\"\n"
                      << "idle-timeout-ms = 300000\n";
  auto accepted = [&](int n) {  // how many of one batch of n reserves were granted
    blocking_client c(node_->address());
    c.create_sku("cfg", 10'000, 1);
    std::vector<hold_op> ops;
    for (int i = 0; i < n; ++i)
      ops.push_back({hold_op_kind::reserve, "cfg", "c" + std::to_string(n) + "-" + std::to_string(i), 1, 60'000, {}});
    int ok = 0;
    try {
      for (auto& r : c.async().reserve_batch(ops).wait(c.io().waitScope)) ok += r.status == code::ok;
    } catch (const kj::Exception&) {
    }
    return ok;
  };
  start({"--config", file});
  EXPECT_FALSE(node_->http_address().empty()) << "the file's http key was not applied";
  EXPECT_EQ(accepted(150), 0) << "the file's batch-max = 100 was not applied";
  EXPECT_EQ(accepted(100), 100);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/from-the-file")) << "--data did not override the file";
  EXPECT_EQ(node_->terminate(), 0);
  start({"--config", file, "--batch-max", "200", "--request-timeout", "1500ms"});
  EXPECT_EQ(accepted(150), 150) << "--batch-max on the command line did not override the file";
  EXPECT_EQ(node_->terminate(), 0);

  // Refused at start, naming the file and line, or the flag; nothing created.
  std::filesystem::remove_all(data_);
  for (auto [text, says] : std::vector<std::pair<std::string, std::string>>{
         {"batch-max = 100\nbatch-mx = 5\n", "node.toml:2: 'batch-mx' is not an option"},
         {"idle-timeout = \"0s\"\n", "0s not in range 1ms to 168h"},
         {"request-timeout = \"10 parsecs\"\n", "is not a duration"},
         {"batch-max = [\n", "node.toml:"},
         {"batch-max = \"many\"\n", "--batch-max"},
         {"batch-max = { a = 1 }\n", "'batch-max' takes a string, a number, true/false or a list"},
         // Found by the adversarial pass: a `help` key printed help and exited 0; a bad
         // value did not say which line of the file it came from.
         {"help = true\n", "node.toml:1: 'help' is not an option"},
         {"\n\nidle = \"abc\"\n", "--config " + file + ":3: --idle-ms"}}) {
    std::ofstream(file) << text;
    auto r = run_command_for({HOLDFAST_BINARY, "--json", "node", "--data", data_, "--listen", "127.0.0.1:0", "--config", file},
                             10s);
    EXPECT_FALSE(r.timed_out) << text << " started a node";
    EXPECT_EQ(r.status, 2) << text << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << text << r.output;
    EXPECT_EQ(json_of(r)["status"], "invalid") << r.output;
    EXPECT_FALSE(std::filesystem::exists(data_)) << text;
  }
  // Neither a FIFO nor a device is read as a config file (a FIFO waited for ever).
  auto fifo = dir_ + "/fifo.toml";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  for (auto path : {fifo, std::string("/dev/zero")}) {
    auto r = run_command_for({HOLDFAST_BINARY, "node", "--data", data_, "--listen", "127.0.0.1:0", "--config", path}, 10s);
    EXPECT_FALSE(r.timed_out) << path;
    EXPECT_EQ(r.status, 2) << path << r.output;
    EXPECT_NE(r.output.find("not a regular file"), std::string::npos) << r.output;
  }
  // An option's environment variable beats the file, as the command line does (found by
  // the adversarial pass: a webhook secret rotated through HOLDFAST_WEBHOOK_SECRET was
  // silently overridden by the file's).
  std::ofstream(file) << "webhook-secret = \"from-the-file\"\nhttp = \"127.0.0.1:0\"\n";
  node_ = std::make_unique<node_process>(HOLDFAST_BINARY, dir_ + "/env-data",  // a log of its own
                                         std::vector<std::string>{"--config", file}, 30s,
                                         std::vector<std::string>{"HOLDFAST_WEBHOOK_SECRET=from-the-env"});
  std::string answer;
  auto webhook = [&](const std::string& secret) {
    auto now_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    webhook_event event;
    event.id = "evt_1";
    event.type = "payment_intent.succeeded";
    event.created_ms = now_s * 1000;
    event.intent.id = "pi_1";
    event.intent.order_id = "nobody";
    event.intent.amount_cents = 100;
    event.intent.status = intent_status::captured;
    auto body = webhook_body(event);
    std::string error;
    return http_post("http://" + node_->http_address() + "/webhooks/payments",
                     {{"Holdfast-Signature", sign_webhook(secret, now_s, body)}}, body, 5'000, answer, error);
  };
  EXPECT_EQ(webhook("from-the-file"), 400) << "the file's secret beat the environment's: " << answer;
  EXPECT_NE(webhook("from-the-env"), 400) << answer;
  EXPECT_EQ(node_->terminate(), 0);

  // Durations as flags: units, the old bare ms, and a readable refusal.
  auto r = cli({"--json", "reserve", "x", "1", "--hold", "h", "--ttl", "0s"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("--ttl: 0s not in range 1ms to 168h"), std::string::npos) << r.output;
  EXPECT_EQ(json_of(r)["status"], "invalid") << r.output;
}

// Newcomer edges (issue 19): a malformed --node is a usage error before anything is
// dialled, `check` of a directory that is not there says so (not DAMAGED), and a hold's
// deadline reads as a time, not epoch ms.
TEST_F(hardening_process_test, malformed_addresses_missing_directories_and_deadlines_read_as_people_expect) {
  for (auto [address, says] : std::vector<std::pair<std::string, std::string>>{
         {"127.0.0.1", "no port"}, {"127.0.0.1:", "an empty port"}, {"127.0.0.1:99999", "not a number from 1 to 65535"},
         {":7400", "no host"}, {"127.0.0.1:http", "not a number from 1 to 65535"}}) {
    auto r = run_command_for({HOLDFAST_BINARY, "--json", "--node", address, "sku", "show", "x"}, 10s);
    EXPECT_EQ(r.status, 2) << address << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << address << r.output;
    EXPECT_EQ(json_of(r)["status"], "invalid") << r.output;
  }
  auto r = cli({"--json", "check", "--data", dir_ + "/not-there"});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("no such directory"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/not-there"));

  start();
  ASSERT_EQ(cli_node({"sku", "create", "tee", "--stock", "5", "--price", "100"}).status, 0);
  r = cli_node({"reserve", "tee", "1", "--hold", "h1", "--ttl", "90s"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(until 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in 1m[23]\ds\))")))
    << r.output;
  // `holdfast status` on any node: version, uptime, calls (issue 19, item 6).
  r = cli_node({"status"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("a single node, Holdfast " + std::string(cli({"--version"}).output.substr(9, 6))),
            std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(up \d+s \(since 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC\))")))
    << r.output;
  auto st = json_of(cli_node({"--json", "status"}));
  EXPECT_EQ(st["serving"], true) << st;
  EXPECT_FALSE(st.value("version", std::string()).empty()) << st;
  EXPECT_GE(st.value("calls_total", 0), 2) << st;
  auto j = json_of(cli_node({"--json", "hold", "show", "h1", "--sku", "tee"}));
  EXPECT_TRUE(j.contains("deadline_ms")) << j;
  EXPECT_TRUE(std::regex_match(j.value("deadline", std::string()), std::regex(R"(20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC)")))
    << j;
}

// --log-format json: every log line is one JSON object a log shipper can parse.
TEST_F(hardening_process_test, json_log_lines_parse_and_carry_level_and_message) {
  node_ = std::make_unique<node_process>(HOLDFAST_BINARY, data_);
  auto r = run_command({HOLDFAST_BINARY, "node", "--data", data_, "--listen", "127.0.0.1:0", "--log-format", "json"});
  EXPECT_EQ(r.status, 2) << r.output;  // the directory is the running node's
  std::istringstream lines(r.output);
  std::string line;
  int parsed = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_TRUE(std::regex_match(j.value("time", std::string()), std::regex(R"(20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"))) << line;
    if (j["level"] == "critical" && j.value("msg", std::string()).find("in use by another Holdfast process") != std::string::npos)
      ++parsed;
  }
  EXPECT_EQ(parsed, 1) << r.output;
  EXPECT_NE(cli({"node", "--data", data_, "--log-format", "xml"}).status, 0);
  // A node that starts says where it serves, and that it stops, as log lines: under json
  // every line it writes (stdout and stderr) parses, and "listening on ADDR" is still there
  // for scripts to find.
  auto json_node = std::make_unique<node_process>(HOLDFAST_BINARY, dir_ + "/json-node",
                                                  std::vector<std::string>{"--log-format", "json", "--log-level", "warn"});
  auto address = json_node->address();
  EXPECT_EQ(json_node->terminate(), 0);
  std::istringstream log(json_node->log());
  int serving = 0, stopping = 0;
  while (std::getline(log, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << "not JSON: " << line;
    auto msg = j.value("msg", std::string());
    if (j["level"] == "info" && msg.find("listening on " + address + " ") != std::string::npos) ++serving;
    if (j["level"] == "info" && msg.find("signal 15, stopping") != std::string::npos) ++stopping;
  }
  EXPECT_EQ(serving, 1) << json_node->log();
  EXPECT_EQ(stopping, 1) << json_node->log();
}

// A node that cannot bind its port (in use) exits 2 and leaves no data directory it made;
// one that was there stays.
TEST_F(hardening_process_test, a_node_that_cannot_bind_leaves_no_directory_it_made) {
  node_ = std::make_unique<node_process>(HOLDFAST_BINARY, data_);
  auto fresh = dir_ + "/fresh";
  auto r = run_command({HOLDFAST_BINARY, "node", "--data", fresh, "--listen", node_->address()});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_FALSE(std::filesystem::exists(fresh)) << r.output;
  auto kept = dir_ + "/kept";  // an empty directory the operator made
  std::filesystem::create_directories(kept);
  r = run_command({HOLDFAST_BINARY, "node", "--data", kept, "--listen", node_->address()});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(std::filesystem::is_directory(kept));
}

// Under systemd (Type=notify) the node says READY=1 once it serves, and STOPPING=1 when
// it is told to stop: examples/holdfast-node.service relies on it.
TEST_F(hardening_process_test, the_node_tells_systemd_when_it_serves_and_when_it_stops) {
  auto path = dir_ + "/notify.sock";
  int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_un at{};
  at.sun_family = AF_UNIX;
  std::snprintf(at.sun_path, sizeof at.sun_path, "%s", path.c_str());
  ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&at), sizeof at), 0) << strerror(errno);
  node_ = std::make_unique<node_process>(HOLDFAST_BINARY, data_, std::vector<std::string>{}, 30s,
                                         std::vector<std::string>{"NOTIFY_SOCKET=" + path});
  auto next = [&] {
    pollfd p{sock, POLLIN, 0};
    if (poll(&p, 1, 10'000) <= 0) return std::string("(nothing within 10 s)");
    char text[512];
    auto n = recv(sock, text, sizeof text - 1, 0);
    return std::string(text, n > 0 ? static_cast<size_t>(n) : 0);
  };
  auto ready = next();
  EXPECT_NE(ready.find("READY=1"), std::string::npos) << ready;
  EXPECT_NE(ready.find("STATUS=serving on " + node_->address()), std::string::npos) << ready;
  {
    blocking_client c(node_->address());  // it served by the time it said so
    EXPECT_EQ(c.query_sku("x").status, code::unknown_sku);
  }
  EXPECT_EQ(node_->terminate(), 0);
  EXPECT_NE(next().find("STOPPING=1"), std::string::npos);
  close(sock);
}

// examples/node.toml names every long flag of `holdfast node`, and a node starts from it.
TEST_F(hardening_process_test, the_example_node_toml_lists_every_flag_and_starts_a_node) {
  std::ifstream in(std::string(EXAMPLES_DIR) + "/node.toml");
  std::string example((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(example.empty());
  auto help = cli({"node", "--help"}).output;
  std::regex flag(R"((?:^|\n)\s+--([a-z-]+))");
  int flags = 0;
  for (auto it = std::sregex_iterator(help.begin(), help.end(), flag); it != std::sregex_iterator(); ++it) {
    auto name = (*it)[1].str();
    if (name == "help" || name == "config") continue;
    ++flags;
    auto bare = name.size() > 3 && name.substr(name.size() - 3) == "-ms" ? name.substr(0, name.size() - 3) : name;
    std::regex key("(^|\n)#? ?(" + name + "|" + bare + ") = ");
    EXPECT_TRUE(std::regex_search(example, key)) << "examples/node.toml does not list " << name;
  }
  EXPECT_GT(flags, 25);
  // The example's data and listen are the command line's here (a test's temporary
  // directory and a free port); everything else is the file's.
  start({"--config", std::string(EXAMPLES_DIR) + "/node.toml"});
  blocking_client c(node_->address());
  EXPECT_EQ(c.create_sku("from-example", 5, 1).status, code::ok);
}

// Defect 7: past --connections-max a connection is closed at once, and the node serves.
TEST_F(hardening_process_test, connections_past_the_maximum_are_closed_at_once) {
  start({"--connections-max", "4"});
  std::vector<int> open;
  for (int i = 0; i < 4; ++i) open.push_back(connect_raw(node_->address()));
  // Each is accepted before the next is tried, so the count is exact.
  ASSERT_TRUE(write_all(open.back(), bootstrap_frame()));
  ASSERT_TRUE(read_return(open.back(), 0, [](capnp::rpc::Return::Reader) {}));
  // A connection past the maximum is told why (a Cap'n Proto Abort) and closed at once.
  int extra = connect_raw(node_->address());
  std::string told;
  char buf[512];
  for (ssize_t n; (n = read(extra, buf, sizeof buf)) > 0;) told.append(buf, static_cast<size_t>(n));
  EXPECT_NE(told.find("--connections-max"), std::string::npos) << "a connection past the maximum was kept";
  close(extra);
  // A client refused there learns the call was not applied: unavailable, with the reason
  // (found by the hostile probe: it said outcome_unknown, inviting retries that never work).
  auto refused = run_command({HOLDFAST_BINARY, "--json", "--node", node_->address(), "reserve", "x", "1",
                              "--hold", "h", "--ttl", "1s"});
  EXPECT_EQ(refused.status, 2) << refused.output;
  EXPECT_NE(refused.output.find("\"status\":\"unavailable\""), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("--connections-max"), std::string::npos) << refused.output;
  EXPECT_EQ(refused.output.find(" = "), std::string::npos) << "KJ debug text: " << refused.output;
  close(open.front());
  open.erase(open.begin());
  EXPECT_TRUE(wait_until(
    [&] {
      client_options o;
      o.call_timeout_ms = 1'000;
      try {
        blocking_client c(node_->address(), o);
        return c.query_sku("none").status == code::unknown_sku;
      } catch (const std::exception&) {
        return false;
      }
    },
    10s));
  for (int fd : open) close(fd);
}

// Defect 8 and the frame limit: an oversized batch or frame is refused in one piece.
TEST_F(hardening_process_test, oversized_batches_and_frames_are_refused_whole) {
  start({"--inflight-max", "1000"});
  int fd = connect_raw(node_->address());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(write_all(fd, bootstrap_frame()));
  // 4,000,000 items that take no bytes: a request of a few words.
  auto request = call_frame(1, 8, [](capnp::AnyPointer::Builder params) {
    params.initAsAnyStruct(0, 1).getPointerSection()[0].initAsListOfAnyStruct(0, 0, 4'000'000);
  });
  EXPECT_LT(request.size() * 8, 200u);
  ASSERT_TRUE(write_all(fd, request));
  size_t results = 1;
  std::string refused;
  ASSERT_TRUE(read_return(fd, 1, [&](capnp::rpc::Return::Reader r) {
    ASSERT_TRUE(r.isResults());
    auto answer = r.getResults().getContent().getAs<wire::Inventory::ReserveBatchResults>();
    results = answer.getResults().size();
    refused = answer.getRefused();
  }));
  EXPECT_EQ(results, 0u);
  EXPECT_NE(refused.find("4000000"), std::string::npos) << refused;
  EXPECT_LT(rss_kib(node_->pid()), 200 * 1024);

  // Operations, not calls, count against --inflight-max.
  blocking_client c(node_->address());
  ASSERT_EQ(c.create_sku("o", 10'000, 1).status, code::ok);
  std::vector<hold_op> big;
  for (int i = 0; i < 1'500; ++i) big.push_back({hold_op_kind::reserve, "o", "i" + std::to_string(i), 1, 60'000, {}});
  EXPECT_THROW(c.async().reserve_batch(big).wait(c.io().waitScope), kj::Exception);
  big.resize(900);
  for (auto& r : c.async().reserve_batch(big).wait(c.io().waitScope)) EXPECT_EQ(r.status, code::ok);

  // A frame larger than the limit, body and all, ends that connection only.
  int huge = connect_raw(node_->address());
  uint32_t header[2] = {0, (40u << 20) / 8};  // 40 MiB > the 32 MiB limit
  ASSERT_EQ(write(huge, header, sizeof header), static_cast<ssize_t>(sizeof header));
  std::vector<char> body(1 << 20, 'x');
  bool cut = false;
  for (int i = 0; i < 40 && !cut; ++i)
    cut = ::send(huge, body.data(), body.size(), MSG_NOSIGNAL) <= 0;
  char byte;
  EXPECT_TRUE(cut || read(huge, &byte, 1) <= 0) << "the oversized frame was accepted";
  close(huge);
  EXPECT_EQ(c.query_sku("o").sku.reserved, 900);
  close(fd);
}

// Found by the adversarial pass (F2): 60 connections, each sending a 32 MiB frame and
// never its last bytes, held 2 GB until the frame timeout, because Cap'n Proto allocates
// a frame's body once it has read the segment table. The node reads at most
// --read-budget-mb of frames at once: a frame past it closes its connection before
// anything is allocated, and the budget comes back as frames end or connections close.
TEST_F(hardening_process_test, frames_past_the_read_budget_close_their_connection_at_once) {
  start({"--read-budget-mb", "64", "--frame-timeout-ms", "120000", "--http", "127.0.0.1:0"});
  auto http = "http://" + node_->http_address();
  auto metric = [&](const std::string& series) {
    std::string body, error;
    return http_get(http + "/metrics", 5'000, body, error) == 200 ? metrics_sample(body, series) : -1.0;
  };
  // A frame of `mib` MiB begun: its segment table and 1 KiB of body.
  auto begin_frame = [&](uint32_t mib = 30) {
    int fd = connect_raw(node_->address());
    uint32_t header[2] = {0, (mib << 20) / 8};
    std::vector<char> some(1024, 'x');
    EXPECT_EQ(write(fd, header, sizeof header), static_cast<ssize_t>(sizeof header));
    EXPECT_EQ(write(fd, some.data(), some.size()), static_cast<ssize_t>(some.size()));
    return fd;
  };
  auto closed_within = [](int fd, std::chrono::milliseconds limit) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(limit.count())) <= 0) return false;
    char byte[4096];
    while (true) {  // the node's Abort message, then the end
      auto n = read(fd, byte, sizeof byte);
      if (n <= 0) return true;
    }
  };
  constexpr double mib = 1 << 20;
  int a = begin_frame(), b = begin_frame();
  ASSERT_TRUE(wait_until([&] { return metric("holdfast_frame_bytes_reading") == 60 * mib; }, 10s));
  int c = begin_frame();  // 90 MiB > 64: refused long before the frame timeout
  EXPECT_TRUE(closed_within(c, 10'000ms)) << "the frame past the budget was not refused";
  EXPECT_EQ(metric("holdfast_frames_refused_total"), 1);
  {
    blocking_client client(node_->address());  // small frames still fit
    EXPECT_EQ(client.query_sku("nothing").status, code::unknown_sku);
  }
  // A connection that goes gives its frame's bytes back: another large frame fits.
  close(a);
  ASSERT_TRUE(wait_until([&] { return metric("holdfast_frame_bytes_reading") == 30 * mib; }, 10s));
  int d = begin_frame();
  ASSERT_TRUE(wait_until([&] { return metric("holdfast_frame_bytes_reading") == 60 * mib; }, 10s));
  EXPECT_EQ(metric("holdfast_frames_refused_total"), 1);
  // The budget held whole by frames never finished (found by the adversarial pass: one
  // stranger's 8-byte headers locked every client out): small frames are still read.
  int e = begin_frame(4);
  ASSERT_TRUE(wait_until([&] { return metric("holdfast_frame_bytes_reading") == 64 * mib; }, 10s));
  {
    blocking_client client(node_->address());
    EXPECT_EQ(client.query_sku("nothing").status, code::unknown_sku);
  }
  EXPECT_EQ(metric("holdfast_frames_refused_total"), 1);
  for (int fd : {b, c, d, e}) close(fd);
  ASSERT_TRUE(wait_until([&] { return metric("holdfast_frame_bytes_reading") == 0; }, 10s));
}

// Defect 8: a client that sends and never reads its answers cannot make the node queue
// them without bound, and others are served meanwhile.
TEST_F(hardening_process_test, a_client_that_never_reads_is_cut_off_and_others_are_served) {
  start({"--write-stall-timeout-ms", "1500"});
  {
    blocking_client c(node_->address());
    ASSERT_EQ(c.create_sku("q", 1, 1).status, code::ok);
  }
  int fd = connect_raw(node_->address(), 4096);
  ASSERT_TRUE(write_all(fd, bootstrap_frame()));
  fcntl(fd, F_SETFL, O_NONBLOCK);
  // Batches of queries on an unknown hold, sent as fast as the node takes them; each
  // answer is larger than its request. Nothing is ever read.
  auto baseline = rss_kib(node_->pid());
  int64_t peak_growth_kib = 0;
  bool others_served = false, closed = false;
  size_t sent = 0;
  // Send requests without end: the node's answers back up (the kernel buffers them up to
  // a few MB), it stops reading from this client and, when an answer has waited
  // --write-stall-timeout-ms, closes the connection; then send() fails.
  auto start_sending = std::chrono::steady_clock::now();
  auto give_up = start_sending + 60s;
  for (uint32_t q = 1; !closed && std::chrono::steady_clock::now() < give_up; ++q) {
    auto frame = call_frame(q, 9, [](capnp::AnyPointer::Builder params) {
      auto list = params.initAsAnyStruct(0, 1).getPointerSection()[0].initAsListOfAnyStruct(0, 2, 2'000);
      for (auto item : list) item.getPointerSection()[0].setAs<capnp::Text>("no-such-hold");
    });
    auto bytes = frame.asBytes();
    for (size_t done = 0; done < bytes.size() && !closed;) {
      auto n = ::send(fd, bytes.begin() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n > 0) {
        done += static_cast<size_t>(n);
        sent += static_cast<size_t>(n);
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        closed = true;
        break;
      }
      if (std::chrono::steady_clock::now() > give_up) break;
      peak_growth_kib = std::max(peak_growth_kib, rss_kib(node_->pid()) - baseline);
      if (!others_served && std::chrono::steady_clock::now() - start_sending > 500ms) {
        // Others are served while this client's answers pile up.
        blocking_client other(node_->address());
        others_served = other.query_sku("q").status == code::ok;
      }
      std::this_thread::sleep_for(1ms);  // polling a full socket
    }
  }
  EXPECT_TRUE(closed) << "sent " << sent << " bytes in 60 s and the node kept the connection";
  EXPECT_TRUE(others_served);
  EXPECT_LT(peak_growth_kib, 300 * 1024) << "answers queued without bound";
  close(fd);
  EXPECT_NE(node_->log().find("its answers are not being read"), std::string::npos) << node_->log();
}


// Found by the adversarial pass: a client that floods `status` calls, each followed at
// once by its Finish, made the node send the SKU directory one stats request per call
// (a Finish cancels only the network side); the directory's mailbox grew to gigabytes
// and every other call waited behind it. Status calls now share one directory request
// at a time and are admitted like any call.
TEST_F(hardening_process_test, a_flood_of_cancelled_status_calls_leaves_others_served) {
  start();
  {
    blocking_client c(node_->address());
    ASSERT_EQ(c.create_sku("s", 1, 1).status, code::ok);
  }
  int fd = connect_raw(node_->address());  // never read: the kernel buffers the Returns
  ASSERT_TRUE(write_all(fd, bootstrap_frame()));
  fcntl(fd, F_SETFL, O_NONBLOCK);
  auto baseline = rss_kib(node_->pid());
  int64_t peak_growth_kib = 0;
  int asked = 0, answered = 0;
  uint32_t q = 1;
  auto end = std::chrono::steady_clock::now() + 8s;
  auto next_probe = std::chrono::steady_clock::now() + 500ms;
  std::vector<capnp::word> pending;
  size_t sent_bytes = 0;  // of `pending`
  while (std::chrono::steady_clock::now() < end) {
    if (sent_bytes == pending.size() * sizeof(capnp::word)) {
      pending.clear();
      sent_bytes = 0;
      for (int i = 0; i < 256; ++i, ++q) {
        auto call = call_frame(q, 12, [](capnp::AnyPointer::Builder params) { params.initAsAnyStruct(0, 0); });
        auto finish = finish_frame(q);
        pending.insert(pending.end(), call.begin(), call.end());
        pending.insert(pending.end(), finish.begin(), finish.end());
      }
    }
    auto bytes = kj::arrayPtr(pending.data(), pending.size()).asBytes();
    auto sent = ::send(fd, bytes.begin() + sent_bytes, bytes.size() - sent_bytes, MSG_NOSIGNAL);
    if (sent > 0) sent_bytes += static_cast<size_t>(sent);
    else if (errno != EAGAIN && errno != EWOULDBLOCK) break;  // closed: the others must still be served
    if (std::chrono::steady_clock::now() >= next_probe) {
      next_probe = std::chrono::steady_clock::now() + 500ms;
      peak_growth_kib = std::max(peak_growth_kib, rss_kib(node_->pid()) - baseline);
      client_options o;
      o.call_timeout_ms = 3'000;
      blocking_client other(node_->address(), o);
      ++asked;
      if (other.query_sku("s").status == code::ok) ++answered;
    }
  }
  close(fd);
  std::cout << "status calls sent: " << q << ", node grew " << peak_growth_kib / 1024 << " MiB, " << answered << "/" << asked << " answered\n";
  EXPECT_GE(q, 10'000u) << "the flood never got going";
  EXPECT_GE(asked, 5);
  EXPECT_EQ(answered, asked) << "other clients waited behind the status flood";
  EXPECT_LT(peak_growth_kib, 500 * 1024) << "status calls queued work without bound";
}

// Defect 4: the client example reports a sale only when there was one.
TEST_F(hardening_process_test, the_client_example_reports_no_sale_that_never_happened) {
  start();
  auto first = run_command({CLIENT_USAGE_BINARY, node_->address()});
  EXPECT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("is confirmed"), std::string::npos) << first.output;
  // Run again: the same order line's hold has ended; it must not be sold twice.
  auto second = run_command({CLIENT_USAGE_BINARY, node_->address()});
  EXPECT_EQ(second.status, 1) << second.output;
  EXPECT_NE(second.output.find("wrong_state"), std::string::npos) << second.output;
  blocking_client c(node_->address());
  EXPECT_EQ(c.query_sku("mug").sku.sold, 1);
}


// Defect 11: a disk that fills up answers storage_full (never "unavailable: i/o error"),
// refusals are cheap, reads keep working, and writes resume once there is room. A real
// full filesystem: a small tmpfs mounted for the test (skipped where mounting is not
// allowed).
TEST_F(hardening_process_test, a_full_disk_answers_storage_full_and_recovers_when_space_returns) {
  auto mountpoint = dir_ + "/small-disk";
  std::filesystem::create_directories(mountpoint);
  if (mount("tmpfs", mountpoint.c_str(), "tmpfs", 0, "size=3m") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here: " << strerror(errno);
  struct unmount {
    std::string path;
    ~unmount() { umount2(path.c_str(), MNT_DETACH); }
  } guard{mountpoint};
  // Room to give back later.
  {
    std::ofstream filler(mountpoint + "/filler", std::ios::binary);
    std::string mb(1 << 20, 'f');
    filler << mb;
  }
  data_ = mountpoint + "/data";
  start({"--map-size-mb", "64", "--log-segment-mb", "1"});
  int64_t granted = 0, full = 0, other = 0;
  std::vector<std::string> granted_ids;
  {
    blocking_client c(node_->address());
    ASSERT_EQ(c.create_sku("disk", 10'000'000, 1).status, code::ok);
    std::string pad(200, 'p');
    for (int round = 0; round < 200 && full == 0; ++round) {
      std::vector<hold_op> batch;
      for (int i = 0; i < 500; ++i)
        batch.push_back({hold_op_kind::reserve, "disk", pad + std::to_string(round * 1000 + i), 1, 3'600'000, {}});
      auto rs = c.async().reserve_batch(batch).wait(c.io().waitScope);
      for (size_t i = 0; i < rs.size(); ++i) {
        if (rs[i].status == code::ok) granted++, granted_ids.push_back(batch[i].hold_id);
        else if (rs[i].status == code::storage_full) full++;
        else other++, ADD_FAILURE() << to_string(rs[i].status) << ": " << rs[i].message;
      }
    }
    ASSERT_GT(full, 0) << "the disk never filled";
    EXPECT_EQ(other, 0);
    // While full: refusals come at once and say storage_full; reads work.
    auto t0 = std::chrono::steady_clock::now();
    int refused = 0;
    for (int i = 0; i < 200; ++i)
      refused += c.reserve("disk", 1, "while-full-" + std::to_string(i), 60'000).status == code::storage_full;
    auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("disk full: %d of 200 refused as storage_full in %.3f s (%.0f/s), %lld holds granted\n",
                refused, seconds, refused / seconds, static_cast<long long>(granted));
    EXPECT_EQ(refused, 200);
    auto s = c.query_sku("disk");
    ASSERT_EQ(s.status, code::ok);
    EXPECT_EQ(s.sku.reserved, granted);
    // Space comes back: writes resume (after the SKU's backoff), nothing was half-written.
    std::filesystem::remove(mountpoint + "/filler");
    EXPECT_TRUE(wait_until([&] { return c.reserve("disk", 1, "after", 60'000).status == code::ok; }, 15s));
  }
  node_->terminate();
  auto check = run_command({HOLDFAST_BINARY, "check", "--data", data_});
  EXPECT_EQ(check.status, 0) << check.output;
  start({"--map-size-mb", "64", "--log-segment-mb", "1"});
  blocking_client again(node_->address());
  EXPECT_EQ(again.query_sku("disk").sku.reserved, granted + 1);
  EXPECT_EQ(again.query_hold(granted_ids.back(), "disk").hold.state, hold_state::active);
  node_.reset();
}


// A client that asks and never sends Finish makes Cap'n Proto keep every answer: past
// --connection-unfinished-max its connection is closed (found by the adversarial pass).
TEST_F(hardening_process_test, a_client_that_never_finishes_its_calls_is_cut_off) {
  start({"--connection-unfinished-max", "2000"});
  auto ask = [&](bool finish, unsigned segment_words) {
    int fd = connect_raw(node_->address());
    timeval tv{10, 0};  // a node that stops answering fails the test instead of hanging it
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    EXPECT_TRUE(write_all(fd, bootstrap_frame()));
    bool open = true;
    uint32_t q = 1;
    for (; q <= 5'000 && open; ++q) {
      open = write_all(fd, call_frame(
                             q, 1,
                             [](capnp::AnyPointer::Builder params) {
                               params.initAsAnyStruct(0, 1).getPointerSection()[0].setAs<capnp::Text>(
                                 "none");
                             },
                             segment_words));
      if (open) open = read_return(fd, q, [](capnp::rpc::Return::Reader) {});
      if (open && finish) open = write_all(fd, finish_frame(q));
    }
    close(fd);
    if (!open) std::printf("connection ended at call %u\n", q - 1);
    return open;
  };
  EXPECT_TRUE(ask(true, 0)) << "a client that finishes its calls was cut off";
  EXPECT_TRUE(ask(true, 3)) << "a client with multi-segment frames that finishes was cut off";
  EXPECT_FALSE(ask(false, 0)) << "5,000 unfinished calls were kept";
  // The same calls cut into segments (an even count pads the segment table): counted
  // too (found by review: the padding hid the message kind).
  for (unsigned words : {2u, 3u, 4u, 5u})
    EXPECT_FALSE(ask(false, words)) << "5,000 unfinished calls in " << words << "-word segments";
  EXPECT_NE(node_->log().find("too many calls never finished"), std::string::npos);
  blocking_client c(node_->address());
  EXPECT_EQ(c.query_sku("none").status, code::unknown_sku);
}


// LMDB keeps no page checksums and aborts or faults on some damaged pages: `check` must
// still report, never crash (found by the adversarial pass). Every page is zeroed in
// turn.
TEST_F(hardening_process_test, check_reports_every_zeroed_page_without_crashing) {
  start();
  {
    blocking_client c(node_->address());
    for (int i = 0; i < 60; ++i) {
      auto sku = "sku-" + std::to_string(i);
      ASSERT_EQ(c.create_sku(sku, 100, 1).status, code::ok);
      for (int h = 0; h < 5; ++h)
        ASSERT_EQ(c.reserve(sku, 1, sku + "-h" + std::to_string(h), 3'600'000).status, code::ok);
      ASSERT_EQ(c.confirm(sku + "-h0", sku).status, code::ok);
    }
  }
  node_->terminate();
  std::string original;
  {
    std::ifstream in(data_ + "/data.mdb", std::ios::binary);
    original.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t page = 4096;
  int damaged = 0;
  for (size_t p = 2; p < original.size() / page; ++p) {  // pages 0 and 1 are LMDB's meta
    auto copy = original;
    std::fill(copy.begin() + static_cast<long>(p * page), copy.begin() + static_cast<long>((p + 1) * page), '\0');
    std::ofstream(data_ + "/data.mdb", std::ios::binary | std::ios::trunc) << copy;
    auto r = cli({"--json", "check", "--data", data_});
    ASSERT_TRUE(r.status == 0 || r.status == 1) << "page " << p << ": " << r.output;
    auto j = json_of(r);
    ASSERT_FALSE(j.is_discarded()) << "page " << p << ": " << r.output;
    damaged += j["status"] == "damaged";
  }
  EXPECT_GT(damaged, 0);
  std::ofstream(data_ + "/data.mdb", std::ios::binary | std::ios::trunc) << original;
  EXPECT_EQ(cli({"check", "--data", data_}).status, 0);
}

// Found by the adversarial pass: 1,024 connections that never sent a byte locked every
// client out for the whole idle timeout (300 s). A connection silent since it connected
// now goes at the frame timeout, however long the idle timeout is.
TEST_F(hardening_process_test, connections_that_never_send_a_byte_free_their_slots_at_the_frame_timeout) {
  start({"--connections-max", "8", "--frame-timeout-ms", "500"});
  std::vector<int> silent;
  for (int i = 0; i < 8; ++i) silent.push_back(connect_raw(node_->address()));
  ASSERT_TRUE(wait_until(
    [&] {
      try {
        client_options o;
        o.call_timeout_ms = 1'000;
        blocking_client c(node_->address(), o);
        return c.query_sku("nothing").status == code::unknown_sku;
      } catch (const std::exception&) {
        return false;
      }
    },
    10s));
  char byte;
  EXPECT_LE(read(silent.front(), &byte, 1), 0) << "a silent connection was kept";
  for (int fd : silent) close(fd);
}

// Found by the adversarial pass (checkout issue): 2,000 concurrent `listSkus` calls of
// 1,000 rows each were admitted as one operation each and froze a member for seconds
// (peers marked it down). A page is admitted as `limit` operations now.
TEST_F(hardening_process_test, a_catalog_page_counts_its_rows_against_the_inflight_limit) {
  start({"--inflight-max", "500"});
  ASSERT_EQ(cli_node({"sku", "create", "a", "--stock", "1", "--price", "1"}).status, 0);
  auto big = cli_node({"--json", "sku", "list", "--limit", "1000"});
  EXPECT_EQ(big.status, 2) << big.output;
  EXPECT_NE(big.output.find("too many operations in flight"), std::string::npos) << big.output;
  auto fits = cli_node({"--json", "sku", "list", "--limit", "400"});
  EXPECT_EQ(fits.status, 0) << fits.output;
  EXPECT_NE(fits.output.find("\"sku\":\"a\""), std::string::npos) << fits.output;
}

// A client that starts a webhook body and never finishes it (slowloris) is answered 408
// and cut off after --frame-timeout-ms, as on the RPC port; before, it held its
// connection (and with --connections-max of them, the whole webhook port) for ever.
TEST_F(hardening_process_test, a_webhook_body_that_never_finishes_is_cut_off_at_the_frame_deadline) {
  start({"--http", "127.0.0.1:0", "--webhook-secret", "s3cr3t", "--frame-timeout-ms", "500"});
  std::string http = node_->http_address();
  ASSERT_FALSE(http.empty()) << node_->log();
  int fd = connect_raw(http);
  ASSERT_GE(fd, 0) << http;
  std::string start_of_request =
    "POST /webhooks/payments HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nHoldfast-Signature: t=1,v1=00\r\n\r\n{";
  ASSERT_EQ(write(fd, start_of_request.data(), start_of_request.size()), static_cast<ssize_t>(start_of_request.size()));
  // Everything the node sends until it closes the connection (or 10 s pass).
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  bool closed = false;
  while (!closed && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    char buf[4096];
    auto n = read(fd, buf, sizeof buf);
    if (n <= 0) closed = true;
    else got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  EXPECT_NE(got.find("408"), std::string::npos) << got;
  EXPECT_TRUE(closed) << "the connection stayed open: " << got;
  // And the port still serves: a GET of the counters shows the refusal.
  auto counters = run_command({"curl", "-s", "http://" + http + "/webhooks/payments"});
  if (counters.status == 0) {
    EXPECT_NE(counters.output.find("\"refused\":1"), std::string::npos) << counters.output;
  }
  // A path of bytes that are not UTF-8 is a 404, not an exception.
  fd = connect_raw(http);
  std::string bad = "GET /nope\xff HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(write(fd, bad.data(), bad.size()), static_cast<ssize_t>(bad.size()));
  got.clear();
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 5000) > 0) {
    char buf[4096];
    auto n = read(fd, buf, sizeof buf);
    if (n > 0) got.assign(buf, static_cast<size_t>(n));
  }
  close(fd);
  EXPECT_NE(got.find("404"), std::string::npos) << got;
}

}  // namespace
}  // namespace holdfast::testing
