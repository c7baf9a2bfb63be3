// `holdfast demo` as a user runs it: a real node process, real buyers over RPC.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

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
  auto out = run(std::string(HOLDFAST_BINARY) + " demo --json --buyers " +
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

}  // namespace
