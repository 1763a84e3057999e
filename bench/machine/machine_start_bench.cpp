// Start latency of a stopped machine, and the boot files QEMU needs to boot the same thing.
//
//   machine_start_bench flick --image REF --kernel VMLINUZ --kernel-modules DIR
//       --state-dir D --cache-dir C --runs N [--cpus N] [--memory MB] [--cli FLICK] [--rss 1]
//     A machine running `sh -c 'exit 0'`: one warm-up start, then N starts of the stopped
//     machine; one JSON line per run (ms from start(): VM created, boot timer, `started`
//     event, back in `stopped`) and a summary line of medians. With --cli, N more runs of
//     the same machine through the command line (`FLICK machine start` then `FLICK machine
//     wait --state stopped`, wall time of both). With --rss, a second machine running
//     `sleep` is started and its processes' memory reported (rss line), guest RAM apart.
//
//   machine_start_bench tiny --image REF --kernel TESTGUEST --state-dir D --cache-dir C --runs N
//     A machine whose kernel is the PVH test guest (it powers off at once, without flick-init,
//     so each run ends `failed`): ms from start() to the VM created (flick-vmm spawned, the VM
//     process forked, the VM built: just before the first KVM_RUN) and to the run settled.
//
//   machine_start_bench qemu-files --image REF --kernel VMLINUZ --kernel-modules DIR
//       --cache-dir C --out DIR
//     Writes DIR/initrd.img: the base initramfs flick boots followed by a config archive
//     with the same process; prints kernel=, initrd=, rootfs= (the cached ext4 image).
//
// bench/machine/machine_vs_qemu.py runs both inside the test host.
#include <flick/image.h>
#include <flick/machine.h>

#include "machine/embedded_init.h"
#include "machine/guest_kernel.h"
#include "machine/init_config.h"
#include "machine/initramfs.h"
#include "runner/control.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace fs = std::filesystem;
using namespace flick;
using namespace std::chrono_literals;

namespace {

// The program every start runs: it exits at once, so a run is boot + exit + power-off.
const std::vector<std::string> kProgram = {"sh", "-c", "exit 0"};
constexpr auto kWaitLimit = std::chrono::milliseconds{10min};  // TCG boots take seconds to minutes

struct Options {
  std::string mode;
  std::map<std::string, std::string> values;

  std::string get(const std::string& key, std::string fallback = {}) const {
    auto it = values.find(key);
    return it == values.end() ? fallback : it->second;
  }
};

int usage() {
  std::fprintf(stderr,
               "usage: machine_start_bench flick --image REF --kernel VMLINUZ --kernel-modules DIR\n"
               "           --state-dir D --cache-dir C --runs N [--cpus N] [--memory MB] [--cli FLICK] [--rss 1]\n"
               "       machine_start_bench tiny --image REF --kernel TESTGUEST --state-dir D --cache-dir C --runs N\n"
               "       machine_start_bench qemu-files --image REF --kernel VMLINUZ --kernel-modules DIR\n"
               "           --cache-dir C --out DIR\n");
  return 2;
}

std::optional<Options> parse(int argc, char** argv) {
  if (argc < 2) return std::nullopt;
  Options o;
  o.mode = argv[1];
  for (int i = 2; i < argc; i += 2) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || i + 1 >= argc) return std::nullopt;
    o.values[key.substr(2)] = argv[i + 1];
  }
  return o;
}

bool require(const Options& o, std::initializer_list<const char*> keys) {
  bool ok = true;
  for (const char* k : keys) {
    if (o.get(k).empty()) {
      std::fprintf(stderr, "machine_start_bench %s: --%s is required\n", o.mode.c_str(), k);
      ok = false;
    }
  }
  return ok;
}

std::optional<uint32_t> number(const Options& o, const std::string& key, uint32_t fallback) {
  std::string v = o.get(key);
  if (v.empty()) return fallback;
  try {
    size_t used = 0;
    unsigned long n = std::stoul(v, &used);
    if (used == v.size() && n > 0 && n <= 1u << 20) return static_cast<uint32_t>(n);
  } catch (const std::exception&) {
  }
  std::fprintf(stderr, "machine_start_bench: --%s %s is not a positive number\n", key.c_str(), v.c_str());
  return std::nullopt;
}

MachineConfig bench_config(const Options& o, uint32_t cpus, uint32_t memory_mb) {
  MachineConfig c;
  c.image = o.get("image");
  c.init.exec = kProgram;
  c.guest.cpus = cpus;
  c.guest.memory_mb = memory_mb;
  c.start_timeout = kWaitLimit;  // a slow emulated boot is a data point, not a failure
  return c;
}

