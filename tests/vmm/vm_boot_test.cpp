// Boots the freestanding test guests through flick::Vm on this host's /dev/kvm. The guests
// check what the VMM gives them (boot info, e820, ACPI, boot timer, SMP) and report on COM1.
#include <flick/vm.h>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <string>

namespace flick {
namespace {

bool kvm_usable() { return ::access("/dev/kvm", R_OK | W_OK) == 0; }

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

class TestGuestBoot : public ::testing::TestWithParam<GuestCase> {
 protected:
  void SetUp() override {
    if (!kvm_usable()) GTEST_SKIP() << "no usable /dev/kvm";
  }
};

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

class TestGuestEnding : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kvm_usable()) GTEST_SKIP() << "no usable /dev/kvm";
  }
};

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

TEST(VmCreate, ExplainsWhatIsWrong) {
  VmConfig cfg;
  cfg.kernel = "/nonexistent/kernel";
  cfg.memory_mib = 64;
  if (kvm_usable()) {
    auto r = Vm::create(cfg);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::not_found);
    EXPECT_NE(r.error().describe().find("/nonexistent/kernel"), std::string::npos);

    char path[] = "/tmp/flick-garbage-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    std::string junk(8192, 'x');
    ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    ::close(fd);
    cfg.kernel = path;
    r = Vm::create(cfg);
    ::unlink(path);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::malformed) << r.error().describe();

    cfg.kernel = FLICK_TESTGUEST_PVH;
    cfg.cpus = 0;
    EXPECT_EQ(Vm::create(cfg).error().code, Errc::invalid_argument);
    cfg.cpus = 1;
    cfg.memory_mib = 1;
    EXPECT_EQ(Vm::create(cfg).error().code, Errc::invalid_argument);
  }
  cfg.kernel = FLICK_TESTGUEST_PVH;
  cfg.memory_mib = 64;
  cfg.kvm_device = "/nonexistent/kvm";
  auto r = Vm::create(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kvm_unavailable);
  EXPECT_NE(r.error().describe().find("/nonexistent/kvm"), std::string::npos);
}

}  // namespace
}  // namespace flick
