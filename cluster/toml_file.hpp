// Reading an operator's TOML file (--config, --tokens): only a regular file (a FIFO or a
// device would wait for ever or never end), and a syntax error said with its line.
#pragma once

#include <toml++/toml.h>

#include <filesystem>
#include <string>

namespace holdfast {

// Parses `path` into `out`; returns "" or why not, as "FLAG PATH[:LINE]: why".
inline std::string read_toml_file(const std::string& flag, const std::string& path, toml::table& out) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return flag + " " + path + ": not a regular file";
  try {
    out = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    auto line = e.source().begin.line;
    return flag + " " + path + (line ? ":" + std::to_string(line) : std::string()) + ": " + std::string(e.description());
  }
  return {};
}

}  // namespace holdfast
