// flick vm run: boot a kernel, stream its console, exit with how the guest ended.
#include "command.h"
#include "shared.h"

#include <flick/vm.h>

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using flick::cli::add_number;
using flick::cli::add_value;
using flick::cli::add_values;
using flick::cli::split_commas;
using flick::cli::usage_error;
using flick::write_all;

constexpr const char* kAbout =
    "Boots the kernel (a bzImage or a vmlinux ELF) and streams the serial console to stdout.\n"
    "Exits 0 when the guest powers off or reboots; otherwise 1 with a one-line reason.\n"
    "With --snapshot DIR --snapshot-when TEXT the VM is paused and saved into DIR once its\n"
    "console has printed TEXT, and the command exits 0; --restore DIR runs it on from there\n"
    "(give the same --cpus, --memory, COM and device options; no --kernel).\n"
    "The KVM device is --kvm-device, else $FLICK_KVM_DEVICE, else /dev/kvm; it is opened\n"
    "only once every input has been read and checked.";

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

struct Options {
  flick::VmConfig cfg;
  bool no_rng = false;
  bool boot_time = false;
  uint64_t timeout_s = 0;
  std::string snapshot_dir;
  std::string snapshot_when;
  std::string restore_dir;
};

// Watches the console for `text`, across the chunks it arrives in (from any vCPU thread).
class ConsoleWatch {
 public:
  explicit ConsoleWatch(std::string text) : text_(std::move(text)) {}
  void feed(std::string_view s) {
    if (text_.empty() || seen_) return;
    std::lock_guard lk(mu_);
    tail_.append(s);
    if (tail_.find(text_) != std::string::npos) seen_ = true;
    if (tail_.size() > text_.size()) tail_.erase(0, tail_.size() - text_.size());
  }
  bool seen() const { return seen_; }

 private:
  std::string text_;
  std::mutex mu_;
  std::string tail_;
  std::atomic<bool> seen_{false};
};

