#include "harness/gateway_process.hpp"

#include <algorithm>

#include "harness/node_process.hpp"
#include "harness/processes.hpp"

namespace holdfast {

gateway_process::gateway_process(const std::string& binary, const std::string& log_path,
                                 const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{binary, "gateway"};
  // A free port unless the caller names one (a gateway restarted where nodes expect it).
  if (std::find(args.begin(), args.end(), "--listen") == args.end()) argv.insert(argv.end(), {"--listen", "127.0.0.1:0"});
  argv.insert(argv.end(), args.begin(), args.end());
  try {
    auto child = start_listening(argv, log_path, timeout);
    pid_ = child.pid;
    address_ = child.address;
  } catch (const listening_failed& e) {
    throw std::runtime_error(std::string("gateway: ") + e.what());
  }
}

gateway_process::~gateway_process() { stop(); }

void gateway_process::stop() {
  if (pid_ <= 0) return;
  stop_child(pid_, 15, std::chrono::seconds(5));
  forget_on_interrupt(pid_);
  pid_ = -1;
}

bool gateway_process::ledger(ledger_view& out, std::string& error) const {
  std::string body;
  auto status = http_get(url() + "/v1/ledger", 10'000, body, error);
  if (status == 0) return false;
  if (status != 200 || !parse_ledger_json(body, out)) {
    error = "the gateway answered HTTP " + std::to_string(status) + " without a ledger";
    return false;
  }
  return true;
}

}  // namespace holdfast