double ms(std::chrono::nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The console's last bytes, shown when a run fails.
class ConsoleTail {
 public:
  void append(std::string_view s) {
    std::lock_guard lk(mu_);
    tail_.append(s);
    if (tail_.size() > 8192) tail_.erase(0, tail_.size() - 4096);
  }
  std::string take() {
    std::lock_guard lk(mu_);
    return std::exchange(tail_, {});
  }

 private:
  std::mutex mu_;
  std::string tail_;
};

int fail(const std::string& what, ConsoleTail* console = nullptr) {
  std::fprintf(stderr, "machine_start_bench: %s\n", what.c_str());
  if (console) std::fprintf(stderr, "console output (last bytes):\n%s\n", console->take().c_str());
  return 1;
}

struct RunTimes {
  StartTimings start;
  std::chrono::nanoseconds stopped{0};  // start() called to wait(stopped) returned
};

// One start of the stopped machine; the timings of that start, or why it failed.
flick::Result<RunTimes> start_once(Machine& m, ConsoleTail& console) {
  (void)console.take();
  auto began = std::chrono::steady_clock::now();
  FLICK_TRY(m.start());
  FLICK_TRY(m.wait(MachineState::stopped, kWaitLimit));
  auto stopped = std::chrono::steady_clock::now() - began;
  auto exit = m.last_exit();
  if (!exit || !exit->success()) {
    std::string why = exit ? ("exit code " + std::to_string(exit->exit_code) + ", signal " +
                              std::to_string(exit->signal) + (exit->error.empty() ? "" : ", " + exit->error))
                           : std::string("no exit status");
    return flick::make_error(flick::Errc::guest_failure, "the program did not exit successfully: " + why);
  }
  auto t = m.last_start_timings();
  if (!t || !t->started) return flick::make_error(flick::Errc::guest_failure, "the run never reached started");
  if (!t->boot_timer) return flick::make_error(flick::Errc::guest_failure, "the run has no boot timer reading");
  return RunTimes{*t, stopped};
}

// A command line through the shell, with the state and cache folders in its environment;
// its wall time, or nothing when it failed.
std::optional<std::chrono::nanoseconds> timed_shell(const std::string& command) {
  auto began = std::chrono::steady_clock::now();
  int status = std::system(command.c_str());
  if (status != 0) return std::nullopt;
  return std::chrono::steady_clock::now() - began;
}

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The stopped machine `id` started through the command line, `runs` times after a warm-up.
int run_cli(const std::string& flick, const HostOptions& ho, const std::string& id, uint32_t runs) {
  std::string env = "FLICK_STATE_DIR=" + quoted(ho.state_dir.string()) + " FLICK_HOME=" + quoted(ho.cache_dir.string()) +
                    " FLICK_CACHE_DIR=" + quoted(ho.cache_dir.string()) + " ";
  std::string once = env + quoted(flick) + " machine start " + id + " >/dev/null && " + env + quoted(flick) +
                     " machine wait " + id + " --state stopped --timeout 10m >/dev/null";
  std::vector<double> wall;
  for (uint32_t i = 0; i <= runs; ++i) {
    auto t = timed_shell(once);
    if (!t) return fail("the command line's start and wait failed: " + once);
    if (i == 0) continue;
    wall.push_back(ms(*t));
    std::printf("{\"cli_run\":%u,\"stopped_ms\":%.3f}\n", i - 1, wall.back());
    std::fflush(stdout);
  }
  std::printf("{\"cli_summary\":true,\"runs\":%u,\"median_stopped_ms\":%.3f}\n", runs, median(wall));
  return 0;
}

// Kibibytes of `field` ("Rss:", "Pss:") in a /proc/<pid>/smaps_rollup, and in the one mapping
// of smaps exactly `guest_bytes` long (the guest's RAM), if there is one.
struct Memory {
  uint64_t total_kib = 0, guest_kib = 0;
};
Memory memory_of(int pid, const std::string& field, uint64_t guest_bytes) {
  Memory m;
  std::string dir = "/proc/" + std::to_string(pid);
  std::ifstream rollup(dir + "/smaps_rollup");
  for (std::string line; std::getline(rollup, line);)
    if (line.rfind(field, 0) == 0) m.total_kib = std::stoull(line.substr(field.size()));
  std::ifstream smaps(dir + "/smaps");
  bool in_guest = false;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      in_guest = hi - lo == guest_bytes;
    } else if (in_guest && line.rfind(field, 0) == 0) {
      m.guest_kib += std::stoull(line.substr(field.size()));
    }
  }
  return m;
}

