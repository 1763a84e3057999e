// flick machine create|start|stop|restart|signal|wait|destroy: a machine's lifecycle over the
// store (or through a flickd with --api: machines.h), one step per command. Each command exits once its step is done; the machine's run
// lives in its own flick-vmm process, so any later command (any process) sees and drives it.
#include "command.h"
#include "machine_options.h"
#include "machines.h"
#include "store_cmd.h"

#include <flick/machine.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace flick::cli {

namespace {

using std::chrono::milliseconds;

// What every command here takes: the app that scopes names, and the state directory.
struct Target {
  HostOptions host;
  std::string app;
  std::vector<std::string> machines;  // ids or names
  std::string machine;                // the one, for commands that take one
  std::string lease_nonce;            // --lease-nonce, on commands that change machines
};

void add_target(CLI::App& cmd, Target& t, bool many) {
  if (many)
    cmd.add_option("ID", t.machines, "machines: ids or names")
        ->required()
        ->type_name("")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  else
    cmd.add_option("ID", t.machine, "the machine: its id or name")->required()->type_name("");
  add_app_option(cmd, &t.app);
  add_state_dir_option(cmd, &t.host);
}

// Runs `step` on each machine named; "flick: ..." for each that fails. 0 if all went well.
int each_machine(const Target& t, const std::function<Result<void>(MachineRef&)>& step) {
  auto machines = open_machines(t.host);
  if (!machines) return fail(machines.error());
  const std::string scope = app_scope(t.app);
  if (auto a = (*machines)->check_app(scope); !a) return fail(a.error());
  int rc = 0;
  for (const auto& key : t.machines.empty() ? std::vector<std::string>{t.machine} : t.machines) {
    auto m = (*machines)->get(key, scope);
    if (!m) {
      rc = fail(m.error());
      continue;
    }
    (*m)->set_lease_nonce(t.lease_nonce);
    if (auto r = step(**m); !r) rc = fail(r.error());
  }
  return rc;
}

// --- create ---

struct CreateOptions {
  MachineOptions machine;
  bool json = false;
};

int machine_create(CreateOptions& opts) {
  MachineOptions& o = opts.machine;
  if (o.rm) o.config.auto_destroy = true;
  if (o.no_network) o.host.network = HostOptions::Networking::none;
  const std::string app = app_or_default(o.app);
  auto machines = open_machines(o.host);
  if (!machines) return fail(machines.error());
  if (auto a = (*machines)->check_app(app); !a) return fail(a.error());
  auto created = (*machines)->create(o.config, o.name, app);
  if (!created) return fail(created.error());
  if (opts.json) print_json(created->json);
  else std::printf("%s\n", created->id.c_str());
  return 0;
}

void add_create(CLI::App& machine) {
  auto o = std::make_shared<CreateOptions>();
  auto* cmd = machine.add_subcommand("create", "create a machine from IMAGE without starting it; print its id");
  cmd->footer(
      "Fetches IMAGE and builds its root file system, keeps the machine in the store in state\n"
      "`created`, and prints its id (--json: the machine). `flick machine start ID` boots it.\n"
      "CMD follows \"--\" (or is the first argument after IMAGE that is not an option) and takes\n"
      "the rest of the line, options and all.");
  add_machine_options(*cmd, o->machine);
  add_json_flag(*cmd, &o->json);
  works_through_api(cmd);
  set_action(cmd, [o] { return machine_create(*o); });
}

// --- start, stop, restart ---

struct StopOptions {
  std::optional<int> signal;
  std::optional<milliseconds> timeout;
};

void add_stop_options(CLI::App& cmd, StopOptions& s) {
  add_value(
      cmd, "-s,--signal", "SIG",
      [&s](const std::string& v) {
        s.signal = parse_signal(v);
        if (!s.signal) usage_error("--signal takes a signal name or number, not '" + v + "'");
      },
      "the signal that asks the program to end (default: the machine's stop_config, SIGINT)");
  add_value(
      cmd, "--timeout", "DUR",
      [&s](const std::string& v) {
        s.timeout = parse_duration(v);
        if (!s.timeout) usage_error("--timeout takes seconds or a duration (5s, 1m30s), not '" + v + "'");
      },
      "then kill it after this long (default: the machine's stop_config, 5s)");
}

void add_start(CLI::App& machine) {
  auto t = std::make_shared<Target>();
  auto* cmd = machine.add_subcommand("start", "start machines (created, stopped or failed ones)");
  cmd->footer("Returns once each machine's VM runs (state `starting`); `flick machine wait ID` follows it.");
  add_target(*cmd, *t, true);
  add_kvm_device_option(*cmd, &t->host);
  add_lease_nonce_option(*cmd, &t->lease_nonce);
  works_through_api(cmd);
  set_action(cmd, [t] {
    return each_machine(*t, [](MachineRef& m) -> Result<void> {
      if (auto r = m.start(); !r) return r;
      std::printf("machine %s starting\n", m.id().c_str());
      return {};
    });
  });
}

void add_stop(CLI::App& machine) {
  auto t = std::make_shared<Target>();
  auto s = std::make_shared<StopOptions>();
  auto* cmd = machine.add_subcommand("stop", "stop machines gracefully");
  cmd->footer(
      "Sends each machine's program the stop signal, kills it after the timeout, and returns once\n"
      "the machine is stopped. A machine still starting is stopped at once; stopping a stopped\n"
      "machine does nothing.");
  add_target(*cmd, *t, true);
  add_stop_options(*cmd, *s);
  add_lease_nonce_option(*cmd, &t->lease_nonce);
  works_through_api(cmd);
  set_action(cmd, [t, s] {
    return each_machine(*t, [s](MachineRef& m) -> Result<void> {
      if (auto r = m.stop(s->signal, s->timeout); !r) return r;
      auto now = m.read(false);
      if (!now) return std::move(now).error();
      std::printf("machine %s %s\n", m.id().c_str(), to_string(now->state));
      return {};
    });
  });
}

void add_restart(CLI::App& machine) {
  auto t = std::make_shared<Target>();
  auto s = std::make_shared<StopOptions>();
  auto* cmd = machine.add_subcommand("restart", "stop machines (if running), then start them");
  add_target(*cmd, *t, true);
  add_stop_options(*cmd, *s);
  add_kvm_device_option(*cmd, &t->host);
  add_lease_nonce_option(*cmd, &t->lease_nonce);
  works_through_api(cmd);
  set_action(cmd, [t, s] {
    return each_machine(*t, [s](MachineRef& m) -> Result<void> {
      if (auto r = m.restart(s->signal, s->timeout); !r) return r;
      std::printf("machine %s starting\n", m.id().c_str());
      return {};
    });
  });
}

// --- signal, wait, destroy ---

void add_signal(CLI::App& machine) {
  auto t = std::make_shared<Target>();
  auto signo = std::make_shared<int>(0);
  auto* cmd = machine.add_subcommand("signal", "send a signal to a started machine's program");
  add_target(*cmd, *t, false);
  add_lease_nonce_option(*cmd, &t->lease_nonce);
  cmd->add_option_function<std::string>(
         "SIG",
         [signo](const std::string& v) {
           auto n = parse_signal(v);
           if (!n) usage_error("SIG takes a signal name (SIGTERM, TERM) or number, not '" + v + "'");
           *signo = *n;
         },
         "the signal: a name (SIGTERM, TERM) or a number")
      ->required()
      ->type_name("");
  works_through_api(cmd);
  set_action(cmd, [t, signo] { return each_machine(*t, [signo](MachineRef& m) { return m.signal(*signo); }); });
}

struct WaitOptions {
  MachineState state = MachineState::started;
  milliseconds timeout{60000};
};

void add_wait(CLI::App& machine) {
  auto t = std::make_shared<Target>();
  auto w = std::make_shared<WaitOptions>();
  auto* cmd = machine.add_subcommand("wait", "wait until a machine reaches a state");
  cmd->footer(
      "Exits 0 once the machine is in STATE, 1 when the timeout passes first, when it fails\n"
      "instead (waiting for started or stopped), or when it is destroyed.");
  add_target(*cmd, *t, false);
  add_value(
      *cmd, "--state", "STATE",
      [w](const std::string& v) {
        auto s = parse_state(v);
        if (!s || (*s != MachineState::started && *s != MachineState::stopped && *s != MachineState::destroyed &&
                   *s != MachineState::failed))
          usage_error("--state takes started, stopped, destroyed or failed, not '" + v + "'");
        w->state = *s;
      },
      "started (default), stopped, destroyed or failed");
  add_value(
      *cmd, "--timeout", "DUR",
      [w](const std::string& v) {
        auto d = parse_duration(v);
        if (!d) usage_error("--timeout takes seconds or a duration (30s, 5m), not '" + v + "'");
        w->timeout = *d;
      },
      "give up after this long (default 60s)");
  works_through_api(cmd);
  set_action(cmd, [t, w] { return each_machine(*t, [w](MachineRef& m) { return m.wait(w->state, w->timeout); }); });
}

void add_destroy(CLI::App& machine) {
  auto t = std::make_shared<Target>();
  auto force = std::make_shared<bool>(false);
  auto* cmd = machine.add_subcommand("destroy", "destroy machines, removing their files");
  cmd->footer("A running machine needs --force, which kills it. Its volumes are kept, and freed.");
  add_target(*cmd, *t, true);
  cmd->add_flag("-f,--force", *force, "kill a running machine first");
  add_lease_nonce_option(*cmd, &t->lease_nonce);
  works_through_api(cmd);
  set_action(cmd, [t, force] {
    return each_machine(*t, [force](MachineRef& m) -> Result<void> {
      if (auto r = m.destroy(*force); !r) return r;
      std::printf("machine %s destroyed\n", m.id().c_str());
      return {};
    });
  });
}

}  // namespace

void add_machine_lifecycle_commands(CLI::App& machine) {
  add_create(machine);
  add_start(machine);
  add_stop(machine);
  add_restart(machine);
  add_signal(machine);
  add_wait(machine);
  add_destroy(machine);
}

}  // namespace flick::cli
