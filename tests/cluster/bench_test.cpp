// `holdfast bench` as a user runs it, cut short: the figures are the benchmark's
// business; these tests check that every row runs and that its books balance.
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

namespace {

nlohmann::json run_json(const std::string& args) {
  std::string out;
  FILE* pipe = popen((std::string(HOLDFAST_BINARY) + " " + args + " 2>/dev/null").c_str(), "r");
  if (!pipe) return nlohmann::json();
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  pclose(pipe);
  auto at = out.find('{');
  if (at == std::string::npos) return nlohmann::json();
  return nlohmann::json::parse(out.substr(at), nullptr, false);
}

TEST(bench, hot_sku_rows_run_and_stock_falls_by_exactly_the_reservations) {
  // Pinned (to CPU 0, which every machine has): the taskset path runs too.
  auto report = run_json("bench hot-sku --json --no-peers --png '' --seconds 0.3 --repeat 2 --node-cpus 0 --load-cpus 0");
  ASSERT_TRUE(report.is_object()) << report;
  // UUID ids by default (1a, 1b), and the sequential-id rows beside them.
  ASSERT_EQ(report["rows"].size(), 4u) << report;
  std::vector<std::string> ids;
  for (auto& row : report["rows"]) ids.push_back(row["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{"1a", "1b", "1a-seq", "1b-seq"}));
  EXPECT_NE(report["rows"][0]["shape"].get<std::string>().find("UUID"), std::string::npos);
  for (auto& row : report["rows"]) {
    ASSERT_TRUE(row["ran"].get<bool>()) << row;
    EXPECT_GT(row["reservations"].get<int64_t>(), 0) << row;
    EXPECT_TRUE(row["stock_check"].get<bool>()) << row;
    EXPECT_EQ(row["stock_drop"], row["counted"]) << row;
    EXPECT_GT(row["p99_ms"].get<double>(), 0) << row;
    EXPECT_EQ(row["rounds_ran"], 2) << "a row did not run in every round: " << row;
    // CPU per reservation from /proc: the node it started is busy for the whole window
    // (clock ticks are 10 ms, so the load generator's few may round to zero).
    EXPECT_GT(row.value("server_cpu_us_per_reservation", -1.0), 0) << row;
    EXPECT_GE(row.value("load_cpu_us_per_reservation", -1.0), 0) << row;
  }
  EXPECT_GT(report["environment"]["fsync_p50_ms"].get<double>(), 0);
  // The Redis and PostgreSQL rows were skipped: the p99 and node CPU targets are judged.
  ASSERT_EQ(report["targets"].size(), 2u) << report;
}

TEST(bench, many_skus_restart_serves_every_outstanding_hold) {
  auto report =
    run_json("bench many-skus --json --skus 300 --create-batch 64 --holds 2000 --idle-ms 300 "
             "--compare-seconds 0.3");
  ASSERT_TRUE(report.is_object()) << report;
  EXPECT_EQ(report["created"], 300) << "every SKU of every batch create";
  EXPECT_GT(report["uniform_vs_1a"].get<double>(), 0) << "row 1a ran beside it";
  EXPECT_EQ(report["holds_outstanding"], 2000);
  EXPECT_TRUE(report["restart_answer_ok"].get<bool>());
  // Fewer than 1000 SKUs: the sample is the whole catalog, so it holds every hold.
  EXPECT_EQ(report["reserved_in_first_1000_skus"], 2000);
  EXPECT_GT(report["rss_anon_idle_bytes"].get<int64_t>(), 0);
  // Two memory figures, each read once the node settled: the catalog alone, then with the
  // holds (300 SKUs are too few for the figures themselves to mean anything).
  EXPECT_GT(report["rss_anon_catalog_bytes"].get<int64_t>(), 0);
  EXPECT_TRUE(report["rss_per_idle_sku_bytes"].is_number()) << report;
  EXPECT_TRUE(report["rss_per_outstanding_hold_bytes"].is_number()) << report;
}

TEST(bench, finished_holds_are_collected_and_the_data_file_stops_growing) {
  auto report =
    run_json("bench finished-holds --json --holds 5000 --cycles 3 --retention-ms 300");
  ASSERT_TRUE(report.is_object()) << report;
  ASSERT_EQ(report["cycles"].size(), 3u);
  for (auto& c : report["cycles"]) {
    EXPECT_EQ(c["confirmed"], 5000);
    EXPECT_TRUE(c["collected"].get<bool>());
  }
  // Without collection every cycle would add what the first did.
  auto first = report["cycles"][0]["data_mdb_bytes"].get<int64_t>() -
               report["data_mdb_bytes_at_start"].get<int64_t>();
  EXPECT_LT(report["growth_after_first_cycle_bytes"].get<int64_t>(), first) << report;
}

TEST(bench, cluster_rows_run_direct_forwarded_and_cluster_aware) {
  auto report = run_json("bench cluster --json --seconds 0.5 --skus 12");
  ASSERT_TRUE(report.is_object()) << report;
  ASSERT_EQ(report["rows"].size(), 3u) << report;
  for (auto& row : report["rows"]) {
    ASSERT_TRUE(row["ran"].get<bool>()) << row;
    EXPECT_GT(row["per_second"].get<double>(), 0) << row;
  }
  EXPECT_GT(report["targets"]["b_over_a"].get<double>(), 0);
  EXPECT_GT(report["targets"]["c_over_a"].get<double>(), 0);
}

// The replicated comparison: rows (a), (r), (r/2) run, and each failover trial kills the
// leader and measures until a reservation succeeds again.
TEST(bench, cluster_replicated_rows_and_failover_trials_run) {
  auto report = run_json("bench cluster --replicas 3 --json --seconds 0.5 --skus 6 --trials 3");
  ASSERT_TRUE(report.is_object()) << report;
  ASSERT_EQ(report["rows"].size(), 4u) << report;  // (a), (r), (r/2), (rc): the cluster-aware client
  for (auto& row : report["rows"]) {
    ASSERT_TRUE(row["ran"].get<bool>()) << row;
    EXPECT_GT(row["per_second"].get<double>(), 0) << row;
  }
  ASSERT_EQ(report["failover_ms"]["trials"].size(), 3u) << report;
  for (auto& ms : report["failover_ms"]["trials"]) EXPECT_GT(ms.get<double>(), 0) << report;
  // p50 and max are the trials' median and largest.
  auto trials = report["failover_ms"]["trials"].get<std::vector<double>>();
  std::sort(trials.begin(), trials.end());
  EXPECT_EQ(report["failover_ms"]["p50"].get<double>(), trials[trials.size() / 2]);
  EXPECT_EQ(report["failover_ms"]["max"].get<double>(), trials.back());
  EXPECT_GT(report["targets"]["r_over_a"].get<double>(), 0);
  // Where the time goes, from the serving node's /metrics: every row's reservations went
  // through group commits (the replicated rows' are the SKU group's Raft entries), each
  // taking time, and the node's own log was synced for row (a) only.
  for (std::string id : {"a", "r", "r/2", "rc"}) {
    auto& t = report["server_time"][id];
    ASSERT_TRUE(t.is_object()) << id << " " << report;
    EXPECT_GT(t["group_commits"].get<double>(), 0) << id << " " << t;
    EXPECT_GT(t["group_commit_mean_ms"].get<double>(), 0) << id << " " << t;
    EXPECT_GT(t["reserve_call_mean_ms"].get<double>(), 0) << id << " " << t;
    EXPECT_GE(t["batches_per_commit"].get<double>(), 1) << id << " " << t;
  }
  EXPECT_GT(report["server_time"]["a"]["fdatasync_mean_ms"].get<double>(), 0);
  EXPECT_EQ(report["server_time"]["r"]["fdatasync_mean_ms"].get<double>(), 0);
}
}  // namespace
