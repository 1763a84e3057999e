// RunSpec and ExitStatus as the starting process writes them and flick-vmm reads them.
#include "runner/control.h"
#include "runner/run_spec.h"

#include <gtest/gtest.h>

namespace {

using namespace flick;
using namespace flick::runner;

TEST(RunSpec, RoundTripsEveryField) {
  RunSpec s;
  s.machine_id = "0123456789abcd";
  s.store = "/state/flick.db";
  s.machine_dir = "/state/machines/0123456789abcd";
  s.lock_path = s.machine_dir + "/run.lock";
  s.control_path = "/run/flick/0123456789abcd.ctl";
  s.console_log = s.machine_dir + "/console.log";
  s.output_log = s.machine_dir + "/output.log";
  s.vm.kernel = "/k";
  s.vm.initrd = "/i";
  s.vm.initrd_append = {"/a", "/b"};
  s.vm.cmdline = "console=ttyS0 x=\"y z\"";
  s.vm.cpus = 3;
  s.vm.memory_mib = 700;
  s.vm.kvm_device = "/dev/kvm";
  s.vm.disks = {{"/r", false, true, "/o", "rootfs"}, {"/v", true, false, "", "data"}};
  s.vm.nets = {{"flk0", "52:54:00:00:00:01"}};
  s.vm.vsock = VsockConfig{"/run/v.vsock", 3};
  s.vm.rng = false;
  s.network = MachineNetwork{"flk0", "172.19.0.1", "172.19.0.2", 30};
  s.restart = {RestartPolicy::on_failure, 7};
  s.stop = {15, std::chrono::milliseconds(2500)};
  s.start_timeout = std::chrono::milliseconds(90000);
  s.auto_destroy = true;

  auto back = RunSpec::from_json(s.to_json());
  ASSERT_TRUE(back.ok()) << back.error().describe();
  EXPECT_EQ(back->to_json(), s.to_json());
  EXPECT_EQ(back->vm.disks[1].serial, "data");
  EXPECT_TRUE(back->vm.disks[0].copy_on_write);
  EXPECT_EQ(back->restart.policy, RestartPolicy::on_failure);
  EXPECT_EQ(back->restart.max_retries, 7u);
  EXPECT_EQ(back->network->guest_address, "172.19.0.2");
  EXPECT_EQ(back->output_log, s.output_log);
  s.output_log.clear();  // older specs have none: no second serial port
  EXPECT_EQ(RunSpec::from_json(s.to_json())->output_log, "");
}

TEST(RunSpec, DamageIsAClearError) {
  auto r = RunSpec::from_json("{\"machine_id\":1}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::malformed);
  EXPECT_NE(r.error().message.find("run spec"), std::string::npos);
  EXPECT_FALSE(RunSpec::from_json("").ok());
}

TEST(ExitStatusJson, RoundTrips) {
  ExitStatus e{3, 9, true, true, "the guest ended: crash"};
  auto back = parse_exit_status(exit_status_json(e));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->exit_code, 3);
  EXPECT_EQ(back->signal, 9);
  EXPECT_TRUE(back->oom_killed);
  EXPECT_TRUE(back->requested_stop);
  EXPECT_EQ(back->error, "the guest ended: crash");
  EXPECT_FALSE(parse_exit_status("[").ok());
}

TEST(ControlHello, AgreesOnTheHighestCommonVersionOrSaysWhatItSpeaks) {
  int agreed = -1;
  EXPECT_NE(control_hello_reply(1, 9, &agreed).find("\"ok\":true"), std::string::npos);
  EXPECT_EQ(agreed, kControlProtocolMax);
  std::string no = control_hello_reply(kControlProtocolMax + 1, kControlProtocolMax + 5, &agreed);
  EXPECT_EQ(agreed, 0);
  EXPECT_NE(no.find("this flick-vmm speaks"), std::string::npos) << no;
  control_hello_reply(0, 0, &agreed);
  EXPECT_EQ(agreed, 0);
}

}  // namespace