int vm_run(Options& o) {
  flick::VmConfig& cfg = o.cfg;
  cfg.rng = !o.no_rng;
  // Checked here rather than while parsing, so that an unknown option is what gets reported.
  const char* bad = o.restore_dir.empty() == cfg.kernel.empty()
                        ? (cfg.kernel.empty() ? "--kernel is required (or --restore DIR)"
                                              : "--restore takes no --kernel: the snapshot holds the running kernel")
                    : o.snapshot_dir.empty() != o.snapshot_when.empty() ? "--snapshot and --snapshot-when go together"
                                                                        : nullptr;
  if (bad) {
    std::fprintf(stderr, "flick vm run: %s\nRun with --help for more information.\n", bad);
    return 2;
  }
  auto watch = std::make_shared<ConsoleWatch>(o.snapshot_when);
  cfg.console = [watch](std::string_view s) {
    write_all(STDOUT_FILENO, s);
    watch->feed(s);
  };

  auto vm = o.restore_dir.empty() ? flick::Vm::create(cfg) : flick::Vm::restore(cfg, o.restore_dir);
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
    exit = (*vm)->wait_for(std::chrono::milliseconds(o.snapshot_when.empty() ? 100 : 5));
    if (exit) break;
    if (watch->seen()) {
      auto saved = (*vm)->pause();
      if (saved) saved = (*vm)->snapshot(o.snapshot_dir);
      (*vm)->stop();
      exit = (*vm)->wait();
      if (!saved) {
        exit = flick::VmExit{flick::VmExitReason::vmm_error, saved.error().describe()};
      } else {
        exit = flick::VmExit{flick::VmExitReason::power_off, ""};
        std::fprintf(stderr, "flick: snapshot saved in %s\n", o.snapshot_dir.c_str());
      }
    } else if (g_signal) {
      (*vm)->stop();
      exit = (*vm)->wait();
      exit->detail = std::string("interrupted by signal ") + strsignal(g_signal);
    } else if (o.timeout_s && std::chrono::steady_clock::now() - start > std::chrono::seconds(o.timeout_s)) {
      (*vm)->stop();
      exit = (*vm)->wait();
      exit->detail = "timed out after " + std::to_string(o.timeout_s) + " s";
    }
  }
  done = true;
  input.join();

  if (o.boot_time) {
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

void add_run(CLI::App& vm) {
  auto o = std::make_shared<Options>();
  flick::VmConfig& cfg = o->cfg;
  auto* run = vm.add_subcommand("run", "boot a kernel, stream its console, exit with how the guest ended");
  run->footer(kAbout);
  run->add_option("--kernel", cfg.kernel, "the guest kernel: a bzImage or a vmlinux ELF (required unless --restore)")
      ->type_name("PATH");
  run->add_option("--snapshot", o->snapshot_dir, "where to save the VM once the console shows --snapshot-when")
      ->type_name("DIR");
  run->add_option("--snapshot-when", o->snapshot_when, "the console text that pauses and saves the VM")
      ->type_name("TEXT");
  run->add_option("--restore", o->restore_dir, "run on a VM saved with --snapshot (instead of booting --kernel)")
      ->type_name("DIR");
  add_values(
      *run, "--initrd", "PATH",
      [&cfg](const std::string& v) {
        // Repeated --initrd archives are concatenated in order.
        (cfg.initrd.empty() ? cfg.initrd : cfg.initrd_append.emplace_back()) = v;
      },
      "an initramfs (repeatable: the archives are concatenated in order)");
  run->add_option("--cmdline", cfg.cmdline, "the kernel command line (default \"" + cfg.cmdline + "\")")
      ->type_name("STR");
  add_number(*run, "--cpus", "N", &cfg.cpus, 1, 254, "a number from 1 to 254", "vCPUs (default 1)");
  add_number(*run, "--memory", "MIB", &cfg.memory_mib, 0, 1u << 20, "a size in MiB", "guest memory (default 256)");
  add_values(
      *run, "--disk", "PATH[,ro][,cow][,serial=S]",
      [&cfg](const std::string& v) {
        flick::DiskConfig d;
        if (!parse_disk(v, &d)) usage_error("--disk takes PATH[,ro][,cow][,serial=S], not '" + v + "'");
        cfg.disks.push_back(d);
      },
      "a virtio disk; ro: read-only, cow: writes go to a private overlay,\n"
      "serial: the ID the guest reads (repeatable)");
  add_values(
      *run, "--net", "tap=NAME[,mac=M]",
      [&cfg](const std::string& v) {
        flick::NetConfig net;
        if (!parse_net(v, &net)) usage_error("--net takes tap=NAME[,mac=aa:bb:cc:dd:ee:ff], not '" + v + "'");
        cfg.nets.push_back(net);
      },
      "a virtio network device on TAP interface NAME (repeatable)");
  add_value(
      *run, "--vsock", "PATH", [&cfg](const std::string& v) { cfg.vsock = flick::VsockConfig{v, 3}; },
      "a virtio-vsock device (guest CID 3) whose host side is the Unix socket PATH");
  run->add_flag("--no-rng", o->no_rng, "no virtio-rng device");
  run->add_flag("--shared-memory", cfg.shared_memory, "back guest memory with a memfd other processes can map");
  run->add_flag("--boot-time", o->boot_time, "print how long the guest took to reach its boot timer");
  add_number(*run, "--timeout", "SECONDS", &o->timeout_s, 0, 86400 * 365, "seconds",
             "stop the guest after this long (default: never)");
  run->add_option("--kvm-device", cfg.kvm_device, "the KVM device (default $FLICK_KVM_DEVICE, else /dev/kvm)")
      ->type_name("PATH");
  flick::cli::set_action(run, [o] { return vm_run(*o); });
}

void add_vm_command(CLI::App& flick) {
  auto* vm = flick.add_subcommand("vm", "run a kernel in a VM (low level)");
  vm->require_subcommand(1);
  add_run(*vm);
}

}  // namespace

FLICK_COMMAND("vm", add_vm_command);
