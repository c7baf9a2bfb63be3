// The peers Holdfast is compared with, each run the way its own community runs it.
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness/processes.hpp"
#include "bench/cpu.hpp"
#include "bench/rows.hpp"

namespace holdfast::bench {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    else if (c == ',' && !quoted) out.push_back(std::exchange(cur, {}));
    else cur.push_back(c);
  }
  out.push_back(cur);
  return out;
}

}  // namespace

void summarize(std::vector<double>& latencies_ms, row& r) {
  if (latencies_ms.empty()) return;
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto at = [&](double p) { return percentile_of_sorted(latencies_ms, p); };
  r.p50_ms = at(0.50);
  r.p99_ms = at(0.99);
  r.p999_ms = at(0.999);
  r.cdf.clear();
  const int points = 200;
  for (int i = 0; i <= points; ++i) {
    double f = static_cast<double>(i) / points;
    r.cdf.emplace_back(at(std::min(f, 0.9999)), f);
  }
}

fsync_cost measure_fsync(const std::string& dir, int samples) {
  fsync_cost cost;
  auto path = dir + "/fsync-probe";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return cost;
  std::vector<char> page(4096, 'x');
  std::vector<double> ms;
  for (int i = 0; i < samples; ++i) {
    auto t0 = steady::now();
    if (pwrite(fd, page.data(), page.size(), static_cast<off_t>(i % 16) * 4096) < 0) break;
    fdatasync(fd);
    ms.push_back(std::chrono::duration<double, std::milli>(steady::now() - t0).count());
  }
  close(fd);
  unlink(path.c_str());
  row r;
  summarize(ms, r);
  cost.p50_ms = r.p50_ms;
  cost.p99_ms = r.p99_ms;
  return cost;
}

// -- Redis + Lua ----------------------------------------------------------------

namespace {

// The flash-sale case study's script: read the stock, compare, decrement atomically.
const char* reserve_script =
  "local stock = tonumber(redis.call('GET', KEYS[1]) or '0') "
  "local qty = tonumber(ARGV[1]) "
  "if stock >= qty then redis.call('DECRBY', KEYS[1], qty) return 1 end "
  "return 0";

const int64_t initial_stock = 1'000'000'000'000;

}  // namespace