// What a started machine costs the host beyond its guest's RAM: its monitor and VM process.
int report_rss(Host& host, const Options& o, uint32_t cpus, uint32_t memory_mb) {
  MachineConfig c = bench_config(o, cpus, memory_mb);
  c.init.exec = {"sleep", "3600"};
  auto created = host.create(c, {}, "machine-start-bench-rss");
  if (!created) return fail("creating the rss machine: " + created.error().describe());
  auto& m = **created;
  if (auto s = m.start(); !s) return fail("starting the rss machine: " + s.error().describe());
  if (auto w = m.wait(MachineState::started, kWaitLimit); !w) return fail("the rss machine: " + w.error().describe());
  auto control = runner::ControlClient::connect(host.options().run_dir / (m.id() + ".ctl"));
  if (!control) return fail("the rss machine's control socket: " + control.error().describe());
  auto status = control->status();
  if (!status) return fail("the rss machine's status: " + status.error().describe());
  const uint64_t guest = uint64_t{memory_mb} << 20;
  std::ostringstream line;
  line << "{\"rss\":true,\"memory_mb\":" << memory_mb;
  for (const char* field : {"Rss:", "Pss:"}) {
    Memory mon = memory_of(status->monitor_pid, field, guest), vm = memory_of(status->vmm_pid, field, guest);
    std::string key = field[0] == 'R' ? "rss" : "pss";
    line << ",\"" << key << "_monitor_kib\":" << mon.total_kib << ",\"" << key << "_vm_kib\":" << vm.total_kib << ",\""
         << key << "_guest_ram_kib\":" << vm.guest_kib << ",\"" << key << "_beyond_guest_kib\":"
         << mon.total_kib + vm.total_kib - vm.guest_kib;
  }
  line << "}";
  std::printf("%s\n", line.str().c_str());
  if (auto d = m.destroy(true); !d) return fail("destroying the rss machine: " + d.error().describe());
  return 0;
}

int run_flick(const Options& o) {
  if (!require(o, {"image", "kernel", "kernel-modules", "state-dir", "cache-dir", "runs"})) return usage();
  auto runs = number(o, "runs", 1);
  auto cpus = number(o, "cpus", 1);
  auto memory = number(o, "memory", 256);
  if (!runs || !cpus || !memory) return 2;

  HostOptions ho;
  ho.state_dir = o.get("state-dir");
  ho.cache_dir = o.get("cache-dir");
  ho.kernel = o.get("kernel");
  ho.kernel_modules = o.get("kernel-modules");
  ho.network = HostOptions::Networking::none;  // the QEMU side has no NIC either
  auto host = Host::open(ho);
  if (!host) return fail("opening the host: " + host.error().describe());

  ConsoleTail console;
  MachineHandlers handlers;
  handlers.console = [&console](std::string_view s) { console.append(s); };
  auto created = (*host)->create(bench_config(o, *cpus, *memory), handlers, "machine-start-bench");
  if (!created) return fail("creating the machine: " + created.error().describe());
  auto& m = **created;

  // Warm-up: the first boot reads kernel, initramfs and rootfs from disk into the page cache.
  if (auto t = start_once(m, console); !t) return fail("warm-up start: " + t.error().describe(), &console);

  std::vector<double> created_ms, timer_ms, started_ms, stopped_ms;
  for (uint32_t i = 0; i < *runs; ++i) {
    auto t = start_once(m, console);
    if (!t) return fail("run " + std::to_string(i) + ": " + t.error().describe(), &console);
    created_ms.push_back(ms(t->start.vm_created));
    timer_ms.push_back(ms(*t->start.boot_timer));
    started_ms.push_back(ms(*t->start.started));
    stopped_ms.push_back(ms(t->stopped));
    std::printf("{\"run\":%u,\"vm_created_ms\":%.3f,\"boot_timer_ms\":%.3f,\"started_ms\":%.3f,"
                "\"stopped_ms\":%.3f}\n",
                i, created_ms.back(), timer_ms.back(), started_ms.back(), stopped_ms.back());
    std::fflush(stdout);
  }
  std::printf("{\"summary\":true,\"runs\":%u,\"median_vm_created_ms\":%.3f,\"median_boot_timer_ms\":%.3f,"
              "\"median_started_ms\":%.3f,\"median_stopped_ms\":%.3f}\n",
              *runs, median(created_ms), median(timer_ms), median(started_ms), median(stopped_ms));
  std::fflush(stdout);
  if (std::string cli = o.get("cli"); !cli.empty())
    if (int r = run_cli(cli, ho, m.id(), *runs)) return r;
  if (!o.get("rss").empty())
    if (int r = report_rss(**host, o, *cpus, *memory)) return r;
  if (auto d = m.destroy(); !d) return fail("destroying the machine: " + d.error().describe());
  return 0;
}

