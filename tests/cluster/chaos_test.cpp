// `holdfast chaos --seconds 60 --seed S`, as a user runs it: one seed per run (from
// HOLDFAST_CHAOS_SEED, else the clock), printed so a failure can be replayed.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "harness/processes.hpp"

namespace holdfast {
namespace {

TEST(chaos, sixty_seconds_of_faults_break_no_promise) {
  uint64_t seed = 0;
  if (auto* s = std::getenv("HOLDFAST_CHAOS_SEED")) seed = std::strtoull(s, nullptr, 10);
  if (seed == 0)
    seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) % 1'000'000'007ULL + 1;
  std::cout << "chaos seed " << seed << " (replay: HOLDFAST_CHAOS_SEED=" << seed
            << " or holdfast chaos --seed " << seed << " --seconds 60)" << std::endl;
  RecordProperty("seed", std::to_string(seed));
  auto dir = make_temp_dir("holdfast-chaos-test");
  auto result = run_command({HOLDFAST_BINARY, "--json", "chaos", "--seconds", "60", "--seed",
                             std::to_string(seed), "--dir", dir + "/run", "--png", dir + "/chaos.png"});
  std::cout << result.output << std::endl;
  EXPECT_EQ(result.status, 0) << "seed " << seed << "; the cluster's logs are kept in " << dir;
  auto last = result.output.rfind("\n{");
  ASSERT_NE(last, std::string::npos);
  auto report = nlohmann::json::parse(result.output.substr(last + 1), nullptr, false);
  ASSERT_FALSE(report.is_discarded());
  EXPECT_TRUE(report["pass"].get<bool>());
  EXPECT_EQ(report["seed"].get<uint64_t>(), seed);
  // The run did what it claims: faults were injected and traffic flowed through them.
  // (One fault at a time, 1-3 s each with 1-3 s between, restarts included: at least
  // 60 / (3 + 3 + restart) of them.)
  EXPECT_GE(report["fault_log"].size(), 5u);
  EXPECT_GT(report["outcomes"]["ok"].get<uint64_t>(), 1000u);
  for (auto& v : report["invariants"]) EXPECT_TRUE(v["ok"].get<bool>()) << v.dump();
  if (result.status == 0) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace holdfast
