#include "bench/finished_holds.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "client/client.hpp"
#include "harness/node_process.hpp"
#include "harness/processes.hpp"

namespace holdfast::bench {
namespace {

using steady = std::chrono::steady_clock;

int64_t file_bytes(const std::string& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? -1 : static_cast<int64_t>(n);
}

}  // namespace

int run_finished_holds(const finished_holds_options& o) {
  auto say = [&](const std::string& s) {
    std::fprintf(o.json ? stderr : stdout, "%s\n", s.c_str());
    std::fflush(o.json ? stderr : stdout);
  };
  auto dir = make_temp_dir("holdfast-bench-finished");
  remove_on_interrupt(dir);  // an interrupted run leaves no data behind
  auto data = dir + "/node";
  nlohmann::json report{{"holds_per_cycle", o.holds}, {"retention_ms", o.retention_ms}};
  int status = 0;
  {
    node_process node(self_executable(), data,
                      {"--finished-hold-retention", std::to_string(o.retention_ms) + "ms"});
    say("holdfast bench finished-holds: node " + node.address() + " on " + data);
    blocking_client c(node.address());
    if (c.create_sku("churn", 1'000'000'000, 100).status != code::ok)
      throw std::runtime_error("cannot create the SKU");
    auto file = data + "/data.mdb";
    auto before = file_bytes(file);
    report["data_mdb_bytes_at_start"] = before;
    const size_t batch = 1024;
    for (int cycle = 1; cycle <= o.cycles; ++cycle) {
      auto t0 = steady::now();
      auto id = [cycle](int64_t i) { return "c" + std::to_string(cycle) + "-" + std::to_string(i); };
      int64_t confirmed = 0;
      for (int64_t first = 0; first < o.holds; first += static_cast<int64_t>(batch)) {
        std::vector<hold_op> reserves, confirms;
        for (int64_t i = first; i < std::min<int64_t>(o.holds, first + static_cast<int64_t>(batch)); ++i) {
          reserves.push_back({hold_op_kind::reserve, "churn", id(i), 1, 3'600'000, {}});
          confirms.push_back({hold_op_kind::confirm, "churn", id(i), 0, 0, {}});
        }
        c.async().reserve_batch(reserves).wait(c.io().waitScope);
        for (auto& r : c.async().confirm_batch(confirms).wait(c.io().waitScope))
          confirmed += r.status == code::ok;
      }
      auto cycle_s = std::chrono::duration<double>(steady::now() - t0).count();
      say("  cycle " + std::to_string(cycle) + ": " + std::to_string(confirmed) +
          " reserve+confirm in " + std::to_string(cycle_s).substr(0, 5) + " s");
      // Collection: the cycle's holds are gone once a snapshot moved them from the log
      // to data.mdb, the window has passed, and the background collector reached them.
      auto collected = wait_until(
        [&] {
          return c.query_hold(id(0), "churn").status == code::unknown_hold &&
                 c.query_hold(id(o.holds - 1), "churn").status == code::unknown_hold;
        },
        std::chrono::milliseconds(o.retention_ms + 120'000));
      auto waited_s = std::chrono::duration<double>(steady::now() - t0).count() - cycle_s;
      auto after = file_bytes(file);
      auto per_hold = static_cast<double>(after - before) / static_cast<double>(o.holds);
      say("  cycle " + std::to_string(cycle) + ": collected " + (collected ? "" : "NOT ") +
          "after " + std::to_string(waited_s).substr(0, 5) + " s; data.mdb " +
          std::to_string(after) + " bytes (grew " + std::to_string(per_hold).substr(0, 6) +
          " bytes per finished hold this cycle)");
      report["cycles"].push_back({{"confirmed", confirmed},
                                  {"seconds", cycle_s},
                                  {"data_mdb_bytes", after},
                                  {"bytes_per_finished_hold", per_hold},
                                  {"collected", collected},
                                  {"collection_wait_s", waited_s}});
      if (!collected || confirmed != o.holds) status = 1;
      before = after;
    }
    auto final_bytes = file_bytes(file);
    report["data_mdb_bytes_at_end"] = final_bytes;
    auto first = report["cycles"][0]["data_mdb_bytes"].get<int64_t>();
    report["growth_after_first_cycle_bytes"] = final_bytes - first;
    say("data.mdb after the first cycle " + std::to_string(first) + " bytes, at the end " +
        std::to_string(final_bytes) + " bytes (" +
        std::to_string(100.0 * static_cast<double>(final_bytes - first) / static_cast<double>(first)).substr(0, 5) +
        "% more after " + std::to_string(o.cycles - 1) + " more cycle(s) of " +
        std::to_string(o.holds) + " holds)");
    node.terminate();
  }
  std::filesystem::remove_all(dir);
  if (o.json) std::printf("%s\n", report.dump().c_str());
  return status;
}

}  // namespace holdfast::bench
