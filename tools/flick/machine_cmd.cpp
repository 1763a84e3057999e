// flick machine run: create, start, wait for, stop and (with --rm) destroy one machine,
// streaming its console and exiting with its program's exit code.
#include "command.h"
#include "shared.h"

#include <flick/machine.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using flick::cli::add_number;
using flick::cli::add_value;
using flick::cli::add_values;
using flick::cli::parse_uint;
using flick::cli::usage_error;
using flick::cli::write_all;

constexpr const char* kAbout =
    "Runs IMAGE as a microVM until its program exits, streaming the console to stdout, and\n"
    "exits with the program's exit code (128+N if signal N ended it, 125 if flick failed).\n"
    "CMD follows \"--\" (or is the first argument after IMAGE that is not an option) and takes\n"
    "the rest of the line, options and all.\n"
    "SIGINT/SIGTERM stop the machine gracefully; a second one kills it.";

constexpr int kFlickFailed = 125;

std::atomic<int> g_signals{0};

// The exit code `flick machine run` reports for how the machine ended.
int exit_code_of(const flick::Machine& m) {
  auto exit = m.last_exit();
  if (!exit) return kFlickFailed;
  if (!exit->error.empty()) {
    std::fprintf(stderr, "flick: machine %s: %s\n", m.id().c_str(), exit->error.c_str());
    return exit->exit_code > 0 ? exit->exit_code : kFlickFailed;
  }
  if (exit->oom_killed) std::fprintf(stderr, "flick: machine %s: the guest ran out of memory\n", m.id().c_str());
  if (exit->signal) return 128 + exit->signal;
  return exit->exit_code;
}

struct Options {
  flick::HostOptions host;
  flick::MachineConfig config;
  std::string name;
  bool rm = false;
  bool no_network = false;
  bool timings = false;
};

// --restart no|always|on-failure[:MAX_RETRIES]
void parse_restart(const std::string& p, flick::RestartConfig* r) {
  uint64_t n = 0;
  if (p == "no") {
    r->policy = flick::RestartPolicy::no;
  } else if (p == "always") {
    r->policy = flick::RestartPolicy::always;
  } else if (p.rfind("on-failure", 0) == 0) {
    r->policy = flick::RestartPolicy::on_failure;
    if (p.size() > 10 && (p[10] != ':' || !parse_uint(p.substr(11), 1000, &n)))
      usage_error("--restart on-failure takes :MAX_RETRIES (0 to 1000), not '" + p + "'");
    if (p.size() > 10) r->max_retries = static_cast<uint32_t>(n);
  } else {
    usage_error("--restart takes no, always or on-failure[:N], not '" + p + "'");
  }
}

// Creates the volumes named in the mounts that do not exist yet.
flick::Result<void> ensure_volumes(flick::Host& host, const flick::MachineConfig& c) {
  auto existing = host.list_volumes();
  if (!existing) return std::move(existing).error();
  for (const auto& m : c.mounts) {
    bool found = false;
    for (const auto& v : *existing) found = found || v.name == m.volume;
    if (found) continue;
    auto made = host.create_volume({m.volume, 1});
    if (!made && made.error().code != flick::Errc::exists) return std::move(made).error();
    if (made) std::fprintf(stderr, "flick: created volume %s (1 GB)\n", m.volume.c_str());
  }
  return {};
}

void print_timings(const flick::Machine& m) {
  auto t = m.last_start_timings();
  if (!t) return;
  auto ms = [](std::chrono::nanoseconds ns) { return static_cast<double>(ns.count()) / 1e6; };
  std::fprintf(stderr, "flick: start timings: VM created %.1f ms", ms(t->vm_created));
  if (t->boot_timer) std::fprintf(stderr, ", boot timer %.1f ms", ms(*t->boot_timer));
  if (t->started) std::fprintf(stderr, ", started %.1f ms", ms(*t->started));
  std::fprintf(stderr, " (from start())\n");
}

