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

TEST(VmRunCommand, PowerOffExitsZeroAndReportsTheBootTime) {
  auto o = run(std::string("vm run --kernel ") + FLICK_TESTGUEST_BZIMAGE +
               " --cmdline 'testguest cpus=2 mem=64' --cpus 2 --memory 64 --boot-time");
  EXPECT_EQ(o.status, 0) << o.output;
  EXPECT_NE(o.output.find("flick-testguest: PASS"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("us to the boot timer"), std::string::npos) << o.output;
}

TEST(VmRunCommand, GuestCrashExitsNonZeroWithOneLineReason) {
  auto o = run(std::string("vm run --kernel ") + FLICK_TESTGUEST_PVH + " --cmdline 'testguest mode=triplefault'");
  EXPECT_EQ(o.status, 1) << o.output;
  EXPECT_NE(o.output.find("flick: guest ended: "), std::string::npos) << o.output;
}

TEST(VmRunCommand, TimeoutStopsAHungGuest) {
  auto o = run(std::string("vm run --kernel ") + FLICK_TESTGUEST_PVH + " --cmdline 'testguest mode=hang' --timeout 1");
  EXPECT_EQ(o.status, 1) << o.output;
  EXPECT_NE(o.output.find("timed out after 1 s"), std::string::npos) << o.output;
}

TEST(VmRunCommand, DumpSignalWritesEachVcpusState) {
  // As the test host's watchdog does: a stuck guest, then the dump signal, then a stop.
  const std::string script =
      "out=$(mktemp); FLICK_DUMP_SIGNAL=SIGUSR2 " + std::string(FLICK_CLI) + " vm run --kernel " +
      FLICK_TESTGUEST_PVH + " --cmdline 'testguest mode=hang' --timeout 120 >$out 2>&1 </dev/null & pid=$!; "
      "i=0; until grep -q 'flick-testguest: PASS' $out || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done; "
      "sleep 0.2; kill -USR2 $pid; "
      "i=0; until grep -q 'flick-dump: end' $out || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done; "
      "kill -INT $pid; wait $pid; echo status=$?; cat $out; rm -f $out";
  auto o = flick::testing::run_command(script);
  EXPECT_NE(o.output.find("status=1"), std::string::npos) << o.output;  // stopped, not killed by the signal
  EXPECT_NE(o.output.find("flick-dump: process "), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("flick-dump: vm 1: vcpu 0 (running,"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("(IF=0)"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("flick-dump: end"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("interrupted by signal"), std::string::npos) << o.output;
}

}  // namespace
