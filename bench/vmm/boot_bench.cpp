// Boot latency of flick's VMM on this host's /dev/kvm, booting the freestanding test guest.
//
// Per boot (averaged over iterations):
//   setup_us       Vm::create() to the first KVM_RUN: the VMM's own set-up work
//   to_timer_us    first KVM_RUN to the guest's boot-timer write (guest runs its checks)
//   total_us       Vm::create() to the guest's power-off, all threads joined
//   vmm_rss_kib    resident memory of this process other than guest memory, with one VM
//                  alive (anonymous pages: the VMM's heap and thread stacks, plus this
//                  benchmark's own small share) — an upper bound on the VMM's overhead
//   guest_rss_kib  guest memory the guest touched (the memfd's resident pages)
// Guest memory is memfd-backed here (VmConfig::shared_memory) so that the two can be told
// apart: anonymous guest memory would count as the VMM's.
// Wall time per iteration is the whole create -> power-off -> destroy cycle.
#include <flick/vm.h>

#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace {

// RssAnon and RssShmem of this process, in KiB (/proc/self/status).
std::pair<long, long> rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  long anon = 0, shmem = 0;
  while (std::getline(f, line)) {
    if (line.rfind("RssAnon:", 0) == 0) anon = std::stol(line.substr(8));
    if (line.rfind("RssShmem:", 0) == 0) shmem = std::stol(line.substr(9));
  }
  return {anon, shmem};
}

void BootTestGuest(benchmark::State& state, const char* kernel) {
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    state.SkipWithError("no usable /dev/kvm");
    return;
  }
  const auto cpus = static_cast<uint32_t>(state.range(0));
  flick::VmConfig cfg;
  cfg.kernel = kernel;
  cfg.cpus = cpus;
  cfg.memory_mib = 64;
  cfg.shared_memory = true;
  cfg.cmdline = "testguest mem=64 cpus=" + std::to_string(cpus);
  std::string console;
  cfg.console = [&](std::string_view s) { console.append(s); };

  double setup = 0, to_timer = 0, total = 0, vmm_rss = 0, guest_rss = 0;
  for (auto _ : state) {
    console.clear();
    auto t0 = std::chrono::steady_clock::now();
    auto vm = flick::Vm::create(cfg);
    if (!vm) {
      state.SkipWithError(vm.error().describe().c_str());
      return;
    }
    if (!(*vm)->start()) {
      state.SkipWithError("start failed");
      return;
    }
    auto exit = (*vm)->wait();
    auto t1 = std::chrono::steady_clock::now();
    auto after = rss_kib();
    if (exit.reason != flick::VmExitReason::power_off || console.find("PASS") == std::string::npos) {
      state.SkipWithError(("guest did not pass: " + exit.detail + "\n" + console).c_str());
      return;
    }
    auto t = (*vm)->timings();
    setup += std::chrono::duration<double, std::micro>(t.setup).count();
    to_timer += t.boot_timer ? std::chrono::duration<double, std::micro>(*t.boot_timer).count() : 0;
    total += std::chrono::duration<double, std::micro>(t1 - t0).count();
    vmm_rss += static_cast<double>(after.first);
    guest_rss += static_cast<double>(after.second);
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["setup_us"] = setup / n;
  state.counters["to_timer_us"] = to_timer / n;
  state.counters["total_us"] = total / n;
  state.counters["vmm_rss_kib"] = vmm_rss / n;
  state.counters["guest_rss_kib"] = guest_rss / n;
}

BENCHMARK_CAPTURE(BootTestGuest, pvh, FLICK_TESTGUEST_PVH)
    ->Arg(1)->Arg(2)->ArgName("cpus")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BootTestGuest, bzimage, FLICK_TESTGUEST_BZIMAGE)
    ->Arg(1)->Arg(2)->ArgName("cpus")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
