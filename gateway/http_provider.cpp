#include "gateway/http_provider.hpp"

#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>

#include "gateway/http_api.hpp"
#include "protocol/kj_inbox.hpp"

namespace holdfast {

struct http_payment_provider::impl {
  struct call {
    payment_request request;
    std::function<void(payment_reply)> done;
    bool stop = false;
  };
  std::string url;
  int64_t timeout_ms;
  kj_inbox<call> inbox;
  std::thread thread;

  class ignore final : public kj::TaskSet::ErrorHandler {
  public:
    void taskFailed(kj::Exception&& e) override { spdlog::debug("payment call: {}", e.getDescription().cStr()); }
  };

  void run() {
    auto io = kj::setupAsyncIo();
    auto& timer = io.provider->getTimer();
    kj::HttpHeaderTable::Builder builder;
    auto key_header = builder.add(idempotency_key_header);
    auto table = builder.build();
    auto client = kj::newHttpClient(timer, *table, io.provider->getNetwork(), nullptr);
    ignore errors;
    kj::TaskSet calls(errors);
    bool stopping = false;
    std::function<kj::Promise<void>()> loop = [&]() -> kj::Promise<void> {
      return inbox.next().then([&](std::vector<call> batch) -> kj::Promise<void> {
        for (auto& c : batch) {
          if (c.stop) stopping = true;
          else calls.add(send(*client, timer, *table, key_header, kj::mv(c)));
        }
        if (stopping) return kj::READY_NOW;
        return loop();
      });
    };
    loop().wait(io.waitScope);
    // Calls still in flight are cancelled with the loop: their orders' step timeouts
    // count them as unknown.
  }

  kj::Promise<void> send(kj::HttpClient& client, kj::Timer& timer, const kj::HttpHeaderTable& table,
                         kj::HttpHeaderId key_header, call c) {
    auto http = to_http(c.request);
    auto target = url + http.path;
    auto body = kj::heapString(http.body.data(), http.body.size());
    auto done = std::make_shared<std::function<void(payment_reply)>>(std::move(c.done));
    auto answered = kj::evalNow([&]() {
      kj::HttpHeaders headers(table);
      headers.set(key_header, kj::str(c.request.idempotency_key.c_str()));
      if (http.method == "GET") {
        auto req = client.request(kj::HttpMethod::GET, kj::StringPtr(target.c_str()), headers, uint64_t(0));
        return kj::mv(req.response);
      }
      headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
      auto req = client.request(kj::HttpMethod::POST, kj::StringPtr(target.c_str()), headers, body.size());
      auto sent = req.body->write(body.begin(), body.size()).attach(kj::mv(req.body));
      return sent.then([response = kj::mv(req.response)]() mutable { return kj::mv(response); });
    });
    auto read = answered.then([](kj::HttpClient::Response&& r) {
      auto status = static_cast<int>(r.statusCode);
      return r.body->readAllText(gateway_body_bytes_max).attach(kj::mv(r.body)).then([status](kj::String text) {
        return reply_from_http(status, text.cStr());
      });
    });
    auto timed = read.exclusiveJoin(timer.afterDelay(timeout_ms * kj::MILLISECONDS).then([this] {
      payment_reply r;
      r.result = payment_reply::outcome::unknown;
      r.error = "the gateway did not answer within " + std::to_string(timeout_ms) + " ms";
      return r;
    }));
    return timed
      .then([](payment_reply r) { return r; },
            [](kj::Exception&& e) {
              payment_reply r;
              r.result = payment_reply::outcome::unknown;
              r.error = std::string("the gateway could not be reached: ") + e.getDescription().cStr();
              return r;
            })
      .then([done](payment_reply r) { (*done)(std::move(r)); })
      .attach(kj::mv(body));
  }
};

http_payment_provider::http_payment_provider(std::string url, int64_t timeout_ms) : impl_(std::make_unique<impl>()) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  impl_->url = std::move(url);
  impl_->timeout_ms = timeout_ms;
  impl_->thread = std::thread([this] { impl_->run(); });
}

http_payment_provider::~http_payment_provider() {
  impl_->inbox.put({{}, {}, true});
  impl_->thread.join();
}

void http_payment_provider::call(payment_request request, std::function<void(payment_reply)> done) {
  impl_->inbox.put({std::move(request), std::move(done), false});
}

}  // namespace holdfast
