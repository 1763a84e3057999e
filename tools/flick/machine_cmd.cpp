// flick machine run: create, start, wait for, stop and (with --rm) destroy one machine,
// streaming its console and exiting with its program's exit code.
#include "args.h"
#include "command.h"

#include <flick/machine.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using flick::cli::parse_uint;
using flick::cli::write_all;

constexpr const char* kUsage =
    "usage: flick machine run IMAGE [options] [-- CMD ARG...]\n"
    "\n"
    "Runs IMAGE as a microVM until its program exits, streaming the console to stdout, and\n"
    "exits with the program's exit code (128+N if signal N ended it, 125 if flick failed).\n"
    "\n"
    "  --cpus N                 vCPUs (default 1)\n"
    "  --memory MB              guest memory (default 256)\n"
    "  -e, --env K=V            set an environment variable (repeatable)\n"
    "  -v, --volume VOL:/PATH   mount volume VOL at PATH, creating it (1 GB) if needed\n"
    "  --user USER              run as USER (name, uid, name:group or uid:gid)\n"
    "  --workdir DIR            working directory\n"
    "  --entrypoint PROG        replace the image's entrypoint\n"
    "  --restart POLICY         no (default), always, on-failure[:MAX_RETRIES]\n"
    "  --stop-signal N          signal stop() sends first (default 2, SIGINT)\n"
    "  --stop-timeout SECONDS   then SIGKILL after this long (default 5)\n"
    "  --start-timeout SECONDS  fail if the program has not started by then (default 60)\n"
    "  --rm                     destroy the machine when it stops\n"
    "  --no-network             no link to the host (default: one when flick may create TAPs)\n"
    "  --name NAME              the machine's name\n"
    "  --kernel PATH            guest kernel (bzImage, vmlinux or an unpacked kernel package)\n"
    "  --kernel-modules DIR     its lib/modules/<release>\n"
    "  --kernel-arg ARG         append to the kernel command line (repeatable)\n"
    "  --state-dir DIR          machines and volumes (default $FLICK_STATE_DIR, ~/.local/state/flick)\n"
    "  --timings                print where the start's time went\n"
    "\n"
    "SIGINT/SIGTERM stop the machine gracefully; a second one kills it.\n";

constexpr int kFlickFailed = 125;

std::atomic<int> g_signals{0};

int usage_error(const std::string& what) {
  std::fprintf(stderr, "flick machine run: %s\n", what.c_str());
  return 2;
}

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
  bool timings = false;
};

// Parses everything after "run"; returns -1 on success, else the exit code.
int parse(int argc, char** argv, Options* o) {
  auto& c = o->config;
  bool cmd = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (cmd) {
      c.init.cmd.push_back(a);
      continue;
    }
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    auto need = [&](const char* v) {
      if (!v) std::fprintf(stderr, "flick machine run: %s needs a value\n", a.c_str());
      return v != nullptr;
    };
    uint64_t n = 0;
    const char* v = nullptr;
    if (a == "--") {
      cmd = true;
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--rm") {
      o->rm = true;
    } else if (a == "--no-network") {
      o->host.network = flick::HostOptions::Networking::none;
    } else if (a == "--timings") {
      o->timings = true;
    } else if (a == "--cpus") {
      if (!need(v = value()) || !parse_uint(v, 254, &n)) return usage_error("--cpus takes 1 to 254");
      c.guest.cpus = static_cast<uint32_t>(n);
    } else if (a == "--memory") {
      if (!need(v = value()) || !parse_uint(v, 1u << 20, &n)) return usage_error("--memory takes megabytes");
      c.guest.memory_mb = static_cast<uint32_t>(n);
    } else if (a == "-e" || a == "--env") {
      if (!need(v = value())) return 2;
      const char* eq = std::strchr(v, '=');
      if (!eq) return usage_error(std::string("--env takes K=V, not '") + v + "'");
      c.env[std::string(v, eq)] = eq + 1;
    } else if (a == "-v" || a == "--volume") {
      if (!need(v = value())) return 2;
      const char* colon = std::strchr(v, ':');
      if (!colon) return usage_error(std::string("--volume takes VOL:/PATH, not '") + v + "'");
      c.mounts.push_back({std::string(v, colon), colon + 1});
    } else if (a == "--user") {
      if (!need(v = value())) return 2;
      c.init.user = v;
    } else if (a == "--workdir") {
      if (!need(v = value())) return 2;
      c.init.workdir = v;
    } else if (a == "--entrypoint") {
      if (!need(v = value())) return 2;
      c.init.entrypoint = {v};
    } else if (a == "--restart") {
      if (!need(v = value())) return 2;
      std::string p = v;
      if (p == "no") c.restart.policy = flick::RestartPolicy::no;
      else if (p == "always") c.restart.policy = flick::RestartPolicy::always;
      else if (p.rfind("on-failure", 0) == 0) {
        c.restart.policy = flick::RestartPolicy::on_failure;
        if (p.size() > 10 && (p[10] != ':' || !parse_uint(p.c_str() + 11, 1000, &n)))
          return usage_error("--restart on-failure takes :MAX_RETRIES (0 to 1000)");
        if (p.size() > 10) c.restart.max_retries = static_cast<uint32_t>(n);
      } else {
        return usage_error("--restart takes no, always or on-failure[:N]");
      }
    } else if (a == "--stop-signal") {
      if (!need(v = value()) || !parse_uint(v, 64, &n) || n == 0) return usage_error("--stop-signal takes 1 to 64");
      c.stop_config.signal = static_cast<int>(n);
    } else if (a == "--stop-timeout") {
      if (!need(v = value()) || !parse_uint(v, 86400, &n)) return usage_error("--stop-timeout takes seconds");
      c.stop_config.timeout = std::chrono::seconds(n);
    } else if (a == "--start-timeout") {
      if (!need(v = value()) || !parse_uint(v, 86400, &n) || n == 0) return usage_error("--start-timeout takes seconds");
      c.start_timeout = std::chrono::seconds(n);
    } else if (a == "--name") {
      if (!need(v = value())) return 2;
      o->name = v;
    } else if (a == "--kernel") {
      if (!need(v = value())) return 2;
      o->host.kernel = v;
    } else if (a == "--kernel-modules") {
      if (!need(v = value())) return 2;
      o->host.kernel_modules = v;
    } else if (a == "--kernel-arg") {
      if (!need(v = value())) return 2;
      c.guest.kernel_args.push_back(v);
    } else if (a == "--state-dir") {
      if (!need(v = value())) return 2;
      o->host.state_dir = v;
    } else if (!a.empty() && a[0] == '-') {
      return usage_error("unknown option '" + a + "'\n" + kUsage);
    } else if (c.image.empty()) {
      c.image = a;
    } else {
      c.init.cmd.push_back(a);  // `flick machine run IMAGE CMD...` without "--"
      cmd = true;
    }
  }
  if (c.image.empty()) return usage_error(std::string("an IMAGE is required\n") + kUsage);
  o->host.images = flick::cli::store_options_from_env();
  return -1;
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

int machine_run(int argc, char** argv) {
  Options o;
  if (int rc = parse(argc, argv, &o); rc >= 0) return rc;
  o.config.auto_destroy = o.rm;

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

int machine_command(int argc, char** argv) {
  if (argc >= 2 && !std::strcmp(argv[1], "run")) return machine_run(argc - 1, argv + 1);
  std::fputs(kUsage, argc >= 2 && !std::strcmp(argv[1], "--help") ? stdout : stderr);
  return 2;
}

}  // namespace

FLICK_COMMAND("machine", "run an OCI image as a machine", machine_command);
