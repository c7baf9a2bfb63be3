// The node's HTTP endpoint as an operator uses it: /health, /ready and /metrics on a real
// node process, the metrics text checked line by line against the exposition format, and
// a real Prometheus (Debian's `prometheus`) scraping the node and answering a query.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <thread>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "gateway/http_api.hpp"
#include "harness/node_process.hpp"
#include "harness/processes.hpp"
#include "metrics_text.hpp"
#include "png_pixels.hpp"
#include "raw_rpc.hpp"

namespace holdfast {
namespace {

using namespace std::chrono_literals;

class http_endpoint_process_test : public ::testing::Test {
protected:
  http_endpoint_process_test() : dir_(make_temp_dir("holdfast-http")) {
    node_ = std::make_unique<node_process>(HOLDFAST_BINARY, dir_ + "/data",
                                           std::vector<std::string>{"--http", "127.0.0.1:0"});
    auto address = node_->http_address();
    EXPECT_FALSE(address.empty()) << node_->log();
    http_ = "http://" + address;
  }
  ~http_endpoint_process_test() override {
    prometheus_.reset();
    node_.reset();
    std::filesystem::remove_all(dir_);
  }
  command_result cli(std::vector<std::string> args) {
    args.insert(args.begin(), {HOLDFAST_BINARY, "--node", node_->address()});
    return run_command(args);
  }
  int get(const std::string& path, std::string& body) {
    std::string error;
    int status = http_get(http_ + path, 10'000, body, error);
    EXPECT_NE(status, 0) << error;
    return status;
  }
  static double sample(const std::string& text, const std::string& series) { return metrics_sample(text, series); }

  std::string dir_;
  std::string http_;
  std::unique_ptr<node_process> node_;
  std::unique_ptr<child_process> prometheus_;
};

// The CLI pointed at an HTTP server (which answers a stranger's bytes with 400) says so,
// rather than Cap'n Proto's "Message has too many segments".
TEST_F(http_endpoint_process_test, the_cli_at_an_http_server_is_told_it_is_not_a_client_port) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof at;
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&at), sizeof at), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&at), &len), 0);
  std::thread http([listener] {
    int c = accept(listener, nullptr, nullptr);
    if (c < 0) return;
    const char answer[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    (void)!write(c, answer, sizeof answer - 1);
    shutdown(c, SHUT_WR);
    char sink[256];
    while (read(c, sink, sizeof sink) > 0) {}
    close(c);
  });
  auto r = run_command({HOLDFAST_BINARY, "--timeout-ms", "5000", "--node", "127.0.0.1:" + std::to_string(ntohs(at.sin_port)),
                        "sku", "show", "tee"});
  http.join();
  close(listener);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("is this a Holdfast node's client port"), std::string::npos) << r.output;
}

