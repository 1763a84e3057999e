// flick vm run: boot a kernel, stream its console, exit with how the guest ended.
#include "args.h"
#include "command.h"

#include <flick/vm.h>

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using flick::cli::parse_uint;
using flick::cli::split_commas;
using flick::cli::write_all;

constexpr const char* kUsage =
    "usage: flick vm run --kernel PATH [--initrd PATH]... [--cmdline STR] [--cpus N]\n"
    "                    [--memory MIB] [--disk PATH[,ro][,cow][,serial=S]]... [--net tap=NAME[,mac=M]]...\n"
    "                    [--vsock PATH] [--no-rng] [--shared-memory] [--boot-time]\n"
    "                    [--timeout SECONDS] [--kvm-device PATH]\n"
    "\n"
    "Boots PATH (a bzImage or a vmlinux ELF) and streams the serial console to stdout.\n"
    "Exits 0 when the guest powers off or reboots; otherwise 1 with a one-line reason.\n"
    "The KVM device is --kvm-device, else $FLICK_KVM_DEVICE, else /dev/kvm; it is opened\n"
    "only once every input has been read and checked.\n";

std::atomic<int> g_signal{0};

// --disk PATH[,ro][,cow][,serial=S]
bool parse_disk(const std::string& arg, flick::DiskConfig* d) {
  auto parts = split_commas(arg);
  d->path = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) {
    if (parts[i] == "ro") d->read_only = true;
    else if (parts[i] == "cow") d->copy_on_write = true;
    else if (parts[i].rfind("serial=", 0) == 0) d->serial = parts[i].substr(7);
    else return false;
  }
  return !d->path.empty();
}

// --net tap=NAME[,mac=M]
bool parse_net(const std::string& arg, flick::NetConfig* n) {
  for (const auto& p : split_commas(arg)) {
    if (p.rfind("tap=", 0) == 0) n->tap = p.substr(4);
    else if (p.rfind("mac=", 0) == 0) n->mac = p.substr(4);
    else return false;
  }
  return !n->tap.empty();
}

int vm_run(int argc, char** argv) {
  flick::VmConfig cfg;
  bool boot_time = false;
  uint64_t timeout_s = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "flick vm run: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    uint64_t n = 0;
    if (a == "--kernel") {
      cfg.kernel = value("--kernel");
    } else if (a == "--initrd") {
      // Repeated --initrd archives are concatenated in order.
      (cfg.initrd.empty() ? cfg.initrd : cfg.initrd_append.emplace_back()) = value("--initrd");
    } else if (a == "--cmdline") {
      cfg.cmdline = value("--cmdline");
    } else if (a == "--cpus") {
      if (!parse_uint(value("--cpus"), 254, &n) || n == 0) {
        std::fprintf(stderr, "flick vm run: --cpus takes a number from 1 to 254\n");
        return 2;
      }
      cfg.cpus = static_cast<uint32_t>(n);
    } else if (a == "--memory") {
      if (!parse_uint(value("--memory"), 1u << 20, &n)) {
        std::fprintf(stderr, "flick vm run: --memory takes a size in MiB\n");
        return 2;
      }
      cfg.memory_mib = n;
    } else if (a == "--disk") {
      flick::DiskConfig d;
      if (!parse_disk(value("--disk"), &d)) {
        std::fprintf(stderr, "flick vm run: --disk takes PATH[,ro][,cow][,serial=S]\n");
        return 2;
      }
      cfg.disks.push_back(d);
    } else if (a == "--net") {
      flick::NetConfig net;
      if (!parse_net(value("--net"), &net)) {
        std::fprintf(stderr, "flick vm run: --net takes tap=NAME[,mac=aa:bb:cc:dd:ee:ff]\n");
        return 2;
      }
      cfg.nets.push_back(net);
    } else if (a == "--vsock") {
      cfg.vsock = flick::VsockConfig{value("--vsock"), 3};
    } else if (a == "--kvm-device") {
      cfg.kvm_device = value("--kvm-device");
    } else if (a == "--shared-memory") {
      cfg.shared_memory = true;
    } else if (a == "--no-rng") {
      cfg.rng = false;
    } else if (a == "--boot-time") {
      boot_time = true;
    } else if (a == "--timeout") {
      if (!parse_uint(value("--timeout"), 86400 * 365, &timeout_s)) {
        std::fprintf(stderr, "flick vm run: --timeout takes seconds\n");
        return 2;
      }
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "flick vm run: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (cfg.kernel.empty()) {
    std::fprintf(stderr, "flick vm run: --kernel is required\n%s", kUsage);
    return 2;
  }
  cfg.console = [](std::string_view s) { write_all(STDOUT_FILENO, s); };

  auto vm = flick::Vm::create(cfg);
  if (!vm) {
    std::fprintf(stderr, "flick: %s\n", vm.error().describe().c_str());
    return 1;
  }
  struct sigaction sa{};
  sa.sa_handler = [](int sig) { g_signal = sig; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  if (auto r = (*vm)->start(); !r) {
    std::fprintf(stderr, "flick: %s\n", r.error().describe().c_str());
    return 1;
  }

  // Console input: forwarded from stdin until EOF or the end of the VM.
  std::atomic<bool> done{false};
  std::thread input([&] {
    char buf[256];
    while (!done) {
      pollfd p{STDIN_FILENO, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n <= 0) break;
      (*vm)->send_console_input(std::string_view(buf, static_cast<size_t>(n)));
    }
  });

  const auto start = std::chrono::steady_clock::now();
  std::optional<flick::VmExit> exit;
  while (!exit) {
    exit = (*vm)->wait_for(std::chrono::milliseconds(100));
    if (exit) break;
    if (g_signal) {
      (*vm)->stop();
      exit = (*vm)->wait();
      exit->detail = std::string("interrupted by signal ") + strsignal(g_signal);
    } else if (timeout_s && std::chrono::steady_clock::now() - start > std::chrono::seconds(timeout_s)) {
      (*vm)->stop();
      exit = (*vm)->wait();
      exit->detail = "timed out after " + std::to_string(timeout_s) + " s";
    }
  }
  done = true;
  input.join();

  if (boot_time) {
    auto t = (*vm)->timings();
    auto us = [](std::chrono::nanoseconds ns) { return static_cast<long long>(ns.count() / 1000); };
    if (t.boot_timer)
      std::fprintf(stderr, "flick: boot time: %lld us to the boot timer (VMM setup %lld us, run %lld us)\n",
                   us(*t.boot_timer), us(t.setup), us(t.run));
    else
      std::fprintf(stderr, "flick: boot time: the guest never wrote the boot timer (VMM setup %lld us, run %lld us)\n",
                   us(t.setup), us(t.run));
  }
  if (exit->reason == flick::VmExitReason::reboot)
    std::fprintf(stderr, "flick: guest ended: %s: %s\n", flick::to_string(exit->reason), exit->detail.c_str());
  if (exit->clean()) return 0;
  std::fprintf(stderr, "flick: guest ended: %s: %s\n", flick::to_string(exit->reason), exit->detail.c_str());
  return 1;
}

int vm_command(int argc, char** argv) {
  if (argc >= 2 && !std::strcmp(argv[1], "run")) return vm_run(argc - 1, argv + 1);
  std::fputs(kUsage, argc >= 2 && !std::strcmp(argv[1], "--help") ? stdout : stderr);
  return 2;
}

}  // namespace

FLICK_COMMAND("vm", "run a kernel in a VM (low level)", vm_command);