int machine_run(Options& o) {
  o.config.auto_destroy = o.rm;
  if (o.no_network) o.host.network = flick::HostOptions::Networking::none;
  o.host.images = flick::cli::store_options_from_env();

  auto host = flick::Host::open(o.host);
  if (!host) return std::fprintf(stderr, "flick: %s\n", host.error().describe().c_str()), kFlickFailed;
  if (auto r = ensure_volumes(**host, o.config); !r)
    return std::fprintf(stderr, "flick: %s\n", r.error().describe().c_str()), kFlickFailed;

  flick::MachineHandlers handlers;
  handlers.console = [](std::string_view s) { write_all(STDOUT_FILENO, s); };
  auto created = (*host)->create(o.config, handlers, o.name);
  if (!created) return std::fprintf(stderr, "flick: %s\n", created.error().describe().c_str()), kFlickFailed;
  flick::Machine& m = **created;

  struct sigaction sa{};
  sa.sa_handler = [](int) { ++g_signals; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  if (const auto& net = m.network())
    std::fprintf(stderr, "flick: machine %s at %s (the host is %s, host.flick.internal)\n", m.id().c_str(),
                 net->guest_address.c_str(), net->host_address.c_str());
  if (auto r = m.start(); !r) {
    std::fprintf(stderr, "flick: %s\n", r.error().describe().c_str());
    if (o.rm) (void)m.destroy(true);
    return kFlickFailed;
  }
  // Signals: the first asks the machine to stop, the second kills it.
  std::atomic<bool> done{false};
  std::thread stopper;
  std::thread signals([&] {
    int seen = 0;
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      int now = g_signals;
      if (now == seen) continue;
      seen = now;
      if (now == 1) {
        std::fprintf(stderr, "flick: stopping machine %s\n", m.id().c_str());
        stopper = std::thread([&m] { (void)m.stop(); });
      } else {
        (void)m.destroy(true);
      }
    }
  });
  auto settle = [&] {
    for (;;) {
      auto s = m.state();
      if (s == flick::MachineState::stopped || s == flick::MachineState::failed ||
          s == flick::MachineState::destroyed)
        return;
      (void)m.wait(o.rm ? flick::MachineState::destroyed : flick::MachineState::stopped,
                   std::chrono::milliseconds(500));
    }
  };
  settle();
  done = true;
  signals.join();
  if (stopper.joinable()) stopper.join();

  if (o.timings) print_timings(m);
  int rc = exit_code_of(m);
  if (o.rm) {
    if (auto r = m.destroy(true); !r) std::fprintf(stderr, "flick: %s\n", r.error().describe().c_str());
  }
  return rc;
}

