// flick machine list|status|logs|ps: what the store (or a flickd, for list and status) and a
// machine's console log say, as tables or Fly-shaped JSON.
#include "command.h"
#include "machine/log_follower.h"
#include "machines.h"
#include "shared.h"
#include "store/names.h"
#include "store_cmd.h"

#include <flick/machine.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace flick::cli {

namespace {

// --- list ---

struct ListOptions {
  HostOptions host;
  std::string app;
  std::vector<MachineState> states;
  bool json = false;
};

int machine_list(const ListOptions& o) {
  auto place = open_machines(o.host);
  if (!place) return fail(place.error());
  const std::string app = app_or_default(o.app);
  if (auto a = (*place)->check_app(app); !a) return fail(a.error());
  auto machines = (*place)->list(app, o.states);
  if (!machines) return fail(machines.error());
  if (o.json) {
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    for (const auto& m : *machines) all.push_back(m.json);
    print_json(all);
    return 0;
  }
  if (machines->empty()) {
    std::printf("No machines in app %s.\n", app.c_str());
    return 0;
  }
  Table table({"ID", "NAME", "STATE", "IMAGE", "CREATED"});
  for (const auto& m : *machines)
    table.add({m.id, m.name, to_string(m.state), m.config.image, rfc3339(m.created_at)});
  table.print();
  return 0;
}

void add_list(CLI::App& machine) {
  auto o = std::make_shared<ListOptions>();
  auto* cmd = machine.add_subcommand("list", "list an app's machines");
  cmd->alias("ls");
  add_app_option(*cmd, &o->app);
  add_values(
      *cmd, "--state", "STATE",
      [o](const std::string& v) {
        for (const auto& name : split_commas(v)) {
          auto s = parse_state(name);
          if (!s) usage_error("--state takes machine states (created, started, stopped, ...), not '" + name + "'");
          o->states.push_back(*s);
        }
      },
      "only machines in these states (repeatable, or comma-separated; default: all but destroyed)");
  add_json_flag(*cmd, &o->json);
  add_state_dir_option(*cmd, &o->host);
  works_through_api(cmd);
  set_action(cmd, [o] { return machine_list(*o); });
}

// --- status ---

std::string join_argv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += a.find_first_of(" \t\"'") == std::string::npos && !a.empty() ? a : "'" + a + "'";
  }
  return out;
}

// What the machine runs: init.exec, else entrypoint and cmd, each the image's unless set
// (named so when the image's is not known: flickd does not say).
std::vector<std::string> command_of(const MachineView& m) {
  const InitConfig& init = m.config.init;
  if (!init.exec.empty()) return init.exec;
  auto image = [](const std::optional<std::vector<std::string>>& part, const char* what) {
    return part ? *part : std::vector<std::string>{std::string("<the image's ") + what + ">"};
  };
  std::vector<std::string> argv = init.entrypoint.empty() ? image(m.image_entrypoint, "entrypoint") : init.entrypoint;
  const auto cmd = !init.cmd.empty() ? init.cmd : init.entrypoint.empty() ? image(m.image_cmd, "cmd") : init.cmd;
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return argv;
}

void print_status(const MachineView& m, const std::optional<Lease>& lease) {
  const MachineConfig& c = m.config;
  std::printf("Machine ID: %s\nName:       %s\nApp:        %s\nState:      %s\n\n", m.id.c_str(), m.name.c_str(),
              m.app.c_str(), to_string(m.state));
  std::vector<std::pair<std::string, std::string>> rows = {
      {"Image", c.image + " (" + m.image_digest + ")"},
      {"Region", m.region},
      {"Created", rfc3339(m.created_at)},
      {"Version", std::to_string(m.version) + " (instance " + m.instance_id + ")"},
      {"Cordoned", m.cordoned ? "yes" : "no"},
      {"CPUs", std::to_string(c.guest.cpus) + " (" + c.guest.cpu_kind + ")"},
      {"Memory", std::to_string(c.guest.memory_mb) + " MB"},
      {"Command", join_argv(command_of(m))},
      {"Restart", std::string(to_string(c.restart.policy)) +
                      (c.restart.policy == RestartPolicy::on_failure ? ", " + std::to_string(c.restart.max_retries) +
                                                                          " retries"
                                                                    : "")},
      {"Stop", "signal " + std::to_string(c.stop_config.signal) + ", timeout " + store::format_duration(c.stop_config.timeout)},
      {"Start timeout", store::format_duration(c.start_timeout)},
  };
  if (c.auto_destroy) rows.emplace_back("Auto destroy", "yes");
  for (const auto& mount : c.mounts) rows.emplace_back("Mount", mount.volume + " at " + mount.path);
  if (!m.guest_address.empty())
    rows.emplace_back("Address", m.guest_address + (m.host_address.empty() ? "" : " (host " + m.host_address + ")"));
  if (m.last_exit) rows.emplace_back("Last exit", exit_summary(*m.last_exit));
  if (lease)
    rows.emplace_back("Lease", "held by " + lease->owner + " until " + rfc3339(lease->expires_at) +
                                   (lease->description.empty() ? "" : " (" + lease->description + ")"));
  for (const auto& [k, v] : c.metadata) rows.emplace_back("Metadata", k + "=" + v);
  std::printf("Config\n");
  size_t width = 0;
  for (const auto& [k, v] : rows) width = std::max(width, k.size());
  for (const auto& [k, v] : rows) std::printf("  %-*s = %s\n", static_cast<int>(width), k.c_str(), v.c_str());

  std::printf("\nEvents\n");
  Table table({"STATE", "EVENT", "TIMESTAMP", "INFO"});
  for (auto it = m.events.rbegin(); it != m.events.rend(); ++it) {
    std::string info = it->exit ? exit_summary(*it->exit) : "";
    if (!it->detail.empty()) info += (info.empty() ? "" : "; ") + it->detail;
    table.add({to_string(it->status), to_string(it->type), rfc3339(it->timestamp), info});
  }
  table.print();
}

