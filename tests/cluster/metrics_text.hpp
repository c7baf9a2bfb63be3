// Reading the node's /metrics text in tests.
#pragma once

#include <sstream>
#include <string>

// The value of one sample line ("name{labels}" exactly as printed), or -1.
inline double metrics_sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}