int run_tiny(const Options& o) {
  if (!require(o, {"image", "kernel", "state-dir", "cache-dir", "runs"})) return usage();
  auto runs = number(o, "runs", 1);
  if (!runs) return 2;
  HostOptions ho;
  ho.state_dir = o.get("state-dir");
  ho.cache_dir = o.get("cache-dir");
  ho.kernel = o.get("kernel");
  ho.network = HostOptions::Networking::none;
  auto host = Host::open(ho);
  if (!host) return fail("opening the host: " + host.error().describe());
  MachineConfig c;
  c.image = o.get("image");
  c.guest.memory_mb = 64;
  c.guest.kernel_args = {"testguest", "mode=poweroff"};
  auto created = (*host)->create(c, {}, "machine-start-bench-tiny");
  if (!created) return fail("creating the machine: " + created.error().describe());
  auto& m = **created;
  std::vector<double> created_ms, settled_ms;
  for (uint32_t i = 0; i <= *runs; ++i) {  // run 0 warms the page cache
    auto began = std::chrono::steady_clock::now();
    if (auto s = m.start(); !s) return fail("start: " + s.error().describe());
    auto w = m.wait(MachineState::stopped, kWaitLimit);  // it powers off without events: failed
    auto settled = std::chrono::steady_clock::now() - began;
    if (w || w.error().code != Errc::guest_failure) return fail("the test guest's run did not end as expected");
    auto t = m.last_start_timings();
    if (!t) return fail("no start timings");
    if (i == 0) continue;
    created_ms.push_back(ms(t->vm_created));
    settled_ms.push_back(ms(settled));
    std::printf("{\"run\":%u,\"vm_created_ms\":%.3f,\"settled_ms\":%.3f}\n", i - 1, created_ms.back(),
                settled_ms.back());
  }
  std::printf("{\"summary\":true,\"runs\":%u,\"median_vm_created_ms\":%.3f,\"median_settled_ms\":%.3f}\n", *runs,
              median(created_ms), median(settled_ms));
  if (auto d = m.destroy(); !d) return fail("destroying the machine: " + d.error().describe());
  return 0;
}

// 14 hex digits, as machine ids (and so hostnames) are.
std::string hostname_like_machine_id() {
  std::random_device rd;
  std::string id;
  for (int i = 0; i < 14; ++i) id += "0123456789abcdef"[rd() % 16];
  return id;
}

int run_qemu_files(const Options& o) {
  if (!require(o, {"image", "kernel", "kernel-modules", "cache-dir", "out"})) return usage();
  fs::path out = o.get("out");
  auto store = ImageStore::open(o.get("cache-dir"));
  if (!store) return fail("opening the image cache: " + store.error().describe());
  auto rootfs = store->rootfs(o.get("image"));  // the same options as Host::create: the same file
  if (!rootfs) return fail("image " + o.get("image") + ": " + rootfs.error().describe());
  auto config = bench_config(o, 1, 256);
  auto process = machine::resolve_process(config, rootfs->config);
  if (!process) return fail(process.error().describe());
  auto kernel = machine::GuestKernel::from_dir(o.get("kernel"), fs::path(o.get("kernel-modules")));
  if (!kernel) return fail(kernel.error().describe());
  auto base = machine::build_base_initramfs(*kernel, machine::embedded_init(), machine::default_guest_modules(),
                                            o.get("cache-dir"));
  if (!base) return fail("building the base initramfs: " + base.error().describe());
  auto per_start = machine::config_archive(
      machine::init_config_json(hostname_like_machine_id(), *process, {}, config.stop_config));
  if (!per_start) return fail("building the config archive: " + per_start.error().describe());

  // Laid out as flick's VMM lays out initrd + initrd_append: each archive 4-byte aligned.
  std::error_code ec;
  fs::create_directories(out, ec);
  auto base_size = fs::file_size(*base, ec);
  if (ec) return fail("reading " + base->string() + ": " + ec.message());
  std::string initrd(base_size, '\0');
  std::ifstream in(*base, std::ios::binary);
  if (!in.read(initrd.data(), static_cast<std::streamsize>(initrd.size())))
    return fail("reading " + base->string());
  initrd.resize((initrd.size() + 3) & ~size_t{3}, '\0');
  initrd.append(reinterpret_cast<const char*>(per_start->data()), per_start->size());
  fs::path initrd_path = out / "initrd.img";
  std::ofstream f(initrd_path, std::ios::binary | std::ios::trunc);
  f.write(initrd.data(), static_cast<std::streamsize>(initrd.size()));
  f.close();
  if (!f) return fail("writing " + initrd_path.string());

  std::printf("kernel=%s\ninitrd=%s\nrootfs=%s\n", kernel->vmlinuz.c_str(), initrd_path.c_str(),
              rootfs->path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto o = parse(argc, argv);
  if (!o) return usage();
  if (o->mode == "flick") return run_flick(*o);
  if (o->mode == "qemu-files") return run_qemu_files(*o);
  if (o->mode == "tiny") return run_tiny(*o);
  return usage();
}
