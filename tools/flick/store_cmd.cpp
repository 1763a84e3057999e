// What the commands over the machine store share (store_cmd.h).
#include "store_cmd.h"

#include "shared.h"

#include <signal.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace flick::cli {

int fail(const Error& e) { return fail(e.describe()); }

int fail(const std::string& message) {
  std::fprintf(stderr, "flick: %s\n", message.c_str());
  return kFailed;
}

CLI::Option* add_app_option(CLI::App& command, std::string* app) {
  return command.add_option("-a,--app", *app, "the app (default $FLICK_APP, else default)")->type_name("APP");
}

CLI::Option* add_state_dir_option(CLI::App& command, HostOptions* options) {
  return command
      .add_option("--state-dir", options->state_dir, "machines and volumes (default $FLICK_STATE_DIR, ~/.local/state/flick)")
      ->type_name("DIR");
}

CLI::Option* add_kvm_device_option(CLI::App& command, HostOptions* options) {
  return command.add_option("--kvm-device", options->kvm_device, "the KVM device (default $FLICK_KVM_DEVICE, /dev/kvm)")
      ->type_name("PATH");
}

CLI::Option* add_json_flag(CLI::App& command, bool* json) {
  return command.add_flag("--json", *json, "print JSON (as Fly's Machines API) instead of a table");
}

CLI::Option* add_lease_nonce_option(CLI::App& command, std::string* nonce) {
  return command.add_option("--lease-nonce", *nonce, "the nonce of the machine's lease, when one is held")
      ->type_name("NONCE");
}

std::string app_or_default(const std::string& given) {
  std::string scope = app_scope(given);
  return scope.empty() ? "default" : scope;
}

std::string app_scope(const std::string& given) {
  if (!given.empty()) return given;
  const char* env = std::getenv("FLICK_APP");
  return env && *env ? env : "";
}

Result<std::unique_ptr<Host>> open_host(HostOptions options) {
  options.images = store_options_from_env();
  return Host::open(std::move(options));
}

Result<void> check_app(Host& host, const std::string& app) {
  if (app.empty()) return {};
  auto found = host.get_app(app);
  if (!found) return std::move(found).error();
  return {};
}

Result<std::unique_ptr<Machine>> find_machine(Host& host, const std::string& id_or_name, const std::string& app,
                                              MachineHandlers handlers) {
  if (auto a = check_app(host, app); !a) return std::move(a).error();
  return host.get(id_or_name, std::move(handlers), app);
}

namespace {

struct SignalName {
  const char* name;
  int number;
};

constexpr SignalName kSignals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},       {"QUIT", SIGQUIT},   {"ILL", SIGILL},     {"TRAP", SIGTRAP},
    {"ABRT", SIGABRT}, {"BUS", SIGBUS},       {"FPE", SIGFPE},     {"KILL", SIGKILL},   {"USR1", SIGUSR1},
    {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},     {"PIPE", SIGPIPE},   {"ALRM", SIGALRM},   {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP},   {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG},       {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},   {"VTALRM", SIGVTALRM},
    {"PROF", SIGPROF}, {"WINCH", SIGWINCH},   {"IO", SIGIO},       {"PWR", SIGPWR},     {"SYS", SIGSYS},
};

}  // namespace

std::optional<int> parse_signal(const std::string& s) {
  uint64_t n = 0;
  if (parse_uint(s, 64, &n)) return n >= 1 ? std::optional<int>(static_cast<int>(n)) : std::nullopt;
  std::string upper;
  for (char c : s) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper.rfind("SIG", 0) == 0) upper.erase(0, 3);
  for (const auto& sig : kSignals)
    if (upper == sig.name) return sig.number;
  return std::nullopt;
}

std::optional<std::chrono::milliseconds> parse_duration(const std::string& s) {
  uint64_t whole = 0;
  if (parse_uint(s, 100u * 86400, &whole)) return std::chrono::seconds(whole);
  double total_ms = 0;
  size_t i = 0;
  if (s.empty()) return std::nullopt;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (i == start) return std::nullopt;
    char* end = nullptr;
    std::string number = s.substr(start, i - start);
    double v = std::strtod(number.c_str(), &end);
    if (*end) return std::nullopt;
    size_t unit_start = i;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
    std::string unit = s.substr(unit_start, i - unit_start);
    if (unit == "ms") total_ms += v;
    else if (unit == "s") total_ms += v * 1e3;
    else if (unit == "m") total_ms += v * 60e3;
    else if (unit == "h") total_ms += v * 3600e3;
    else return std::nullopt;
  }
  if (total_ms > 100.0 * 86400e3) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(total_ms));
}

Table::Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }

void Table::add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

void Table::print(std::FILE* out) const {
  std::vector<size_t> width;
  for (const auto& row : rows_)
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::fprintf(out, "%s\n", line.c_str());
  }
}

void print_json(const nlohmann::ordered_json& j) { std::printf("%s\n", j.dump(2).c_str()); }

std::string exit_summary(const ExitStatus& e) {
  std::string s;
  if (e.signal) s = "signal " + std::to_string(e.signal);
  else if (e.exit_code >= 0) s = "exit " + std::to_string(e.exit_code);
  if (e.oom_killed) s += s.empty() ? "oom" : ", oom";
  if (e.requested_stop) s += s.empty() ? "requested stop" : ", requested stop";
  if (!e.error.empty()) s += (s.empty() ? "" : ": ") + e.error;
  return s;
}

}  // namespace flick::cli
