// Boots the freestanding test guests through flick::Vm on this host's /dev/kvm. The guests
// check what the VMM gives them (boot info, e820, ACPI, boot timer, SMP) and report on COM1.
#include <flick/vm.h>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <string>
#include <thread>

namespace flick {
namespace {

struct BootRun {
  VmExit exit;
  std::string console;
  VmTimings timings;
};

BootRun boot(const std::string& kernel, const std::string& cmdline, uint32_t cpus = 1,
         uint64_t mem_mib = 64) {
  auto mu = std::make_shared<std::mutex>();
  auto console = std::make_shared<std::string>();
  VmConfig cfg;
  cfg.kernel = kernel;
  cfg.cmdline = cmdline;
  cfg.cpus = cpus;
  cfg.memory_mib = mem_mib;
  cfg.console = [mu, console](std::string_view s) {
    std::lock_guard lk(*mu);
    console->append(s);
  };
  auto vm = Vm::create(cfg);
  if (!vm) {
    ADD_FAILURE() << vm.error().describe();
    return {};
  }
  EXPECT_TRUE((*vm)->start().ok());
  auto exit = (*vm)->wait_for(std::chrono::seconds(60));
  if (!exit) {
    ADD_FAILURE() << "guest did not finish within 60 s";
    (*vm)->stop();
    exit = (*vm)->wait();
  }
  std::lock_guard lk(*mu);
  return {*exit, *console, (*vm)->timings()};
}

struct GuestCase {
  const char* kernel;
  uint32_t cpus;
};
void PrintTo(const GuestCase& c, std::ostream* os) { *os << c.kernel << " x" << c.cpus; }

class TestGuestBoot : public ::testing::TestWithParam<GuestCase> {};

TEST_P(TestGuestBoot, PassesEveryCheckAndPowersOff) {
  const auto& c = GetParam();
  const uint64_t mem = 128;
  BootRun r = boot(c.kernel, "testguest cpus=" + std::to_string(c.cpus) + " mem=" + std::to_string(mem),
               c.cpus, mem);
  EXPECT_NE(r.console.find("flick-testguest: PASS"), std::string::npos) << r.console;
  EXPECT_EQ(r.console.find("FAIL"), std::string::npos) << r.console;
  EXPECT_EQ(r.exit.reason, VmExitReason::power_off) << r.exit.detail;
  if (c.cpus > 1) {
    EXPECT_NE(r.console.find("ok smp " + std::to_string(c.cpus) + "/"), std::string::npos);
  }
  ASSERT_TRUE(r.timings.boot_timer.has_value());
  EXPECT_GT(r.timings.boot_timer->count(), 0);
  EXPECT_GT(r.timings.run, *r.timings.boot_timer);
  EXPECT_GT(r.timings.setup.count(), 0);
}

INSTANTIATE_TEST_SUITE_P(Kernels, TestGuestBoot,
                         ::testing::Values(GuestCase{FLICK_TESTGUEST_PVH, 1},
                                           GuestCase{FLICK_TESTGUEST_PVH, 2},
                                           GuestCase{FLICK_TESTGUEST_BZIMAGE, 1},
                                           GuestCase{FLICK_TESTGUEST_BZIMAGE, 2}),
                         [](const auto& param_info) {
                           std::string k = std::string(param_info.param.kernel).find("pvh") != std::string::npos
                                               ? "Pvh" : "BzImage";
                           return k + std::to_string(param_info.param.cpus) + "Cpu";
                         });

class TestGuestEnding : public ::testing::Test {};

TEST_F(TestGuestEnding, AcpiResetRegisterIsAReboot) {
  BootRun r = boot(FLICK_TESTGUEST_PVH, "testguest mode=reboot");
  EXPECT_EQ(r.exit.reason, VmExitReason::reboot) << r.exit.detail;
}

TEST_F(TestGuestEnding, I8042ResetIsAReboot) {
  BootRun r = boot(FLICK_TESTGUEST_BZIMAGE, "testguest mode=i8042");
  EXPECT_EQ(r.exit.reason, VmExitReason::reboot) << r.exit.detail;
}

TEST_F(TestGuestEnding, TripleFaultIsAGuestFailureWithItsLocation) {
  BootRun r = boot(FLICK_TESTGUEST_PVH, "testguest mode=triplefault");
  // Real KVM reports a shutdown exit; an emulating KVM (PVM) may give up with an internal error.
  EXPECT_TRUE(r.exit.reason == VmExitReason::crash || r.exit.reason == VmExitReason::kvm_error)
      << to_string(r.exit.reason) << ": " << r.exit.detail;
  EXPECT_NE(r.exit.detail.find("rip 0x"), std::string::npos) << r.exit.detail;
  EXPECT_FALSE(r.exit.clean());
}

TEST_F(TestGuestEnding, UnhandledPortsAndMmioAreSurvived) {
  BootRun r = boot(FLICK_TESTGUEST_PVH, "testguest mode=badio");
  EXPECT_NE(r.console.find("ok badio"), std::string::npos) << r.console;
  EXPECT_EQ(r.exit.reason, VmExitReason::power_off) << r.exit.detail;
}

TEST_F(TestGuestEnding, PvpanicThenResetIsAPanic) {
  BootRun r = boot(FLICK_TESTGUEST_PVH, "testguest mode=panic");
  EXPECT_NE(r.console.find("Kernel panic"), std::string::npos);
  EXPECT_EQ(r.exit.reason, VmExitReason::panic) << r.exit.detail;
}

TEST_F(TestGuestEnding, AHungGuestIsStoppedByTheHost) {
  VmConfig cfg;
  cfg.kernel = FLICK_TESTGUEST_PVH;
  cfg.cmdline = "testguest mode=hang";
  cfg.memory_mib = 64;
  cfg.cpus = 2;
  auto vm = Vm::create(cfg);
  ASSERT_TRUE(vm.ok()) << vm.error().describe();
  ASSERT_TRUE((*vm)->start().ok());
  EXPECT_FALSE((*vm)->wait_for(std::chrono::milliseconds(300)).has_value());
  ASSERT_TRUE((*vm)->pause().ok());
  ASSERT_TRUE((*vm)->resume().ok());
  (*vm)->stop();
  VmExit e = (*vm)->wait();
  EXPECT_EQ(e.reason, VmExitReason::stopped);
}

TEST_F(TestGuestEnding, AStuckGuestDescribesItsVcpus) {
  auto console = std::make_shared<std::string>();
  auto mu = std::make_shared<std::mutex>();
  VmConfig cfg;
  cfg.kernel = FLICK_TESTGUEST_PVH;
  cfg.cmdline = "testguest mode=hang";  // cli; hlt
  cfg.memory_mib = 64;
  cfg.console = [mu, console](std::string_view s) {
    std::lock_guard lk(*mu);
    console->append(s);
  };
  auto vm = Vm::create(cfg);
  ASSERT_TRUE(vm.ok()) << vm.error().describe();
  ASSERT_TRUE((*vm)->start().ok());
  auto passed = [&] {
    std::lock_guard lk(*mu);
    return console->find("flick-testguest: PASS") != std::string::npos;
  };
  for (int i = 0; i < 600 && !passed(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(passed()) << *console;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // into its cli; hlt
  const std::string state = (*vm)->describe_state();
  const auto vcpu0 = state.substr(state.find("\nvcpu 0 "));
  const auto line = vcpu0.substr(0, vcpu0.find('\n', 1));
  EXPECT_NE(line.find("(running,"), std::string::npos) << state;
  EXPECT_NE(line.find("(IF=0)"), std::string::npos) << state;
  EXPECT_NE(line.find("rip 0x"), std::string::npos) << state;
  EXPECT_NE(line.find("lapic tpr"), std::string::npos) << state;
  EXPECT_NE(state.find("virtio-mmio at 0x"), std::string::npos) << state;  // the rng device
  // Describing does not disturb the guest: it is still stuck, and stops when told.
  EXPECT_FALSE((*vm)->wait_for(std::chrono::milliseconds(100)).has_value());
  (*vm)->stop();
  EXPECT_EQ((*vm)->wait().reason, VmExitReason::stopped);
  EXPECT_NE((*vm)->describe_state().find("vcpu 0: finished"), std::string::npos) << (*vm)->describe_state();
}

}  // namespace
}  // namespace flick
