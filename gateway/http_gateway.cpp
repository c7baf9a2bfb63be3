#include "gateway/http_gateway.hpp"

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/compat/http.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <random>

#include "gateway/http_api.hpp"
#include "gateway/webhook.hpp"

namespace holdfast {
namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

kj::Promise<void> send_text(kj::HttpService::Response& response, const kj::HttpHeaderTable& table, uint status,
                            const std::string& body) {
  return send_json(response, table, status, body);
}

class gateway_service final : public kj::HttpService {
public:
  gateway_service(gateway& core, kj::Timer& timer, const kj::HttpHeaderTable& table, kj::HttpHeaderId key_header,
                  int64_t latency_ms, uint64_t seed)
    : core_(core), timer_(timer), table_(table), key_header_(key_header), latency_ms_(latency_ms), rng_(seed ^ 0x9e37) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders& headers,
                            kj::AsyncInputStream& body, Response& response) override {
    // url and headers are gone after the first read of the body: copied first.
    std::string m = kj::str(method).cStr(), path = url.cStr();
    if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    std::string key;
    KJ_IF_MAYBE(k, headers.get(key_header_)) { key = k->cStr(); }
    return body.readAllText(gateway_body_bytes_max)
      .then(
        [this, m, path, key, &response](kj::String text) { return handle(m, path, key, text.cStr(), response); },
        [this, &response](kj::Exception&&) {
          return send_text(response, table_, 413, R"({"outcome":"refused","error":{"message":"body too large"}})");
        });
  }

private:
  kj::Promise<void> handle(const std::string& method, const std::string& path, const std::string& key,
                           const std::string& body, Response& response) {
    if (method == "GET" && path == "/v1/ledger") return send_text(response, table_, 200, ledger_json(core_));
    payment_request r;
    std::string why;
    if (!from_http(method, path, body, key, r, why)) {
      payment_reply bad;
      bad.result = payment_reply::outcome::refused;
      bad.error = why;
      return send_text(response, table_, why.rfind("no such", 0) == 0 ? 404 : 400, reply_json(bad));
    }
    auto now = now_ms();
    core_.expire_keys(now);
    auto b = core_.begin(r, now);
    if (b.verdict != gateway::admission::proceed)
      return send_text(response, table_, http_status(b.answer, b.verdict), reply_json(b.answer));
    int64_t delay = latency_ms_ > 0 ? std::uniform_int_distribution<int64_t>(0, latency_ms_)(rng_) : 0;
    return timer_.afterDelay(delay * kj::MILLISECONDS).then([this, r, &response]() {
      bool lost = false;
      auto answer = core_.execute(r, now_ms());
      if (r.op != payment_op::lookup) lost = core_.lose_reply();
      if (lost) {
        payment_reply unknown;
        unknown.result = payment_reply::outcome::unknown;
        unknown.error = "internal error (the simulated gateway lost this reply)";
        return send_text(response, table_, 500, reply_json(unknown));
      }
      int status = http_status(answer, gateway::admission::proceed);
      if (r.op == payment_op::lookup && answer.result == payment_reply::outcome::refused && answer.intent.id.empty())
        status = 404;
      return send_text(response, table_, status, reply_json(answer));
    });
  }

  gateway& core_;
  kj::Timer& timer_;
  const kj::HttpHeaderTable& table_;
  kj::HttpHeaderId key_header_;
  int64_t latency_ms_;
  std::mt19937_64 rng_;
};

class quiet_errors final : public kj::TaskSet::ErrorHandler {
public:
  void taskFailed(kj::Exception&& e) override { spdlog::debug("gateway task: {}", e.getDescription().cStr()); }
};

}  // namespace

