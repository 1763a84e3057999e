// flick machine: the command group, and `flick machine run`: create, start, wait for, stop and
// (with --rm) destroy one machine, streaming its console and exiting with its program's exit
// code. The commands over the store are in machine_lifecycle_cmd.cpp and machine_query_cmd.cpp.
#include "command.h"
#include "machine_options.h"
#include "shared.h"
#include "store_cmd.h"

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

using flick::write_all;

constexpr const char* kAbout =
    "Runs IMAGE as a microVM until its program exits, streaming the program's output to stdout\n"
    "(--verbose: the whole console, kernel and flick-init too; `flick machine logs` keeps it), and\n"
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
  flick::cli::MachineOptions machine;
  bool timings = false;
  bool verbose = false;
  bool shell = false;
};

// --shell: the machine idles while CMD (default /bin/sh) runs in it with a terminal, and is
// destroyed when CMD ends, whose exit status this is (Fly's `fly machine run --shell`).
int run_shell(flick::Host& host, flick::cli::MachineOptions& o, const std::string& app) {
  std::vector<std::string> shell = o.config.init.cmd.empty() ? std::vector<std::string>{"/bin/sh"} : o.config.init.cmd;
  o.config.init.exec = {"/bin/sh", "-c", "while :; do sleep 3600; done"};
  o.config.init.cmd.clear();
  o.config.auto_destroy = false;
  auto created = host.create(o.config, {}, o.name, app);
  if (!created) return std::fprintf(stderr, "flick: %s\n", created.error().describe().c_str()), kFlickFailed;
  flick::Machine& m = **created;
  int rc = kFlickFailed;
  if (auto r = m.start(); !r) std::fprintf(stderr, "flick: %s\n", r.error().describe().c_str());
  else if (auto w = m.wait(flick::MachineState::started, o.config.start_timeout); !w)
    std::fprintf(stderr, "flick: %s\n", w.error().describe().c_str());
  else
    rc = flick::cli::exec_shell(m, shell);
  if (auto d = m.destroy(true); !d) std::fprintf(stderr, "flick: %s\n", d.error().describe().c_str());
  return rc;
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

int machine_run(Options& opts) {
  flick::cli::MachineOptions& o = opts.machine;
  if (o.rm) o.config.auto_destroy = true;
  o.rm = o.config.auto_destroy;  // --config may ask for it too
  if (o.no_network) o.host.network = flick::HostOptions::Networking::none;
  const std::string app = flick::cli::app_or_default(o.app);

  auto host = flick::cli::open_host(o.host);
  if (!host) return std::fprintf(stderr, "flick: %s\n", host.error().describe().c_str()), kFlickFailed;
  if (auto r = flick::cli::check_app(**host, app); !r)
    return std::fprintf(stderr, "flick: %s\n", r.error().describe().c_str()), kFlickFailed;
  if (auto r = flick::cli::check_image(**host, o.config); !r)
    return std::fprintf(stderr, "flick: %s\n", r.error().describe().c_str()), kFlickFailed;
  if (auto r = flick::cli::ensure_volumes(**host, o.config, app); !r)
    return std::fprintf(stderr, "flick: %s\n", r.error().describe().c_str()), kFlickFailed;
  if (opts.shell) return run_shell(**host, o, app);

  flick::MachineHandlers handlers;
  auto print = [](std::string_view s) { write_all(STDOUT_FILENO, s); };
  (opts.verbose ? handlers.console : handlers.output) = print;
  auto created = (*host)->create(o.config, handlers, o.name, app);
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

  if (opts.timings) print_timings(m);
  int rc = exit_code_of(m);
  if (o.rm) {
    if (auto r = m.destroy(true); !r) std::fprintf(stderr, "flick: %s\n", r.error().describe().c_str());
  }
  return rc;
}

void add_run(CLI::App& machine) {
  auto o = std::make_shared<Options>();
  auto* run = machine.add_subcommand("run", "run IMAGE as a microVM until its program exits");
  run->footer(kAbout);
  flick::cli::add_machine_options(*run, o->machine);
  run->add_flag("--timings", o->timings, "print where the start's time went");
  run->add_flag("--verbose", o->verbose, "print the whole console (kernel, flick-init), not only the program's output");
  run->add_flag("--shell", o->shell,
                "an interactive shell (CMD, default /bin/sh) in the machine, destroyed when it exits");
  flick::cli::add_kvm_device_option(*run, &o->machine.host);
  flick::cli::set_action(run, [o] { return machine_run(*o); });
}

void add_machine_command(CLI::App& flick) {
  auto* machine = flick.add_subcommand("machine", "run OCI images as machines, and manage them");
  machine->require_subcommand(1);
  add_run(*machine);
  flick::cli::add_machine_lifecycle_commands(*machine);
  flick::cli::add_machine_query_commands(*machine);
  flick::cli::add_machine_update_commands(*machine);
  flick::cli::add_machine_exec_command(*machine);
}

}  // namespace

FLICK_COMMAND("machine", add_machine_command);
