// `flick vm run` as a user runs it: exit status and the one-line reason.
#include "support/command.h"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

namespace {

using Output = flick::testing::CommandResult;

// Runs the flick command with `args` (a shell fragment), stdin from /dev/null.
Output run(const std::string& args) {
  return flick::testing::run_command(std::string(FLICK_CLI) + " " + args + " </dev/null");
}

bool kvm_usable() { return ::access("/dev/kvm", R_OK | W_OK) == 0; }

TEST(VmRunCommand, PowerOffExitsZeroAndReportsTheBootTime) {
  if (!kvm_usable()) GTEST_SKIP();
  auto o = run(std::string("vm run --kernel ") + FLICK_TESTGUEST_BZIMAGE +
               " --cmdline 'testguest cpus=2 mem=64' --cpus 2 --memory 64 --boot-time");
  EXPECT_EQ(o.status, 0) << o.output;
  EXPECT_NE(o.output.find("flick-testguest: PASS"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("us to the boot timer"), std::string::npos) << o.output;
}

TEST(VmRunCommand, GuestCrashExitsNonZeroWithOneLineReason) {
  if (!kvm_usable()) GTEST_SKIP();
  auto o = run(std::string("vm run --kernel ") + FLICK_TESTGUEST_PVH + " --cmdline 'testguest mode=triplefault'");
  EXPECT_EQ(o.status, 1) << o.output;
  EXPECT_NE(o.output.find("flick: guest ended: "), std::string::npos) << o.output;
}

TEST(VmRunCommand, TimeoutStopsAHungGuest) {
  if (!kvm_usable()) GTEST_SKIP();
  auto o = run(std::string("vm run --kernel ") + FLICK_TESTGUEST_PVH + " --cmdline 'testguest mode=hang' --timeout 1");
  EXPECT_EQ(o.status, 1) << o.output;
  EXPECT_NE(o.output.find("timed out after 1 s"), std::string::npos) << o.output;
}

TEST(VmRunCommand, BadInputGivesAClearErrorAndUsageErrorsExitTwo) {
  auto o = run("vm run --kernel /nonexistent/vmlinuz");
  EXPECT_EQ(o.status, 1);
  EXPECT_NE(o.output.find("/nonexistent"), std::string::npos) << o.output;
  EXPECT_EQ(run("vm run").status, 2);
  EXPECT_EQ(run("vm run --kernel x --cpus 0").status, 2);
  EXPECT_EQ(run("vm run --bogus").status, 2);
}

}  // namespace