int run_gateway(const gateway_process_options& options) {
  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureSignal(SIGTERM);
  auto io = kj::setupAsyncIo();
  auto& timer = io.provider->getTimer();
  // Every start names its intents and events afresh: nodes remember ids across our
  // restarts, and pi_1 of this run must never be taken for pi_1 of the last.
  auto core_options = options.core;
  if (core_options.run_id.empty()) {
    std::random_device entropy;
    char run[16];
    std::snprintf(run, sizeof run, "%08x", entropy());
    core_options.run_id = run;
  }
  gateway core(core_options);
  kj::HttpHeaderTable::Builder builder;
  auto key_header = builder.add(idempotency_key_header);
  auto signature_header = builder.add(webhook_signature_header);
  auto table = builder.build();
  gateway_service service(core, timer, *table, key_header, options.latency_ms, options.core.seed);
  kj::HttpServer server(timer, *table, service);
  kj::Own<kj::ConnectionReceiver> listener;
  try {
    listener = io.provider->getNetwork().parseAddress(options.listen).wait(io.waitScope)->listen();
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "holdfast gateway: cannot listen on %s: %s\n", options.listen.c_str(),
                 e.getDescription().cStr());
    return 2;
  }
  auto host = options.listen.substr(0, options.listen.rfind(':'));
  std::printf("holdfast gateway listening on %s:%u (%zu webhook endpoints)\n", host.c_str(), listener->getPort(),
              options.webhooks.size());
  std::fflush(stdout);

  // Webhook deliveries: whatever is due goes out, at most deliveries_max at once.
  auto client = kj::newHttpClient(timer, *table, io.provider->getNetwork(), nullptr);
  quiet_errors errors;
  kj::TaskSet deliveries(errors);
  size_t in_flight = 0, turn = 0;
  uint64_t delivered = 0, refused = 0;
  std::function<kj::Promise<void>()> deliver = [&]() -> kj::Promise<void> {
    if (!options.webhooks.empty() && in_flight < options.deliveries_max) {
      auto now = now_ms();
      for (auto& d : core.due(now, options.deliveries_max - in_flight)) {
        auto url = options.webhooks[turn++ % options.webhooks.size()];
        auto body = webhook_body(d.event);
        auto signature = sign_webhook(options.secret, now / 1000, body);
        kj::HttpHeaders headers(*table);
        headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
        headers.set(signature_header, kj::str(signature.c_str()));
        auto text = kj::heapString(body.data(), body.size());
        ++in_flight;
        auto post = kj::evalNow([&]() {
          auto req = client->request(kj::HttpMethod::POST, kj::StringPtr(url.c_str()), headers, text.size());
          auto sent = req.body->write(text.begin(), text.size()).attach(kj::mv(req.body));
          return sent.then([response = kj::mv(req.response)]() mutable { return kj::mv(response); })
            .then([](kj::HttpClient::Response&& r) {
              auto status = r.statusCode;
              return r.body->readAllText(gateway_body_bytes_max).attach(kj::mv(r.body)).then([status](kj::String) {
                return status;
              });
            });
        });
        auto timed = post.exclusiveJoin(timer.afterDelay(options.webhook_timeout_ms * kj::MILLISECONDS).then([] {
          return 0u;
        }));
        deliveries.add(timed.then([](uint status) { return status; }, [](kj::Exception&&) { return 0u; })
                         .then([&, d = std::move(d)](uint status) mutable {
                           --in_flight;
                           if (status >= 200 && status < 300) {
                             ++delivered;
                             return;
                           }
                           ++refused;
                           core.failed(std::move(d), now_ms());
                         })
                         .attach(kj::mv(text)));
      }
    }
    return timer.afterDelay(10 * kj::MILLISECONDS).then([&] { return deliver(); });
  };

  auto stop = io.unixEventPort.onSignal(SIGINT).exclusiveJoin(io.unixEventPort.onSignal(SIGTERM));
  auto served = server.listenHttp(*listener).then([] { return siginfo_t{}; });
  stop.exclusiveJoin(kj::mv(served)).exclusiveJoin(deliver().then([] { return siginfo_t{}; })).wait(io.waitScope);
  auto& s = core.stats();
  std::printf("holdfast gateway: stopping; %zu ledger entries, %llu events (%llu duplicated), %llu webhooks "
              "delivered, %llu failed deliveries retried, %llu dropped\n",
              core.ledger().size(), static_cast<unsigned long long>(s.events),
              static_cast<unsigned long long>(s.duplicates), static_cast<unsigned long long>(delivered),
              static_cast<unsigned long long>(refused), static_cast<unsigned long long>(s.dropped));
  std::fflush(stdout);
  return 0;
}

}  // namespace holdfast
