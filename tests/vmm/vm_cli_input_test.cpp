// Bad input to `flick vm run` and Vm::create is reported by name before KVM is touched: every
// case points flick at a KVM device that does not exist, so a KVM error here would mean the
// input was not checked first. Needs no KVM, so it runs directly on every machine.
#include <flick/vm.h>

#include "support/command.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

namespace {

using flick::testing::TempDir;

constexpr const char* kMissingKvm = "/nonexistent/kvm";

flick::testing::CommandResult run(const std::string& args, const std::string& env = "") {
  return flick::testing::run_command(env + " FLICK_KVM_DEVICE=" + kMissingKvm + " " + FLICK_CLI +
                                     " " + args + " </dev/null");
}

bool mentions(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

class VmRunInput : public ::testing::Test {
 protected:
  std::string junk_kernel() {
    auto path = (dir_.path() / "junk-vmlinuz").string();
    std::ofstream(path) << std::string(8192, 'x');
    return path;
  }
  TempDir dir_{"flick-vm-input"};
};

TEST_F(VmRunInput, MissingKernelIsNamedBeforeKvmIsOpened) {
  auto o = run("vm run --kernel /nonexistent/vmlinuz");
  EXPECT_EQ(o.status, 1) << o.output;
  EXPECT_TRUE(mentions(o.output, "/nonexistent/vmlinuz")) << o.output;
  EXPECT_FALSE(mentions(o.output, kMissingKvm)) << o.output;
}

TEST_F(VmRunInput, MalformedKernelIsNamedBeforeKvmIsOpened) {
  auto kernel = junk_kernel();
  auto o = run("vm run --kernel " + kernel);
  EXPECT_EQ(o.status, 1) << o.output;
  EXPECT_TRUE(mentions(o.output, kernel)) << o.output;
  EXPECT_TRUE(mentions(o.output, "neither an ELF file nor a bzImage")) << o.output;
  EXPECT_FALSE(mentions(o.output, kMissingKvm)) << o.output;
}

TEST_F(VmRunInput, BadSizesAndMissingFilesAreNamed) {
  const std::string kernel = std::string("--kernel ") + FLICK_TESTGUEST_PVH;
  struct Case {
    std::string args, expected;
  } cases[] = {
      {kernel + " --memory 8", "memory must be between 16 MiB"},
      {kernel + " --memory 64 --initrd /nonexistent/initrd.img", "/nonexistent/initrd.img"},
      {kernel + " --memory 64 --disk /nonexistent/disk.img", "/nonexistent/disk.img"},
      {"--kernel " + junk_kernel() + " --memory 8", "memory must be between 16 MiB"},
  };
  for (const auto& c : cases) {
    auto o = run("vm run " + c.args);
    EXPECT_EQ(o.status, 1) << c.args << "\n" << o.output;
    EXPECT_TRUE(mentions(o.output, c.expected)) << c.args << "\n" << o.output;
    EXPECT_FALSE(mentions(o.output, kMissingKvm)) << c.args << "\n" << o.output;
  }
}

TEST_F(VmRunInput, GoodInputReachesTheKvmDeviceItWasGiven) {
  // The environment variable, then the option, which wins over it.
  auto o = run(std::string("vm run --kernel ") + FLICK_TESTGUEST_PVH + " --memory 64");
  EXPECT_EQ(o.status, 1) << o.output;
  EXPECT_TRUE(mentions(o.output, kMissingKvm)) << o.output;
  o = run(std::string("vm run --kvm-device /nonexistent/other-kvm --kernel ") + FLICK_TESTGUEST_PVH);
  EXPECT_EQ(o.status, 1) << o.output;
  EXPECT_TRUE(mentions(o.output, "/nonexistent/other-kvm")) << o.output;
}

TEST_F(VmRunInput, UsageErrorsExitTwo) {
  EXPECT_EQ(run("vm run").status, 2);
  EXPECT_EQ(run("vm run --kernel x --cpus 0").status, 2);
  EXPECT_EQ(run("vm run --bogus").status, 2);
  EXPECT_EQ(run("vm run --kernel").status, 2);
}

TEST(VmCreate, ExplainsWhatIsWrongBeforeOpeningKvm) {
  TempDir dir("flick-vm-create");
  flick::VmConfig cfg;
  cfg.kvm_device = kMissingKvm;
  cfg.kernel = "/nonexistent/kernel";
  cfg.memory_mib = 64;
  auto r = flick::Vm::create(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, flick::Errc::not_found) << r.error().describe();
  EXPECT_TRUE(mentions(r.error().describe(), "/nonexistent/kernel")) << r.error().describe();

  const auto junk = (dir.path() / "junk").string();
  std::ofstream(junk) << std::string(8192, 'x');
  cfg.kernel = junk;
  r = flick::Vm::create(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, flick::Errc::malformed) << r.error().describe();

  cfg.kernel = FLICK_TESTGUEST_PVH;
  cfg.cpus = 0;
  EXPECT_EQ(flick::Vm::create(cfg).error().code, flick::Errc::invalid_argument);
  cfg.cpus = 1;
  cfg.memory_mib = 1;
  EXPECT_EQ(flick::Vm::create(cfg).error().code, flick::Errc::invalid_argument);
  cfg.memory_mib = 64;
  cfg.initrd_append = {"/nonexistent/extra.cpio"};
  EXPECT_EQ(flick::Vm::create(cfg).error().code, flick::Errc::invalid_argument);
  cfg.initrd_append.clear();

  // Good input: now, and only now, the (missing) KVM device is opened.
  r = flick::Vm::create(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, flick::Errc::kvm_unavailable) << r.error().describe();
  EXPECT_TRUE(mentions(r.error().describe(), kMissingKvm)) << r.error().describe();
}

}  // namespace
