// `holdfast demo` as a user runs it: real node processes and the gateway process, real
// users over RPC; `demo holds`, the reservation race.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "harness/node_process.hpp"
#include "harness/processes.hpp"

namespace {

std::string run(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  pclose(pipe);
  return out;
}

TEST(demo, sells_every_unit_once_and_buyers_stop_when_it_is_sold_out) {
  const int buyers = 2000, stock = 50, attempts_max = 12;
  auto out = run(std::string(HOLDFAST_BINARY) + " demo holds --json --buyers " +
                 std::to_string(buyers) + " --stock " + std::to_string(stock) + " --ttl 500ms");
  auto report = nlohmann::json::parse(out.substr(out.rfind('{')), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << out;
  EXPECT_EQ(report["sold"], stock);
  EXPECT_EQ(report["oversold"], 0);
  EXPECT_EQ(report["consistent"], true);
  EXPECT_EQ(report["unexpected_answers"], 0);
  // On a local 3-node cluster, with a long tail spread over every node.
  EXPECT_EQ(report["nodes"], 3);
  EXPECT_EQ(report["tail_skus"], 300);
  EXPECT_GT(report["tail_sold"].get<int>(), 0);
  // The client saw the sell-out while the race ran, so buyers stopped retrying. When
  // answers were only counted once every buyer had finished, each unlucky buyer spent
  // all its attempts and the race ran for the whole backoff schedule.
  EXPECT_GE(report["sold_out_s"].get<double>(), 0.0);
  EXPECT_LT(report["reserve_calls"].get<int>(), buyers * attempts_max / 2) << out;
}

// `demo holds --use-node` run twice against one node: the second run's hold ids are its own
// (hold ids are node-wide), so it meets none of the first run's holds as hold_conflict.
TEST(demo, a_second_race_on_the_same_node_meets_none_of_the_first_races_holds) {
  auto dir = holdfast::make_temp_dir("holdfast-demo-twice");
  {
    holdfast::node_process node(HOLDFAST_BINARY, dir + "/data");
    for (int round = 0; round < 2; ++round) {
      auto out = run(std::string(HOLDFAST_BINARY) + " demo holds --json --use-node " + node.address() +
                     " --buyers 300 --stock 30 --tail-skus 10 --ttl 500ms");
      auto report = nlohmann::json::parse(out.substr(out.rfind('{')), nullptr, false);
      ASSERT_FALSE(report.is_discarded()) << out;
      EXPECT_EQ(report["unexpected_answers"], 0) << "round " << round << ": " << out;
      EXPECT_EQ(report["sold"], 30) << out;
    }
  }
  std::filesystem::remove_all(dir);
}

// The checkout flash sale, judged by its witnesses: the gateway's ledger (one capture per
// paid order, none for the others) and the SKUs' books (sold == units of paid orders).
TEST(demo, the_checkout_flash_sale_keeps_every_promise) {
  auto out = run(std::string(HOLDFAST_BINARY) + " --json demo --users 400 --stock 60 --tail-skus 40 --seed 3");
  auto report = nlohmann::json::parse(out.substr(out.rfind("\n{") + 1), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << out;
  EXPECT_EQ(report["ok"], true) << out;
  EXPECT_EQ(report["max_captures_per_order"], 1) << out;
  EXPECT_EQ(report["shoppers_client_role"], true) << "the shoppers' connections could restock: not the client role";
  EXPECT_EQ(report["capture_mismatches"], 0);
  EXPECT_EQ(report["oversold"], 0);
  EXPECT_EQ(report["limit_violations"], 0);
  EXPECT_EQ(report["books_disagree"], 0);
  EXPECT_EQ(report["still_running"], 0);
  EXPECT_EQ(report["same_key_other_answer"], 0);
  EXPECT_EQ(report["hot_sold"].get<int>() <= 60, true);
  // The faults happened: declines, lost replies, refunds after shipping failures, the
  // per-user limit refused someone.
  EXPECT_GT(report["paid"].get<int>(), 0) << out;
  EXPECT_GT(report["cancelled"].get<int>(), 0) << out;
  EXPECT_GT(report["lost_replies"].get<int>(), 0) << out;
  EXPECT_GT(report["ended_because"].value("per-user limit reached", 0), 0) << out;
}

// An interrupted demo stops its nodes and the gateway and leaves no data behind (it used
// to leave its temporary directory: ~200 MB of preallocated log segments a run).
TEST(demo, an_interrupted_demo_leaves_no_processes_and_no_data) {
  using namespace std::chrono_literals;
  auto tmp = holdfast::make_temp_dir("holdfast-demo-test");
  pid_t demo = holdfast::spawn({{HOLDFAST_BINARY, "demo", "--users", "200000"}, {"TMPDIR=" + tmp}, {}, -1, -1, false});
  auto entries = [&] {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(tmp)) ++n;
    return n;
  };
  // Under way: its directory made, the gateway and the three nodes started.
  std::vector<pid_t> started;
  ASSERT_TRUE(holdfast::wait_until(
    [&] {
      started = holdfast::children_of(demo);
      return entries() > 0 && started.size() >= 4;
    },
    60s))
    << "the demo never started its processes";
  ::kill(demo, SIGTERM);
  int status = 0;
  waitpid(demo, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
  EXPECT_TRUE(holdfast::wait_until([&] { return entries() == 0; }, 10s)) << "its data stayed in " << tmp;
  for (auto pid : started) EXPECT_TRUE(holdfast::process_gone(pid)) << "child " << pid << " outlived the demo";
  std::filesystem::remove_all(tmp);
}

}  // namespace
