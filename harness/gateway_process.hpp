// A `holdfast gateway` child process (the simulated payment gateway over HTTP) on a
// loopback port, for the demo, chaos, the checkout benchmark and the process tests. Its
// output goes to `log_path`; it is stopped by PID when the handle goes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "gateway/http_api.hpp"

namespace holdfast {

class gateway_process {
public:
  // `args`: the gateway's options (--webhook, --secret, faults...; --listen, else a free
  // loopback port). Throws
  // std::runtime_error when it does not start.
  gateway_process(const std::string& binary, const std::string& log_path, const std::vector<std::string>& args,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~gateway_process();
  gateway_process(const gateway_process&) = delete;
  gateway_process& operator=(const gateway_process&) = delete;

  std::string url() const { return "http://" + address_; }
  pid_t pid() const { return pid_; }
  // The gateway's ledger; false with `error` when it cannot be read.
  bool ledger(ledger_view& out, std::string& error) const;
  // SIGTERM, and reaped (it prints its counts to the log).
  void stop();

private:
  pid_t pid_ = -1;
  std::string address_;
};

}  // namespace holdfast
