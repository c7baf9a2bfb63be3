#include "bench/hot_sku.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <tuple>

#include "bench/progress.hpp"
#include "harness/processes.hpp"
#include "bench/cpu.hpp"
#include "bench/load.hpp"
#include "bench/rows.hpp"
#include "client/client.hpp"
#include "harness/node_process.hpp"

namespace holdfast::bench {
namespace {

using steady = std::chrono::steady_clock;
using json = nlohmann::json;


std::string base36(uint64_t v) {
  std::string s;
  do {
    s.insert(s.begin(), "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36]);
    v /= 36;
  } while (v);
  return s;
}

// `node_pid` 0: a node this run did not start (--use-node): its CPU is not read.
row run_holdfast_row(const hot_sku_options& o, const std::string& address, pid_t node_pid, const std::string& id,
                     int depth, bool uuid_ids) {
  row r;
  r.id = id;
  r.system = "Holdfast, durable (log + fdatasync), Cap'n Proto RPC";
  r.shape = std::to_string(o.callers) + " callers x " + std::to_string(depth) + ", " +
            (uuid_ids ? "UUID ids" : "sequential ids");
  progress("row " + id + ": " + r.system + ", " + r.shape + " ...");
  blocking_client admin(address);
  // A fresh SKU and fresh hold ids for every run of a row: --repeat runs each row again
  // on the same node, and a reused id would answer as the hold it already named.
  static int runs = 0;
  auto run = base36(static_cast<uint64_t>(getpid())) + "-" + std::to_string(++runs);
  auto sku = "hot-" + id + "-" + run;
  progress("  sku " + sku);
  const int64_t stock = 1'000'000'000;  // ample: every reservation is granted
  auto created = admin.create_sku(sku, stock, 100);
  if (created.status != code::ok) {
    r.skipped = std::string("cannot create the SKU: ") + to_string(created.status) + " " +
                created.message;
    return r;
  }
  auto before = admin.query_sku(sku).sku.available();
  auto start = steady::now();
  auto measure_from = start + std::chrono::duration_cast<steady::duration>(
                                std::chrono::duration<double>(o.warmup_seconds));
  auto stop_at = measure_from + std::chrono::duration_cast<steady::duration>(
                                  std::chrono::duration<double>(o.seconds));
  std::vector<load_thread> threads(static_cast<size_t>(o.threads));
  for (int t = 0; t < o.threads; ++t) {
    auto& lt = threads[static_cast<size_t>(t)];
    lt.open = connect_to(address);
    lt.skus = {sku};
    // Unique per run, so a long-running node (--use-node) sees fresh hold ids each time.
    lt.prefix = id + static_cast<char>('a' + t) + run + ".";
    lt.uuid_ids = uuid_ids;
    lt.callers = o.callers / o.threads + (t < o.callers % o.threads ? 1 : 0);
    lt.depth = depth;
    lt.connections = o.connections;
    lt.measure_from = measure_from;
    lt.stop_at = stop_at;
  }
  // CPU over the measured window, sampled at its two ends while the load runs.
  double node_s = -1, load_s = -1;
  std::thread sampler([&] {
    std::this_thread::sleep_until(measure_from);
    auto node_from = node_pid > 0 ? cpu_seconds(node_pid) : 0;
    auto load_from = cpu_seconds(getpid());
    std::this_thread::sleep_until(stop_at);
    if (node_pid > 0) node_s = cpu_seconds(node_pid) - node_from;
    load_s = cpu_seconds(getpid()) - load_from;
  });
  run_threads(threads, o.seconds, r);
  sampler.join();
  if (r.reservations > 0) {
    if (node_s >= 0) r.server_cpu_us = node_s * 1e6 / static_cast<double>(r.reservations);
    r.load_cpu_us = load_s * 1e6 / static_cast<double>(r.reservations);
  }
  auto after = admin.query_sku(sku);
  if (after.status != code::ok) {
    r.ran = false;
    r.skipped = "the stock query after the row answered " + std::string(to_string(after.status)) +
                " " + after.message;
  }
  r.stock_drop = before - after.sku.available();
  return r;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// µs of CPU per reservation, or "-" when not measured.
std::string cpu_text(double us) { return us < 0 ? "-" : fmt("%.1f us", us); }

const row* find(const std::vector<row>& rows, const std::string& id) {
  for (auto& r : rows)
    if (r.id == id && r.ran) return &r;
  return nullptr;
}

// One ratio of a Holdfast row to a peer over the rounds: each round ran the pair back
// to back, so the machine's drift between rounds cancels; the median is reported.
struct ratio {
  std::string row, peer;
  std::vector<double> values;  // one per round in which both ran
  double median() const {
    auto v = values;
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  double min() const { return values.empty() ? 0 : *std::min_element(values.begin(), values.end()); }
  double max() const { return values.empty() ? 0 : *std::max_element(values.begin(), values.end()); }
  std::string text() const {
    if (values.empty()) return {};
    return fmt("%.2fx ", median()) + peer + fmt(" (%.2f", min()) + fmt("-%.2f)", max());
  }
};

std::vector<ratio> ratios(const std::vector<std::vector<row>>& rounds) {
  // The first three are the targets' (UUID ids); the sequential rows' follow.
  std::vector<ratio> out{{"1a", "2a", {}},     {"1b", "2b", {}},    {"1b", "3", {}},
                         {"1a-seq", "2a", {}}, {"1b-seq", "2b", {}}};
  for (auto& rows : rounds)
    for (auto& q : out)
      if (auto *r = find(rows, q.row), *p = find(rows, q.peer); r && p && p->per_second > 0)
        q.values.push_back(r->per_second / p->per_second);
  return out;
}

// The row of median throughput among the rounds, for the table.
std::vector<row> median_rows(const std::vector<std::vector<row>>& rounds) {
  std::vector<row> out;
  for (auto& first : rounds.front()) {
    std::vector<const row*> runs;
    for (auto& rows : rounds)
      for (auto& r : rows)
        if (r.id == first.id && r.ran) runs.push_back(&r);
    if (runs.empty()) {
      out.push_back(first);
      continue;
    }
    std::sort(runs.begin(), runs.end(),
              [](const row* a, const row* b) { return a->per_second < b->per_second; });
    out.push_back(*runs[runs.size() / 2]);
  }
  return out;
}

// Node CPU per reservation against the peer's server CPU per call (1a/2a, 1b/2b).
std::vector<std::pair<std::string, std::pair<std::string, double>>> cpu_ratios(const std::vector<row>& rows) {
  std::vector<std::pair<std::string, std::pair<std::string, double>>> out;
  for (auto [mine, peer, name] : {std::tuple{"1a", "2a", "redis-server -P1"}, std::tuple{"1b", "2b", "redis-server -P16"},
                                  std::tuple{"1b", "3", "postgres"}}) {
    auto *r = find(rows, mine), *p = find(rows, peer);
    if (r && p && r->server_cpu_us > 0 && p->server_cpu_us > 0)
      out.push_back({std::string(mine) + " vs " + peer, {name, r->server_cpu_us / p->server_cpu_us}});
  }
  return out;
}

struct target {
  std::string what;
  double measured, wanted;
  bool higher_is_better;
  bool met() const { return higher_is_better ? measured >= wanted : measured <= wanted; }
};

std::vector<target> targets(const std::vector<row>& rows, const std::vector<ratio>& rs) {
  std::vector<target> out;
  const char* what[] = {"1a >= 2x Redis+Lua -P 1 (median)", "1b >= 1.5x Redis+Lua -P 16 (median)",
                        "1b >= 200x PostgreSQL hot row (median)"};
  double wanted[] = {2, 1.5, 200};
  for (size_t i = 0; i < 3 && i < rs.size(); ++i)
    if (!rs[i].values.empty()) out.push_back({what[i], rs[i].median(), wanted[i], true});
  if (auto* a = find(rows, "1a")) out.push_back({"1a p99 <= 2 ms", a->p99_ms, 2, false});
  if (auto* b = find(rows, "1b"); b && b->server_cpu_us >= 0) {
    out.push_back({"1b node CPU <= 4 us/reservation", b->server_cpu_us, 4, false});
    if (auto* r = find(rows, "2b"); r && r->server_cpu_us > 0)
      out.push_back({"1b node CPU / redis-server 2b <= 1", b->server_cpu_us / r->server_cpu_us, 1, false});
  }
  return out;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

void write_png(const std::string& path, const std::vector<row>& rows, const std::string& tmp) {
  std::ofstream bars(tmp + "/bars.dat");
  std::ofstream cdf(tmp + "/cdf.dat");
  std::string plots;
  int index = 0;
  for (auto& r : rows) {
    if (!r.ran) continue;
    bars << '"' << r.id << "\" " << r.per_second << "\n";
    cdf << "# " << r.id << "\n";
    for (auto& [ms, f] : r.cdf) cdf << std::max(ms, 0.001) << " " << f << "\n";
    cdf << "\n\n";
    plots += std::string(plots.empty() ? "" : ", ") + "'" + tmp + "/cdf.dat' index " +
             std::to_string(index++) + " with lines lw 2 title '" + r.id + " " + r.system.substr(0, 24) + "'";
  }
  bars.close();
  cdf.close();
  std::ostringstream body;
  body << " size 1400,560 noenhanced\n"
       << "set output '" << path << "'\n"
       << "set multiplot layout 1,2 title 'holdfast bench hot-sku: durable reservations on one SKU'\n"
       << "set style fill solid 0.8\nset boxwidth 0.6\nset grid ytics\nset logscale y\n"
       << "set ylabel 'reservations/s (log)'\nset title 'throughput'\nunset key\n"
       << "plot '" << tmp << "/bars.dat' using 0:2:xtic(1) with boxes lc rgb '#3a7bd5', "
       << "'' using 0:2:(sprintf('%.0f',$2)) with labels offset 0,1\n"
       << "unset logscale y\nset logscale x\nset xlabel 'latency, ms (log)'\n"
       << "set ylabel 'fraction of calls'\nset title 'latency CDF'\nset key bottom right\n"
       << "set yrange [0:1]\nplot " << plots << "\nunset multiplot\n";
  auto failed = plot_png(body.str(), tmp);
  progress(failed.empty() ? "wrote " + path : "no PNG: " + failed);
}

}  // namespace

double measure_hot_sku_1a(const std::string& address, double seconds) {
  set_progress_quiet(true);
  hot_sku_options o;
  o.seconds = seconds;
  auto r = run_holdfast_row(o, address, 0, "1a", 1, true);
  return r.ran ? r.per_second : 0;
}

int run_hot_sku(const hot_sku_options& o) {
  set_progress_quiet(o.json);
  auto tmp = make_temp_dir("holdfast-bench");
  remove_on_interrupt(tmp);  // an interrupted run leaves no data behind
  std::printf("%s", progress_quiet() ? "" : "holdfast bench hot-sku\n");
  auto fsync = measure_fsync(tmp);
  utsname un{};
  uname(&un);
  auto cores = std::thread::hardware_concurrency();
  progress("environment: " + std::to_string(cores) + " cores (" + cpu_model() + "), " + un.sysname +
           " " + un.release + ", fsync of 4 KiB: p50 " + fmt("%.3f", fsync.p50_ms) + " ms, p99 " +
           fmt("%.3f", fsync.p99_ms) + " ms");

  // Each round runs every Holdfast row and then its peers, so each pair is measured
  // back to back; --repeat rounds alternate them and the ratios are medians.
  std::vector<std::vector<row>> rounds;
  {
    std::unique_ptr<node_process> node;
    auto address = o.node_address;
    // Pinning: the servers (the node, redis-server, postgres) under taskset; this process
    // and the load tools it runs (which inherit it) on the load CPUs.
    std::vector<std::string> server_prefix;
    auto taskset = find_program("taskset");
    if ((!o.node_cpus.empty() || !o.load_cpus.empty()) && taskset.empty())
      throw std::runtime_error("--node-cpus/--load-cpus need taskset (apt-get install util-linux)");
    if (!o.node_cpus.empty()) server_prefix = {taskset, "-c", o.node_cpus};
    if (!o.load_cpus.empty()) {
      auto pinned = run_command({taskset, "-a", "-p", "-c", o.load_cpus, std::to_string(getpid())});
      if (pinned.status != 0) throw std::runtime_error("--load-cpus: taskset: " + pinned.output);
    }
    if (address.empty()) {
      node = std::make_unique<node_process>(self_executable(), tmp + "/node", std::vector<std::string>{},
                                            std::chrono::seconds(30), std::vector<std::string>{}, server_prefix);
      address = node->address();
      progress("node " + address + " on " + tmp + "/node" +
               (o.node_cpus.empty() ? "" : ", servers on CPUs " + o.node_cpus) +
               (o.load_cpus.empty() ? "" : ", load on CPUs " + o.load_cpus));
    }
    pid_t node_pid = node ? node->pid() : 0;
    for (int round = 1; round <= o.repeat; ++round) {
      if (o.repeat > 1) progress("round " + std::to_string(round) + " of " + std::to_string(o.repeat));
      std::vector<row> rows;
      bool uuid = o.ids != "sequential";
      rows.push_back(run_holdfast_row(o, address, node_pid, "1a", 1, uuid));
      rows.push_back(run_holdfast_row(o, address, node_pid, "1b", o.depth_pipelined, uuid));
      if (o.ids == "both") {
        rows.push_back(run_holdfast_row(o, address, node_pid, "1a-seq", 1, false));
        rows.push_back(run_holdfast_row(o, address, node_pid, "1b-seq", o.depth_pipelined, false));
      }
      if (o.peers) {
        for (auto& r : run_redis_rows({1, o.depth_pipelined}, o.seconds, progress, server_prefix)) rows.push_back(r);
        rows.push_back(run_postgres_row(o.postgres_clients, o.seconds, progress, server_prefix));
      }
      for (auto& r : rows)
        if (r.ran)
          progress("row " + r.id + ": " + fmt("%.0f/s", r.per_second) + ", p99 " + fmt("%.2f ms", r.p99_ms) +
                   ", CPU per reservation: server " + cpu_text(r.server_cpu_us) + ", load " + cpu_text(r.load_cpu_us));
      rounds.push_back(std::move(rows));
    }
    if (node) node->terminate();
  }
  auto rows = median_rows(rounds);
  auto pair_ratios = ratios(rounds);
  for (auto& r : rows)
    if (!r.ran) progress("row " + r.id + " skipped: " + r.skipped);

  auto goals = targets(rows, pair_ratios);
  if (o.json) {
    json j;
    j["environment"] = {{"cores", cores}, {"cpu", cpu_model()}, {"kernel", un.release},
                        {"fsync_p50_ms", fsync.p50_ms}, {"fsync_p99_ms", fsync.p99_ms}};
    for (auto& r : rows) {
      int runs = 0;
      for (auto& round : rounds)
        if (auto* ran = find(round, r.id)) runs += ran->stock_ok();
      json jr{{"id", r.id}, {"system", r.system}, {"shape", r.shape}, {"ran", r.ran},
              {"rounds_ran", runs}};
      if (!r.ran) jr["skipped"] = r.skipped;
      else
        jr.update({{"reservations_per_s", r.per_second}, {"reservations", r.reservations},
                   {"seconds", r.seconds}, {"p50_ms", r.p50_ms}, {"p99_ms", r.p99_ms},
                   {"p999_ms", r.p999_ms}, {"stock_drop", r.stock_drop}, {"counted", r.counted},
                   {"stock_check", r.stock_ok()}});
      if (r.ran && r.server_cpu_us >= 0) jr["server_cpu_us_per_reservation"] = r.server_cpu_us;
      if (r.ran && r.load_cpu_us >= 0) jr["load_cpu_us_per_reservation"] = r.load_cpu_us;
      j["rows"].push_back(jr);
    }
    j["rounds"] = o.repeat;
    j["ids"] = o.ids;
    for (auto& q : pair_ratios)
      if (!q.values.empty())
        j["ratios"].push_back({{"row", q.row}, {"peer", q.peer}, {"median", q.median()},
                               {"min", q.min()}, {"max", q.max()}, {"values", q.values}});
    for (auto& t : goals)
      j["targets"].push_back({{"target", t.what}, {"measured", t.measured}, {"met", t.met()}});
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("\n=== hot-SKU reservations, durable, on loopback: median of %d round(s) ===\n",
                o.repeat);
    std::printf("%-6s %-52s %-26s %11s %8s %8s %10s %8s %6s  %s\n", "row", "system", "load", "reserv./s",
                "p50 ms", "p99 ms", "server us", "load us", "stock", "ratio");
    for (auto& r : rows) {
      if (!r.ran) {
        std::printf("%-6s %-52s %-26s  skipped: %s\n", r.id.c_str(), r.system.c_str(),
                    r.shape.c_str(), r.skipped.c_str());
        continue;
      }
      std::string ratio;
      for (auto& q : pair_ratios)
        if (q.row == r.id && !q.values.empty()) ratio += (ratio.empty() ? "" : ", ") + q.text();
      if (r.id.rfind("1", 0) != 0) ratio = "peer";
      auto us = [](double v) { return v < 0 ? std::string("-") : fmt("%.2f", v); };
      std::printf("%-6s %-52s %-26s %11.0f %8.3f %8.3f %10s %8s %6s  %s\n", r.id.c_str(), r.system.c_str(),
                  r.shape.c_str(), r.per_second, r.p50_ms, r.p99_ms, us(r.server_cpu_us).c_str(),
                  us(r.load_cpu_us).c_str(), r.stock_ok() ? "ok" : "WRONG", ratio.c_str());
    }
    std::printf("\nrows: the round of median throughput; ratio: median over rounds (min-max).\n");
    std::printf("stock: ok = the row's stock fell by exactly the reservations it counted.\n");
    std::printf("server us / load us: CPU time per reservation (from /proc over the measured calls) of the\n"
                "server (node; redis-server; postgres with its backends) and of the load generator (this\n"
                "bench's threads; redis-benchmark; pgbench): the ratio that survives a noisy machine.\n");
    for (auto& q : cpu_ratios(rows))
      std::printf("server CPU per reservation, %s: %.2fx %s's\n", q.first.c_str(), q.second.second, q.second.first.c_str());
    std::printf("environment: %u cores, %s; fsync of 4 KiB p50 %.3f ms, p99 %.3f ms\n", cores,
                cpu_model().c_str(), fsync.p50_ms, fsync.p99_ms);
    for (auto& t : goals)
      std::printf("target %-40s measured %10.2f  %s\n", t.what.c_str(), t.measured,
                  t.met() ? "met" : "MISSED");
  }
  if (!o.png.empty()) write_png(o.png, rows, tmp);
  std::filesystem::remove_all(tmp);
  bool all_ok = true;
  for (auto& round : rounds)
    for (auto& r : round)
      if (r.ran && !r.stock_ok()) all_ok = false;
  return all_ok && find(rows, "1a") && find(rows, "1b") ? 0 : 1;
}

}  // namespace holdfast::bench
