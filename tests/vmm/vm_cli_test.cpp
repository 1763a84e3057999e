// `flick vm run` as a user runs it: exit status and the one-line reason.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

namespace {

struct Output {
  int status = -1;
  std::string text;  // stdout and stderr
};

Output run(const std::string& args) {
  Output o;
  std::string cmd = std::string(FLICK_CLI) + " " + args + " 2>&1 </dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return o;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) o.text.append(buf.data(), n);
  int st = ::pclose(p);
  o.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return o;
}

bool kvm_usable() { return ::access("/dev/kvm", R_OK | W_OK) == 0; }

TEST(VmRunCommand, PowerOffExitsZeroAndReportsTheBootTime) {
  if (!kvm_usable()) GTEST_SKIP();
  auto o = run(std::string("vm run --kernel ") + FLICK_TESTGUEST_BZIMAGE +
               " --cmdline 'testguest cpus=2 mem=64' --cpus 2 --memory 64 --boot-time");
  EXPECT_EQ(o.status, 0) << o.text;
  EXPECT_NE(o.text.find("flick-testguest: PASS"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("us to the boot timer"), std::string::npos) << o.text;
}

TEST(VmRunCommand, GuestCrashExitsNonZeroWithOneLineReason) {
  if (!kvm_usable()) GTEST_SKIP();
  auto o = run(std::string("vm run --kernel ") + FLICK_TESTGUEST_PVH + " --cmdline 'testguest mode=triplefault'");
  EXPECT_EQ(o.status, 1) << o.text;
  EXPECT_NE(o.text.find("flick: guest ended: "), std::string::npos) << o.text;
}

TEST(VmRunCommand, TimeoutStopsAHungGuest) {
  if (!kvm_usable()) GTEST_SKIP();
  auto o = run(std::string("vm run --kernel ") + FLICK_TESTGUEST_PVH + " --cmdline 'testguest mode=hang' --timeout 1");
  EXPECT_EQ(o.status, 1) << o.text;
  EXPECT_NE(o.text.find("timed out after 1 s"), std::string::npos) << o.text;
}

TEST(VmRunCommand, BadInputGivesAClearErrorAndUsageErrorsExitTwo) {
  auto o = run("vm run --kernel /nonexistent/vmlinuz");
  EXPECT_EQ(o.status, 1);
  EXPECT_NE(o.text.find("/nonexistent"), std::string::npos) << o.text;
  EXPECT_EQ(run("vm run").status, 2);
  EXPECT_EQ(run("vm run --kernel x --cpus 0").status, 2);
  EXPECT_EQ(run("vm run --bogus").status, 2);
}

}  // namespace