TEST_F(http_endpoint_process_test, health_ready_and_metrics_in_the_prometheus_text_format) {
  std::string body;
  ASSERT_EQ(get("/health", body), 200) << body;
  ASSERT_EQ(get("/ready", body), 200) << body;
  EXPECT_EQ(nlohmann::json::parse(body)["ready"], true) << body;

  ASSERT_EQ(cli({"sku", "create", "tee", "--stock", "2", "--price", "100"}).status, 0);
  for (auto id : {"a", "b", "c"}) cli({"reserve", "tee", "1", "--hold", id});
  ASSERT_EQ(get("/metrics", body), 200) << body;

  EXPECT_EQ(sample(body, "holdfast_hold_operations_total{kind=\"reserve\",outcome=\"ok\"}"), 2) << body;
  EXPECT_EQ(sample(body, "holdfast_hold_operations_total{kind=\"reserve\",outcome=\"out_of_stock\"}"), 1);
  EXPECT_EQ(sample(body, "holdfast_reserve_call_duration_seconds_count"), 3);
  // Calls by method: each CLI reserve is one batch call (the client batches), whatever its outcome.
  EXPECT_EQ(sample(body, "holdfast_rpc_calls_total{method=\"createSku\",result=\"answered\"}"), 1) << body;
  EXPECT_EQ(sample(body, "holdfast_rpc_calls_total{method=\"reserveBatch\",result=\"answered\"}"), 3) << body;
  EXPECT_EQ(sample(body, "holdfast_rpc_calls_total{method=\"restock\",result=\"answered\"}"), -1) << body;
  EXPECT_GE(sample(body, "holdfast_group_commit_duration_seconds_count"), 3);  // the create and two reserves
  EXPECT_GE(sample(body, "holdfast_log_fdatasync_duration_seconds_count"), 3);
  EXPECT_GT(sample(body, "holdfast_log_fdatasync_duration_seconds_sum"), 0);
  EXPECT_GE(sample(body, "holdfast_sku_actors_active"), 1);
  EXPECT_EQ(sample(body, "holdfast_serving"), 1);
  EXPECT_GE(sample(body, "holdfast_client_connections_accepted_total"), 4);

  // The format: every sample belongs to a family announced by HELP and TYPE before it;
  // counters end _total; a histogram's buckets never decrease and +Inf equals _count.
  std::regex sample_line(R"(^([a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+|\+Inf)$)");
  std::map<std::string, std::string> type_of;
  std::istringstream in(body);
  std::string line, last_help;
  double previous_bucket = -1;
  int samples = 0;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      last_help = line.substr(7, line.find(' ', 7) - 7);
      previous_bucket = -1;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      EXPECT_EQ(name, last_help) << "TYPE without its HELP: " << line;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      if (type == "counter") {
        EXPECT_TRUE(name.size() > 6 && name.substr(name.size() - 6) == "_total") << name;
      }
      type_of[name] = type;
      continue;
    }
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, sample_line)) << "not a sample line: '" << line << "'";
    ++samples;
    std::string name = m[1];
    std::string family = name;
    for (auto suffix : {"_bucket", "_sum", "_count"})
      if (!type_of.count(family) && name.size() > strlen(suffix) &&
          name.compare(name.size() - strlen(suffix), std::string::npos, suffix) == 0)
        family = name.substr(0, name.size() - strlen(suffix));
    ASSERT_TRUE(type_of.count(family)) << "a sample of no announced family: " << line;
    EXPECT_EQ(family, last_help) << "a sample outside its family's block: " << line;
    double value = m[4] == "+Inf" ? INFINITY : std::stod(m[4]);
    if (name == family + "_bucket") {
      EXPECT_GE(value, previous_bucket) << line;
      previous_bucket = value;
    }
    if (name == family + "_count" && type_of[family] == "histogram") {
      EXPECT_EQ(value, previous_bucket) << line;
    }
  }
  EXPECT_GT(samples, 50);

  // Only GET (and HEAD); a bad input changes nothing and the endpoint keeps serving.
  std::string error;
  EXPECT_EQ(http_post(http_ + "/metrics", {}, "x", 10'000, body, error), 405) << error;
  EXPECT_EQ(get("/nothing", body), 404);
  EXPECT_EQ(get("/health", body), 200);
}

TEST_F(http_endpoint_process_test, a_real_prometheus_scrapes_the_node_and_answers_a_query) {
  auto prometheus = find_program("prometheus");
  if (prometheus.empty()) GTEST_SKIP() << "Debian's prometheus is not installed (scripts/run test installs it)";
  ASSERT_EQ(cli({"sku", "create", "tee", "--stock", "5", "--price", "100"}).status, 0);
  for (auto id : {"a", "b", "c"}) ASSERT_EQ(cli({"reserve", "tee", "1", "--hold", id}).status, 0);

  auto target = http_.substr(std::string("http://").size());
  {
    std::ofstream config(dir_ + "/prometheus.yml");
    config << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
           << "scrape_configs:\n  - job_name: holdfast\n    static_configs:\n      - targets: ['" << target << "']\n";
  }
  auto port = free_port();
  auto api = "http://127.0.0.1:" + std::to_string(port);
  prometheus_ = std::make_unique<child_process>(
    std::vector<std::string>{prometheus, "--config.file=" + dir_ + "/prometheus.yml",
                             "--storage.tsdb.path=" + dir_ + "/tsdb",
                             "--web.listen-address=127.0.0.1:" + std::to_string(port)},
    dir_ + "/prometheus.log");
  // Prometheus's own query API: the node's counter as Prometheus scraped it.
  std::string body, error;
  auto query = api + "/api/v1/query?query=holdfast_hold_operations_total%7Bkind%3D%22reserve%22%2Coutcome%3D%22ok%22%7D";
  bool seen = wait_until(
    [&] {
      if (http_get(query, 2'000, body, error) != 200) return false;
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (j.is_discarded() || j["data"]["result"].empty()) return false;
      return j["data"]["result"][0]["value"][1] == "3";
    },
    60s);
  std::ifstream log(dir_ + "/prometheus.log");
  std::string log_text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(seen) << "last answer: " << body << " " << error << "\nprometheus log:\n" << log_text;
  // And the scrape itself was healthy: Prometheus's `up` for the target is 1.
  ASSERT_EQ(http_get(api + "/api/v1/query?query=up", 2'000, body, error), 200) << error;
  EXPECT_EQ(nlohmann::json::parse(body)["data"]["result"][0]["value"][1], "1") << body;
}

// The dashboard (GET /): one static page that polls /metrics and draws it. Headless
// Chromium (Debian's `chromium`, which `scripts/run test` installs) loads it from the
// node while a client holds a connection: the page's own counters show the node's
// reserves, and the screenshot shows the connections chart's line.
TEST_F(http_endpoint_process_test, the_dashboard_draws_the_node_s_metrics_in_headless_chromium) {
  std::string page;
  ASSERT_EQ(get("/", page), 200);
  EXPECT_NE(page.find("<canvas"), std::string::npos);
  EXPECT_EQ(page.find("http://"), std::string::npos) << "the page must fetch nothing from elsewhere";
  EXPECT_EQ(page.find("https://"), std::string::npos) << "the page must fetch nothing from elsewhere";
  auto chromium = find_program("chromium");
  if (chromium.empty()) GTEST_SKIP() << "Debian's chromium is not installed (scripts/run test installs it)";

  ASSERT_EQ(cli({"sku", "create", "tee", "--stock", "100", "--price", "100"}).status, 0);
  for (int i = 0; i < 25; ++i) ASSERT_EQ(cli({"reserve", "tee", "1", "--hold", "d" + std::to_string(i)}).status, 0);
  auto connection = testing::connect_raw(node_->address());  // one client connection open: the green line
  ASSERT_GE(connection, 0);
  auto browse = [&](const std::string& what) {
    // Virtual time runs the page's one-second polls at once; fetches still go to the node.
    return run_command_for({chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--user-data-dir=" + dir_ + "/chromium", "--window-size=1200,900",
                            "--virtual-time-budget=5000", what, http_ + "/"},
                           60s);
  };
  auto dom = browse("--dump-dom");
  ASSERT_EQ(dom.status, 0) << dom.output;
  EXPECT_NE(dom.output.find("data-reserves=\"25\""), std::string::npos) << dom.output;
  EXPECT_NE(dom.output.find(">serving<"), std::string::npos) << dom.output;
  auto shot = dir_ + "/dashboard.png";
  auto r = browse("--screenshot=" + shot);
  ASSERT_EQ(r.status, 0) << r.output;
  auto image = read_png(shot);
  ASSERT_TRUE(image.error.empty()) << image.error;
  EXPECT_EQ(image.width, 1200u);
  // The connections chart's line (#2ca02c) and the reservations chart's (#1f77b4): a chart
  // with data draws hundreds of pixels of its colour.
  EXPECT_GT(count_pixels(image, 0x2c, 0xa0, 0x2c), 300u) << "the connections chart is empty";
  EXPECT_GT(count_pixels(image, 0x1f, 0x77, 0xb4), 300u) << "the reservations chart is empty";
  close(connection);
}

}  // namespace
}  // namespace holdfast