void add_run(CLI::App& machine) {
  auto o = std::make_shared<Options>();
  flick::MachineConfig& c = o->config;
  auto* run = machine.add_subcommand("run", "run IMAGE as a microVM until its program exits");
  run->footer(kAbout);

  // CMD. The first argument after IMAGE that is not an option ends CLI11's parse of this
  // command (a prefix command): it and the rest of the line are left, unparsed, in remaining(),
  // so CMD may have options of its own. The CMD positional never takes a value (its check
  // refuses every one, and validate_positionals() makes CLI11 pass over it); it names CMD in
  // --help and keeps a "--" after IMAGE inside this command, where CLI11 would otherwise hand
  // the rest of the line back to `flick machine`, having no positional left to fill.
  run->prefix_command();
  run->validate_positionals();
  run->add_option("IMAGE", c.image, "the image: busybox, localhost:5000/app:1, oci:DIR[:TAG], ...")
      ->required()
      ->type_name("");
  run->add_option("CMD")
      ->description("the program and its arguments (default: the image's)")
      ->expected(1, CLI::detail::expected_max_vector_size)
      ->type_name("")
      ->check(CLI::Validator([](const std::string&) { return std::string("taken unparsed"); }, ""));

  add_number(*run, "--cpus", "N", &c.guest.cpus, 1, 254, "1 to 254", "vCPUs (default 1)");
  add_number(*run, "--memory", "MB", &c.guest.memory_mb, 0, 1u << 20, "megabytes", "guest memory (default 256)");
  add_values(
      *run, "-e,--env", "K=V",
      [&c](const std::string& v) {
        auto eq = v.find('=');
        if (eq == std::string::npos) usage_error("--env takes K=V, not '" + v + "'");
        c.env[v.substr(0, eq)] = v.substr(eq + 1);
      },
      "set an environment variable (repeatable)");
  add_values(
      *run, "-v,--volume", "VOL:/PATH",
      [&c](const std::string& v) {
        auto colon = v.find(':');
        if (colon == std::string::npos) usage_error("--volume takes VOL:/PATH, not '" + v + "'");
        c.mounts.push_back({v.substr(0, colon), v.substr(colon + 1)});
      },
      "mount volume VOL at PATH, creating it (1 GB) if needed (repeatable)");
  run->add_option("--user", c.init.user, "run as USER (name, uid, name:group or uid:gid)")->type_name("USER");
  run->add_option("--workdir", c.init.workdir, "working directory")->type_name("DIR");
  add_value(
      *run, "--entrypoint", "PROG", [&c](const std::string& v) { c.init.entrypoint = {v}; },
      "replace the image's entrypoint");
  add_value(
      *run, "--restart", "POLICY", [&c](const std::string& v) { parse_restart(v, &c.restart); },
      "no (default), always, on-failure[:MAX_RETRIES]");
  add_number(*run, "--stop-signal", "N", &c.stop_config.signal, 1, 64, "1 to 64",
             "signal stop() sends first (default 2, SIGINT)");
  add_value(
      *run, "--stop-timeout", "SECONDS",
      [&c](const std::string& v) {
        uint64_t n = 0;
        if (!parse_uint(v, 86400, &n)) usage_error("--stop-timeout takes seconds, not '" + v + "'");
        c.stop_config.timeout = std::chrono::seconds(n);
      },
      "then SIGKILL after this long (default 5)");
  add_value(
      *run, "--start-timeout", "SECONDS",
      [&c](const std::string& v) {
        uint64_t n = 0;
        if (!parse_uint(v, 86400, &n) || n == 0) usage_error("--start-timeout takes seconds, not '" + v + "'");
        c.start_timeout = std::chrono::seconds(n);
      },
      "fail if the program has not started by then (default 60)");
  run->add_flag("--rm", o->rm, "destroy the machine when it stops");
  run->add_flag("--no-network", o->no_network, "no link to the host (default: one when flick may create TAPs)");
  run->add_option("--name", o->name, "the machine's name")->type_name("NAME");
  run->add_option("--kernel", o->host.kernel, "guest kernel (bzImage, vmlinux or an unpacked kernel package)")
      ->type_name("PATH");
  run->add_option("--kernel-modules", o->host.kernel_modules, "its lib/modules/<release>")->type_name("DIR");
  add_values(
      *run, "--kernel-arg", "ARG", [&c](const std::string& v) { c.guest.kernel_args.push_back(v); },
      "append to the kernel command line (repeatable)");
  run->add_option("--state-dir", o->host.state_dir,
                  "machines and volumes (default $FLICK_STATE_DIR, ~/.local/state/flick)")
      ->type_name("DIR");
  run->add_flag("--timings", o->timings, "print where the start's time went");

  // After the options: CMD is what CLI11 left, less the "--" that began it. A word it left
  // that looks like an option came before CMD, so it is one flick does not know.
  run->parse_complete_callback([run, &c] {
    auto rest = run->remaining();
    if (!rest.empty() && rest[0] == "--") {
      rest.erase(rest.begin());
    } else if (!rest.empty() && rest[0][0] == '-') {
      usage_error("unknown option '" + rest[0] + "'");
    }
    c.init.cmd = std::move(rest);
  });
  flick::cli::set_action(run, [o] { return machine_run(*o); });
}

void add_machine_command(CLI::App& flick) {
  auto* machine = flick.add_subcommand("machine", "run an OCI image as a machine");
  machine->require_subcommand(1);
  add_run(*machine);
}

}  // namespace

FLICK_COMMAND("machine", add_machine_command);
