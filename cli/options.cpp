// Options shared by the commands: durations with units, and `holdfast node --config`.
#include "cli/commands.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <set>

#include "client/cluster_file.hpp"
#include "cluster/toml_file.hpp"
#include "protocol/domain.hpp"

namespace holdfast::cli {

std::string utc_text(int64_t unix_ms) {
  auto t = static_cast<time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return out;
}

std::string span_text(int64_t s) {
  return s >= 86'400 ? std::to_string(s / 86'400) + "d" + std::to_string(s % 86'400 / 3600) + "h"
         : s >= 3600 ? std::to_string(s / 3600) + "h" + std::to_string(s % 3600 / 60) + "m"
         : s >= 60   ? std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s"
                     : std::to_string(s) + "s";
}

std::string duration_text(int64_t ms) {
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms != 0 && ms % 1'000 == 0) return std::to_string(ms / 1'000) + "s";
  return std::to_string(ms) + "ms";
}

CLI::Option* add_duration_ms(CLI::App* cmd, const std::string& flag, int64_t& ms, const std::string& description,
                             int64_t min_ms, int64_t max_ms) {
  auto names = flag;
  if (flag.size() > 3 && flag.compare(flag.size() - 3, 3, "-ms") == 0) names += "," + flag.substr(0, flag.size() - 3);
  // To milliseconds, within the range (said in units, not as a count of ms).
  CLI::Validator duration(
    [min_ms, max_ms](std::string& text) -> std::string {
      auto digits = text.find_first_not_of("0123456789", text[0] == '-' ? 1 : 0);
      int64_t value = 0;
      if (text.empty() || text == "-" || digits == 0 || (digits == std::string::npos && text.size() > 13))
        return "'" + text + "' is not a duration: 1500ms, 30s, 15m, 24h (a bare number is ms)";
      if (digits == std::string::npos) value = std::stoll(text);  // ms, the old spelling
      else if ((value = parse_duration_ms(text)) < 0)
        return "'" + text + "' is not a duration: 1500ms, 30s, 15m, 24h (a bare number is ms)";
      if (value < min_ms || value > max_ms)
        return text + " not in range " + duration_text(min_ms) + " to " + duration_text(max_ms);
      text = std::to_string(value);
      return {};
    },
    "DURATION", "duration");
  return cmd->add_option(names, ms, description + " (30s, 15m, 1500ms; a bare number is ms)")
    ->transform(duration)
    ->default_str(duration_text(ms));
}

CLI::Option* add_snapshot_entries(CLI::App* cmd, int& entries, const std::string& what) {
  return cmd
    ->add_option("--snapshot-entries", entries,
                 "with --replicas: the cluster file's raft_snapshot_entries, a Raft snapshot every this many "
                 "entries (default " + std::to_string(cluster_config{}.raft_snapshot_entries) + "); " + what)
    ->check(CLI::Range(cluster_config::raft_snapshot_entries_min, cluster_config::raft_snapshot_entries_max));
}

namespace {

// The flags `args` (the words after the subcommand) already give, each under every name
// of its option.
std::set<const CLI::Option*> given(CLI::App& cmd, const std::vector<std::string>& args) {
  std::set<const CLI::Option*> out;
  for (auto& word : args) {
    if (word == "--") break;
    if (word.rfind("--", 0) != 0) continue;
    if (auto* o = cmd.get_option_no_throw(word.substr(0, word.find('=')))) out.insert(o);
  }
  return out;
}

// One TOML value as the words of a command-line value; false if it has no such form.
bool words_of(const toml::node& value, std::vector<std::string>& out) {
  if (auto s = value.as_string()) out.push_back(s->get());
  else if (auto i = value.as_integer()) out.push_back(std::to_string(i->get()));
  else if (auto f = value.as_floating_point()) out.push_back(fmt::format("{:.17g}", f->get()));
  else if (auto b = value.as_boolean()) out.push_back(b->get() ? "true" : "false");
  else if (auto a = value.as_array()) {
    for (auto& v : *a)
      if (v.is_array() || v.is_table() || !words_of(v, out)) return false;
  } else {
    return false;
  }
  return true;
}

std::string where(const std::string& file, const toml::source_region& at) {
  return file + ":" + std::to_string(at.begin.line);
}

}  // namespace

std::string expand_config_file(CLI::App& app, std::vector<std::string>& args,
                               std::vector<std::pair<std::string, std::string>>& origins) {
  // The command: the first word that is not an option (the global options that take a
  // value are given with '=' or before a value that is not a command).
  size_t at = 1;
  CLI::App* cmd = nullptr;
  for (; at < args.size(); ++at) {
    if (args[at].rfind("-", 0) == 0) continue;
    try {
      cmd = app.get_subcommand(args[at]);
      break;
    } catch (const CLI::OptionNotFound&) {
    }
  }
  if (!cmd || !cmd->get_option_no_throw("--config")) return {};
  std::string file;
  size_t flag = 0;
  for (size_t i = at + 1; i < args.size() && args[i] != "--"; ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      file = args[i + 1];
      flag = i;
    } else if (args[i].rfind("--config=", 0) == 0) {
      file = args[i].substr(9);
      flag = i;
    }
  }
  if (flag == 0) return {};
  toml::table table;
  if (auto why = read_toml_file("--config", file, table); !why.empty()) return why;
  auto already = given(*cmd, std::vector<std::string>(args.begin() + static_cast<long>(at) + 1, args.end()));
  std::vector<std::string> words;
  for (auto& [key, value] : table) {
    std::string name(key.str());
    auto* option = name == "config" || name == "help" ? nullptr : cmd->get_option_no_throw("--" + name);
    if (!option)
      return "--config " + where(file, value.source()) + ": '" + name + "' is not an option of holdfast " +
             cmd->get_name() + " (every long flag is a key, without its dashes; holdfast " + cmd->get_name() +
             " --help)";
    if (already.count(option)) continue;  // the command line overrides the file
    // ...and so does an option's environment variable (HOLDFAST_WEBHOOK_SECRET).
    if (auto env = option->get_envname(); !env.empty() && std::getenv(env.c_str())) continue;
    origins.emplace_back(option->get_name(), where(file, value.source()));
    std::vector<std::string> values;
    if (!words_of(value, values))
      return "--config " + where(file, value.source()) + ": '" + name + "' takes a string, a number, true/false or a list";
    // A flag's value too (--fault-hooks=false): CLI11 reads true/false.
    for (auto& v : values) words.push_back("--" + name + "=" + v);
  }
  // The file's values go right after the command, before every flag given: CLI11 sees
  // them as if typed there.
  args.insert(args.begin() + static_cast<long>(at) + 1, words.begin(), words.end());
  return {};
}

}  // namespace holdfast::cli
