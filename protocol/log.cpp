#include "protocol/log.hpp"

#include <spdlog/pattern_formatter.h>

namespace holdfast {
namespace {

// %j: the message as the contents of a JSON string (quotes, backslashes and control
// characters escaped; other bytes as they are).
class json_message final : public spdlog::custom_flag_formatter {
public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    static const char* hex = "0123456789abcdef";
    for (char ch : std::string_view(msg.payload.data(), msg.payload.size())) {
      auto c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') {
        dest.push_back('\\');
        dest.push_back(ch);
      } else if (c == '\n') {
        dest.append(std::string_view("\\n"));
      } else if (c < 0x20 || c == 0x7f) {
        const char esc[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        dest.append(esc, esc + sizeof esc);
      } else {
        dest.push_back(ch);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<json_message>(); }
};

// The log's formatter: the JSON object per line, or spdlog's own pattern (local time).
std::unique_ptr<spdlog::pattern_formatter> formatter(const std::string& format, const std::string& eol) {
  if (format != "json") return std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::local, eol);
  auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc, eol);
  f->add_flag<json_message>('j').set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","thread":%t,"msg":"%j"})");
  return f;
}

}  // namespace

void set_log_format(const std::string& format) {
  if (format == "json") spdlog::set_formatter(formatter(format, spdlog::details::os::default_eol));
}

std::string log_line(const std::string& format, const std::string& message) {
  spdlog::details::log_msg msg(spdlog::source_loc{}, "", spdlog::level::info, message);
  spdlog::memory_buf_t out;
  formatter(format, "")->format(msg, out);
  return std::string(out.data(), out.size());
}

}  // namespace holdfast
