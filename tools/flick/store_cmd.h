// What the commands over the machine store share (`flick machine ...`, `flick app ...`,
// `flick volume ...`): the app and state-directory options, opening the Host, finding a
// machine, one-line errors, and output as aligned tables or Fly-shaped JSON.
#pragma once

#include "command.h"
#include "fly_json/fly_json.h"

#include <flick/machine.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace flick::cli {

// Exit status for a flick error: not found, busy, a failed start, ...
constexpr int kFailed = 1;

// Prints "flick: <message>" on stderr; returns kFailed.
int fail(const Error& e);
int fail(const std::string& message);

// `-a,--app APP` into *app.
CLI::Option* add_app_option(CLI::App& command, std::string* app);
// `--state-dir DIR` into options->state_dir.
CLI::Option* add_state_dir_option(CLI::App& command, HostOptions* options);
// `--kvm-device PATH` into options->kvm_device (what a start opens).
CLI::Option* add_kvm_device_option(CLI::App& command, HostOptions* options);
// `--json` into *json.
CLI::Option* add_json_flag(CLI::App& command, bool* json);
// `--lease-nonce NONCE` into *nonce: what a command that changes a leased machine sends.
CLI::Option* add_lease_nonce_option(CLI::App& command, std::string* nonce);

// The app a command works in: `given`, else $FLICK_APP, else "default".
std::string app_or_default(const std::string& given);
// The app that scopes a lookup by id or name: `given`, else $FLICK_APP, else none (any app:
// ids are unique, and a name two apps use is an error naming them).
std::string app_scope(const std::string& given);

// Host::open with the image store's environment.
Result<std::unique_ptr<Host>> open_host(HostOptions options);
// Errc::not_found "app NAME not found" unless the app exists (or `app` is empty).
Result<void> check_app(Host& host, const std::string& app);
// A machine by id or name, within `app` when it is not empty.
Result<std::unique_ptr<Machine>> find_machine(Host& host, const std::string& id_or_name, const std::string& app,
                                              MachineHandlers handlers = {});

// "SIGTERM", "TERM", "term" or a number in 1..64.
std::optional<int> parse_signal(const std::string& s);
// A duration: seconds ("30"), or Go's ("500ms", "5s", "1m30s", "1h").
std::optional<std::chrono::milliseconds> parse_duration(const std::string& s);

// Rows under a header, each column as wide as its widest cell, two spaces apart.
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void add(std::vector<std::string> row);
  void print(std::FILE* out = stdout) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// Fly's objects as JSON, shared with flickd.
using fly::app_json;
using fly::event_json;
using fly::lease_json;
using fly::machine_json;
using fly::parse_state;
using fly::rfc3339;
using fly::volume_json;

// Indented JSON and a newline on stdout.
void print_json(const nlohmann::ordered_json& j);

// How a machine's run ended, in a few words ("exit 0", "signal 9", "oom", the error).
std::string exit_summary(const ExitStatus& e);

// Adds `flick machine`'s commands over the store (machine_lifecycle_cmd.cpp,
// machine_query_cmd.cpp).
void add_machine_lifecycle_commands(CLI::App& machine);
void add_machine_query_commands(CLI::App& machine);
// update, clone, metadata, cordon, uncordon, lease (machine_update_cmd.cpp).
void add_machine_update_commands(CLI::App& machine);

void add_machine_exec_command(CLI::App& machine);  // machine_exec_cmd.cpp
// `cmd` in `m` with a terminal, as `exec -it`: its exit status, or 125 when flick failed.
int exec_shell(Machine& m, std::vector<std::string> cmd);

}  // namespace flick::cli
