// flick: a thin command-line shell over the library.
#include "command.h"
#include "machines.h"

#include <flick/version.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

namespace flick::cli {
namespace {

struct Registered {
  const char* name;
  AddCommand add;
};

std::vector<Registered>& registry() {
  static std::vector<Registered> r;
  return r;
}

// The action of the command given, set while the command line is parsed.
std::function<int()>& chosen_action() {
  static std::function<int()> a;
  return a;
}

std::set<const CLI::App*>& api_commands() {
  static std::set<const CLI::App*> s;
  return s;
}

}  // namespace

void works_through_api(CLI::App* command) { api_commands().insert(command); }

bool register_command(const char* name, AddCommand add) {
  registry().push_back({name, add});
  return true;
}

void set_action(CLI::App* command, std::function<int()> action) {
  command->callback([action = std::move(action)] { chosen_action() = action; });
}

}  // namespace flick::cli

namespace {

constexpr const char* kVersion = "flick " FLICK_VERSION_STRING;

// The command the parse reached: the subcommand given at each level.
const CLI::App* reached(const CLI::App& flick) {
  const CLI::App* at = &flick;
  for (auto subs = at->get_subcommands(); !subs.empty(); subs = at->get_subcommands()) at = subs.front();
  return at;
}

std::string path_of(const CLI::App* app) {
  std::string path = app->get_name();
  for (const CLI::App* p = app->get_parent(); p; p = p->get_parent()) path = p->get_name() + " " + path;
  return path;
}

// What is wrong with the command line, in one line; `at` is the command the parse reached.
std::string describe(const CLI::App* at, const CLI::ParseError& e) {
  const bool group = at->get_require_subcommand_min() > 0;  // and none was given
  const bool required = dynamic_cast<const CLI::RequiredError*>(&e) != nullptr;
  if (required || dynamic_cast<const CLI::ExtrasError*>(&e)) {
    // An argument left over comes first: what is then missing is likely its consequence.
    for (const CLI::App* app = at; app; app = app->get_parent()) {
      auto extra = app->remaining();
      if (extra.empty() || app->get_prefix_command()) continue;
      if (extra[0][0] == '-') return "unknown option '" + extra[0] + "'";
      return (app == at && group ? "unknown command '" : "unexpected argument '") + extra[0] + "'";
    }
    if (required && group && at->get_subcommands().empty()) {
      std::string names;
      for (const CLI::App* sub : at->get_subcommands({})) names += (names.empty() ? "" : ", ") + sub->get_name();
      return "a command is required: " + names;
    }
  }
  // CLI11's "--name: 1 required TYPE missing".
  std::string message = e.what();
  if (auto colon = message.find(": 1 required "); colon != std::string::npos && message.ends_with(" missing"))
    return message.substr(0, colon) + " needs a value";
  return message;
}

// One line naming the command and what is wrong, then where to look; exit 2.
int usage_failure(const CLI::App* at, const std::string& what) {
  std::fprintf(stderr, "%s: %s\nRun with --help for more information.\n", path_of(at).c_str(), what.c_str());
  return flick::cli::kUsageError;
}

int usage_failure(const CLI::App& flick, const CLI::ParseError& e) {
  const CLI::App* at = reached(flick);
  return usage_failure(at, describe(at, e));
}

// With --api: what the command given cannot do through a flickd, if anything.
std::string refused_with_api(const CLI::App* at) {
  if (!flick::cli::api_commands().count(at))
    return "not available with --api (it works on this computer's store, not through flickd): run it without --api";
  for (const char* local : {"--state-dir", "--kvm-device", "--kernel", "--kernel-modules", "--no-network"})
    if (const CLI::Option* o = at->get_option_no_throw(local); o && o->count() > 0)
      return std::string(local) + " is flickd's to choose: not with --api";
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App flick{"KVM microVMs running OCI images", "flick"};
  // Subcommands copy these: an option given twice means its last value (lists take every one).
  flick.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  flick.require_subcommand(1);
  flick.set_version_flag("--version", kVersion, "print the version and exit");
  auto& api = flick::cli::api_endpoint();
  flick::cli::add_value(
      flick, "--api", "URL|unix:PATH",
      [&api](const std::string& v) {
        if (v.rfind("unix:", 0) != 0 && v.rfind("http://", 0) != 0 && v.rfind("https://", 0) != 0)
          flick::cli::usage_error("--api takes http://HOST:PORT, https://HOST:PORT or unix:PATH, not '" + v + "'");
        api = v;
      },
      "work through a flickd (its Fly Machines API) instead of the store (default $FLICK_API; its token: "
      "$FLICK_API_TOKEN)");

  auto& commands = flick::cli::registry();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return std::string(a.name) < b.name; });
  for (const auto& c : commands) c.add(flick);
  auto* version = flick.add_subcommand("version", "print the version");
  flick::cli::set_action(version, [] {
    std::printf("%s\n", kVersion);
    return 0;
  });
  flick::cli::works_through_api(version);
  flick.footer(
      "Run a command with --help for its options.\n"
      "Exit status: 0 done; 1 flick failed (not found, busy, a failed start, ...), with one line\n"
      "\"flick: ...\" on stderr; 2 a bad command line. `flick machine run` exits with its program's\n"
      "status instead (125 when flick failed).\n"
      "With --api URL|unix:PATH (or $FLICK_API) the app and machine commands go through a flickd\n"
      "instead of the store, with the same output; the others (machine run, logs, console,\n"
      "exec -it, images, volumes) refuse it.");  // after the commands: theirs are their own

  try {
    flick.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return flick.exit(e);  // --help, --version
    return usage_failure(flick, e);
  }
  if (const char* env = std::getenv("FLICK_API"); api.empty() && env && *env) api = env;
  if (!api.empty())
    if (auto why = refused_with_api(reached(flick)); !why.empty()) return usage_failure(reached(flick), why);
  const auto& action = flick::cli::chosen_action();
  return action ? action() : 0;
}