std::vector<row> run_redis_rows(const std::vector<int>& pipelines, double seconds_each,
                                void (*progress)(const std::string&),
                                const std::vector<std::string>& server_prefix) {
  std::vector<row> rows;
  for (size_t i = 0; i < pipelines.size(); ++i) {
    row r;
    r.id = std::string("2") + static_cast<char>('a' + i);
    r.system = "Redis + Lua, appendfsync always";
    r.shape = "redis-benchmark -c 50 -P " + std::to_string(pipelines[i]);
    rows.push_back(r);
  }
  auto server = find_program("redis-server");
  auto cli = find_program("redis-cli");
  auto tool = find_program("redis-benchmark");
  if (server.empty() || cli.empty() || tool.empty()) {
    for (auto& r : rows)
      r.skipped = "Redis not installed: apt-get install redis-server redis-tools";
    return rows;
  }
  auto dir = make_temp_dir("holdfast-bench-redis");
  auto port = std::to_string(free_port());
  {
    auto argv = server_prefix;
    argv.insert(argv.end(), {server, "--port", port, "--bind", "127.0.0.1", "--dir", dir, "--appendonly", "yes",
                             "--appendfsync", "always", "--save", "", "--daemonize", "no", "--protected-mode", "no"});
    child_process redis(argv, dir + "/redis.log");
    auto redis_cli = [&](std::vector<std::string> args) {
      std::vector<std::string> argv{cli, "-h", "127.0.0.1", "-p", port};
      argv.insert(argv.end(), args.begin(), args.end());
      return run_command(argv);
    };
    bool up = wait_until([&] { return trim(redis_cli({"PING"}).output) == "PONG"; }, 10s);
    auto sha = up ? trim(redis_cli({"SCRIPT", "LOAD", reserve_script}).output) : "";
    if (!up || sha.size() != 40) {
      for (auto& r : rows) r.skipped = "redis-server did not start (see " + dir + "/redis.log)";
      return rows;
    }
    for (size_t i = 0; i < rows.size(); ++i) {
      auto& r = rows[i];
      auto key = "stock:" + r.id;
      redis_cli({"SET", key, std::to_string(initial_stock)});
      auto bench = [&](int64_t requests) {
        return run_command({tool, "-h", "127.0.0.1", "-p", port, "-c", "50", "-P",
                            std::to_string(pipelines[i]), "-n", std::to_string(requests), "--csv",
                            "EVALSHA", sha, "1", key, "1"});
      };
      progress("row " + r.id + ": " + r.system + ", " + r.shape + " ...");
      // A short run sizes the measured one to about `seconds_each`.
      int64_t calibration = pipelines[i] > 1 ? 200'000 : 20'000;
      auto first = bench(calibration);
      auto parse = [](const std::string& out, std::vector<std::string>& fields) {
        std::istringstream lines(out);
        std::string line, last;
        while (std::getline(lines, line))
          if (!line.empty() && line[0] == '"' && line.rfind("\"test\"", 0) != 0) last = line;
        fields = csv_fields(trim(last));
        return fields.size() >= 8;
      };
      std::vector<std::string> f;
      if (first.status != 0 || !parse(first.output, f)) {
        r.skipped = "redis-benchmark failed: " + first.output.substr(0, 200);
        continue;
      }
      // redis-benchmark sends whole pipelines from every client: a multiple of
      // clients x depth is the exact number of calls it makes.
      int64_t unit = 50 * pipelines[i];
      auto requests = std::max<int64_t>(
        calibration, static_cast<int64_t>(std::stod(f[1]) * seconds_each) / unit * unit);
      server_cpu server_used(redis.pid());
      auto load_before = reaped_children_cpu_seconds();
      auto measured = bench(requests);
      auto server_s = server_used.seconds_since();
      auto load_s = reaped_children_cpu_seconds() - load_before;
      if (measured.status != 0 || !parse(measured.output, f)) {
        r.skipped = "redis-benchmark failed: " + measured.output.substr(0, 200);
        continue;
      }
      r.ran = true;
      r.per_second = std::stod(f[1]);
      r.reservations = requests;
      r.seconds = static_cast<double>(requests) / r.per_second;
      r.p50_ms = std::stod(f[4]);
      r.p99_ms = std::stod(f[6]);
      r.p999_ms = std::stod(f[7]);  // redis-benchmark reports max, not p99.9
      r.cdf = {{std::stod(f[3]), 0.0}, {r.p50_ms, 0.5}, {std::stod(f[5]), 0.95},
               {r.p99_ms, 0.99}, {std::stod(f[7]), 1.0}};
      // Stock is ample, so every script call reserved one unit.
      r.counted = calibration + requests;
      r.server_cpu_us = server_s * 1e6 / static_cast<double>(requests);
      r.load_cpu_us = load_s * 1e6 / static_cast<double>(requests);
      auto left = trim(redis_cli({"GET", key}).output);
      r.stock_drop = initial_stock - std::stoll(left.empty() ? "0" : left);
    }
  }
  std::filesystem::remove_all(dir);
  return rows;
}

// -- PostgreSQL -------------------------------------------------------------------

