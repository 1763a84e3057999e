// The `flick` command line: one CLI::App, to which each tools/flick/*_cmd.cpp adds its commands
// (FLICK_COMMAND); main() parses the whole line, then runs the action of the command given.
#pragma once

#include <flick/image.h>

#include <CLI/CLI.hpp>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace flick::cli {

// Exit status for a bad command line.
constexpr int kUsageError = 2;

// Adds a top-level command, with its subcommands, to `flick`.
using AddCommand = void (*)(CLI::App& flick);

// Registers `add` at static-initialisation time (main() adds the commands in order of name);
// returns true.
bool register_command(const char* name, AddCommand add);

// What `command` does once the whole command line has parsed; its result is flick's exit status.
void set_action(CLI::App* command, std::function<int()> action);

// Marks `command` as one that also works through a flickd (`flick --api`); the others refuse
// --api.
void works_through_api(CLI::App* command);

// A bad argument, reported as "flick <command>: <message>" (and a pointer to --help), exit 2.
// For option callbacks and App callbacks, which run while the command line is parsed.
[[noreturn]] inline void usage_error(const std::string& message) { throw CLI::ValidationError(message); }

// A decimal number in 0..max, the whole of `s`.
inline bool parse_uint(const std::string& s, uint64_t max, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s[0])) || errno || *end || v > max) return false;
  *out = v;
  return true;
}

// The long name in CLI11's "-e,--env" (else the only one).
inline std::string option_name(const std::string& names) { return names.substr(names.rfind(',') + 1); }

// `names VALUE`: the last one given is handed to `take`, which calls usage_error() for a bad value.
inline CLI::Option* add_value(CLI::App& app, const std::string& names, const std::string& value_name,
                              std::function<void(const std::string&)> take, const std::string& help) {
  return app.add_option_function<std::string>(names, std::move(take), help)->type_name(value_name);
}

// `names VALUE`, repeatable: `take` gets each value in the order given.
inline CLI::Option* add_values(CLI::App& app, const std::string& names, const std::string& value_name,
                               std::function<void(const std::string&)> take, const std::string& help) {
  return app
      .add_option_function<std::vector<std::string>>(
          names,
          [take = std::move(take)](const std::vector<std::string>& values) {
            for (const auto& v : values) take(v);
          },
          help)
      ->type_name(value_name)
      ->allow_extra_args(false);  // one value per occurrence: "-e A=1 sh" leaves sh alone
}

// `names N`: a decimal number in min..max into `*out`; anything else is the usage error
// "<name> takes <what>, not '<value>'".
template <class T>
CLI::Option* add_number(CLI::App& app, const std::string& names, const std::string& value_name, T* out,
                        uint64_t min, uint64_t max, const std::string& what, const std::string& help) {
  return add_value(
      app, names, value_name,
      [=, name = option_name(names)](const std::string& v) {
        uint64_t n = 0;
        if (!parse_uint(v, max, &n) || n < min) usage_error(name + " takes " + what + ", not '" + v + "'");
        *out = static_cast<T>(n);
      },
      help);
}

// `--pull always|missing|never` into `*out`.
inline CLI::Option* add_pull_policy(CLI::App& app, PullPolicy* out, const std::string& fallback) {
  return add_value(
      app, "--pull", "POLICY",
      [=](const std::string& v) {
        auto p = parse_pull_policy(v);
        if (!p) usage_error("--pull takes always, missing or never, not '" + v + "'");
        *out = *p;
      },
      "always: resolve the reference again; missing: use the cached image if there is one; never: "
      "only the cache (default " + fallback + ")");
}

}  // namespace flick::cli

#define FLICK_COMMAND(name, add) \
  static const bool flick_registered_##add = ::flick::cli::register_command(name, add)