struct StatusOptions {
  HostOptions host;
  std::string app;
  std::string machine;
  bool json = false;
};

void add_status(CLI::App& machine) {
  auto o = std::make_shared<StatusOptions>();
  auto* cmd = machine.add_subcommand("status", "show a machine: state, config and events");
  cmd->add_option("ID", o->machine, "the machine: its id or name")->required()->type_name("");
  add_app_option(*cmd, &o->app);
  add_json_flag(*cmd, &o->json);
  add_state_dir_option(*cmd, &o->host);
  works_through_api(cmd);
  set_action(cmd, [o] {
    auto machines = open_machines(o->host);
    if (!machines) return fail(machines.error());
    auto m = (*machines)->get(o->machine, app_scope(o->app));
    if (!m) return fail(m.error());
    auto view = (*m)->read(true);
    if (!view) return fail(view.error());
    std::optional<Lease> lease;
    if (auto l = (*m)->lease()) lease = *l;
    if (o->json) {
      if (lease) view->json["lease"] = lease_json(*lease);
      print_json(view->json);
    } else {
      print_status(*view, lease);
    }
    return 0;
  });
}

// --- logs ---

// Prints the console log; with `follow`, then what the machine writes until it is neither
// starting, started nor stopping (a restart goes from stopping to starting, so it is followed).
int print_logs(const Machine& m, const std::filesystem::path& log, bool follow) {
  machine::LogFollower reader(log, machine::LogFollower::From::beginning);
  auto print = [](std::string_view s) { write_all(STDOUT_FILENO, s); };
  for (;;) {
    const bool last = !follow || !is_running(m.state());
    reader.drain(print);
    if (last) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

struct LogsOptions {
  HostOptions host;
  std::string app;
  std::string machine;
  bool follow = false;
};

void add_logs(CLI::App& machine) {
  auto o = std::make_shared<LogsOptions>();
  auto* cmd = machine.add_subcommand("logs", "print a machine's console output");
  cmd->footer("The console log is <state dir>/machines/<id>/console.log; it is removed with the machine.");
  cmd->add_option("ID", o->machine, "the machine: its id or name")->required()->type_name("");
  cmd->add_flag("-f,--follow", o->follow, "keep printing until the machine is no longer running");
  add_app_option(*cmd, &o->app);
  add_state_dir_option(*cmd, &o->host);
  set_action(cmd, [o] {
    auto host = open_host(o->host);
    if (!host) return fail(host.error());
    auto m = find_machine(**host, o->machine, app_scope(o->app));
    if (!m) return fail(m.error());
    auto log = (*host)->options().state_dir / "machines" / (*m)->id() / "console.log";
    return print_logs(**m, log, o->follow);
  });
}

// --- ps ---

// ps's elapsed time: [[DD-]hh:]mm:ss.
std::string elapsed(std::chrono::seconds t) {
  const long long s = t.count(), days = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
  char out[48];
  if (days) std::snprintf(out, sizeof out, "%lld-%02lld:%02lld:%02lld", days, h, m, sec);
  else if (h) std::snprintf(out, sizeof out, "%02lld:%02lld:%02lld", h, m, sec);
  else std::snprintf(out, sizeof out, "%02lld:%02lld", m, sec);
  return out;
}

struct PsOptions {
  HostOptions host;
  std::string app;
  std::string machine;
  bool json = false;
};

void add_ps(CLI::App& machine) {
  auto o = std::make_shared<PsOptions>();
  auto* cmd = machine.add_subcommand("ps", "list a started machine's processes (through flick-init)");
  cmd->footer("%CPU is CPU time over the process's life (as ps's); RSS is in KiB. Kernel threads are not listed.");
  cmd->add_option("ID", o->machine, "the machine: its id or name")->required()->type_name("");
  add_app_option(*cmd, &o->app);
  add_json_flag(*cmd, &o->json);
  add_state_dir_option(*cmd, &o->host);
  works_through_api(cmd);
  set_action(cmd, [o] {
    auto machines = open_machines(o->host);
    if (!machines) return fail(machines.error());
    auto m = (*machines)->get(o->machine, app_scope(o->app));
    if (!m) return fail(m.error());
    auto list = (*m)->processes();
    if (!list) return fail(list.error());
    if (o->json) {
      nlohmann::ordered_json all = nlohmann::ordered_json::array();
      for (const auto& p : *list) all.push_back(fly::process_json(p));
      print_json(all);
      return 0;
    }
    Table table({"PID", "%CPU", "RSS", "ELAPSED", "DIRECTORY", "COMMAND"});
    for (const auto& p : *list)
      table.add({std::to_string(p.pid), std::to_string(p.cpu_percent), std::to_string(p.rss_bytes / 1024),
                 elapsed(p.run_time), p.directory, p.command});
    table.print();
    return 0;
  });
}

}  // namespace

void add_machine_query_commands(CLI::App& machine) {
  add_list(machine);
  add_status(machine);
  add_logs(machine);
  add_ps(machine);
}

}  // namespace flick::cli