row run_postgres_row(int clients, double seconds, void (*progress)(const std::string&),
                     const std::vector<std::string>& server_prefix) {
  row r;
  r.id = "3";
  r.system = "PostgreSQL hot row, synchronous_commit=on";
  r.shape = "pgbench -c " + std::to_string(clients) + " -M prepared";
  std::vector<std::string> bin_dirs;
  if (std::filesystem::exists("/usr/lib/postgresql"))
    for (auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql"))
      bin_dirs.push_back(e.path().string() + "/bin");
  std::sort(bin_dirs.rbegin(), bin_dirs.rend());  // newest major version first
  auto initdb = find_program("initdb", bin_dirs);
  auto postgres = find_program("postgres", bin_dirs);
  auto psql = find_program("psql", bin_dirs);
  auto pgbench = find_program("pgbench", bin_dirs);
  if (initdb.empty() || postgres.empty() || psql.empty() || pgbench.empty()) {
    r.skipped = "PostgreSQL not installed: apt-get install postgresql";
    return r;
  }
  // postgres refuses to run as root; as root, the cluster belongs to user postgres.
  std::optional<run_as> user;
  auto dir = make_temp_dir("holdfast-bench-pg");
  if (geteuid() == 0) {
    auto* pw = getpwnam("postgres");
    if (!pw) {
      r.skipped = "running as root and there is no user 'postgres' to run the server as";
      std::filesystem::remove_all(dir);
      return r;
    }
    user = run_as{pw->pw_uid, pw->pw_gid};
    if (chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      r.skipped = "cannot hand " + dir + " to user postgres";
      std::filesystem::remove_all(dir);
      return r;
    }
  }
  progress("row 3: " + r.system + ", " + r.shape + " ...");
  auto data = dir + "/data";
  auto init = run_command({initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8"}, user);
  if (init.status != 0) {
    r.skipped = "initdb failed: " + init.output.substr(0, 300);
    std::filesystem::remove_all(dir);
    return r;
  }
  auto port = std::to_string(free_port());
  {
    // SIGINT: PostgreSQL's fast shutdown.
    auto argv = server_prefix;
    argv.insert(argv.end(), {postgres, "-D", data, "-p", port, "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c",
                             "synchronous_commit=on", "-c", "fsync=on", "-c", "max_connections=64"});
    child_process server(argv, dir + "/postgres.log", user, SIGINT);
    auto sql = [&](const std::string& statement) {
      return run_command({psql, "-X", "-q", "-t", "-A", "-h", "127.0.0.1", "-p", port, "-U",
                          "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", statement});
    };
    bool up = wait_until([&] { return sql("SELECT 1").status == 0; }, 30s);
    auto setup = sql("CREATE TABLE inventory (sku text PRIMARY KEY, available bigint NOT NULL); "
                     "INSERT INTO inventory VALUES ('hot', " + std::to_string(initial_stock) + ")");
    if (!up || setup.status != 0) {
      r.skipped = "PostgreSQL did not start: " + setup.output.substr(0, 300);
      server.stop();
      std::filesystem::remove_all(dir);
      return r;
    }
    auto script = dir + "/reserve.sql";
    std::ofstream(script) << "UPDATE inventory SET available = available - 1 "
                             "WHERE sku = :sku AND available >= 1 RETURNING available;\n";
    auto secs = std::to_string(std::max(1, static_cast<int>(std::lround(seconds))));
    // The backends end when pgbench disconnects; the postmaster reaps them (and so counts
    // their CPU) a moment later: wait for that before the server's CPU is read.
    auto workers_before = children_of(server.pid()).size();
    server_cpu server_used(server.pid());
    auto load_before = reaped_children_cpu_seconds();
    auto run = run_command({pgbench, "-n", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-c",
                            std::to_string(clients), "-j", "2", "-T", secs, "-M", "prepared",
                            "-D", "sku=hot", "-f", script, "-l", "--log-prefix=" + dir + "/tx",
                            "postgres"});
    auto value_after = [&](const std::string& label) -> std::string {
      auto at = run.output.find(label);
      if (at == std::string::npos) return {};
      at += label.size();
      return run.output.substr(at, run.output.find_first_of(" \n", at) - at);
    };
    auto load_s = reaped_children_cpu_seconds() - load_before;
    wait_until([&] { return children_of(server.pid()).size() <= workers_before; }, 5s);
    auto server_s = server_used.seconds_since();
    auto processed = value_after("number of transactions actually processed: ");
    auto tps = value_after("tps = ");
    if (run.status != 0 || processed.empty() || tps.empty()) {
      r.skipped = "pgbench failed: " + run.output.substr(0, 300);
    } else {
      r.ran = true;
      r.reservations = r.counted = std::stoll(processed);
      r.per_second = std::stod(tps);
      r.seconds = std::stod(secs);
      if (r.reservations > 0) {
        r.server_cpu_us = server_s * 1e6 / static_cast<double>(r.reservations);
        r.load_cpu_us = load_s * 1e6 / static_cast<double>(r.reservations);
      }
      std::vector<double> ms;
      for (auto& e : std::filesystem::directory_iterator(dir)) {
        if (e.path().filename().string().rfind("tx", 0) != 0) continue;
        std::ifstream log(e.path());
        long client, tx, latency_us;
        std::string rest;
        while (log >> client >> tx >> latency_us && std::getline(log, rest))
          ms.push_back(static_cast<double>(latency_us) / 1000);
      }
      summarize(ms, r);
      auto left = trim(sql("SELECT available FROM inventory WHERE sku = 'hot'").output);
      r.stock_drop = initial_stock - std::stoll(left.empty() ? "0" : left);
    }
    server.stop();
  }
  std::filesystem::remove_all(dir);
  return r;
}

}  // namespace holdfast::bench
