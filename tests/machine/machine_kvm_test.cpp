// The Machine lifecycle on this machine's /dev/kvm with the freestanding test guest as the
// kernel: it boots in milliseconds but never runs flick-init, so these are the paths where a
// machine does not start — timeouts, panics, stops and destroys while starting, and what a
// destroy must give back. Machines that run programs are tested in the test host
// (machine_linux_test.py).
#include <flick/machine.h>

#include "support/command.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace {

using namespace flick;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using flick::testing::run_command;
using flick::testing::TempDir;

// The names of this process's threads, to say which one a leak left behind.
std::string thread_names() {
  std::string names;
  for (const auto& t : fs::directory_iterator("/proc/self/task")) {
    std::string name;
    std::getline(std::ifstream(t.path() / "comm"), name);  // /proc files have no size to read by
    names += name + " ";
  }
  return names;
}

size_t entries(const fs::path& dir) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) ++n;
  return n;
}

class MachineKvm : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = run_command("python3 " FLICK_SOURCE_DIR "/scripts/busybox-image.py " + (dir_.path() / "layout").string());
    ASSERT_EQ(made.status, 0) << made.output;
    image_ = "oci:" + (dir_.path() / "layout").string() + ":latest";
    HostOptions o;
    o.state_dir = dir_.path() / "state";
    o.cache_dir = dir_.path() / "cache";
    o.run_dir = dir_.path() / "run";
    o.kernel = FLICK_TESTGUEST_PVH;
    auto host = Host::open(o);
    ASSERT_TRUE(host.ok()) << host.error().describe();
    host_ = std::move(host).value();
  }

  // A machine whose "kernel" is the test guest in `mode` (hang, panic, poweroff).
  std::unique_ptr<Machine> machine(const std::string& mode, std::chrono::milliseconds start_timeout = 60s,
                                   std::vector<MountConfig> mounts = {}, bool auto_destroy = false) {
    MachineConfig c;
    c.image = image_;
    c.guest.kernel_args = {"testguest", "mode=" + mode};
    c.start_timeout = start_timeout;
    c.mounts = std::move(mounts);
    c.auto_destroy = auto_destroy;
    auto m = host_->create(c);
    EXPECT_TRUE(m.ok()) << m.error().describe();
    return m.ok() ? std::move(m).value() : nullptr;
  }

  static std::vector<MachineEventType> types(const Machine& m) {
    std::vector<MachineEventType> out;
    for (const auto& e : m.events()) out.push_back(e.type);
    return out;
  }

  TempDir dir_{"flick-machine"};
  std::string image_;
  std::unique_ptr<Host> host_;
};

TEST_F(MachineKvm, NeverReportingStartedTimesOutIntoFailed) {
  auto m = machine("hang", 1s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->state(), MachineState::created);
  ASSERT_TRUE(m->start().ok());
  auto w = m->wait(MachineState::started, 30s);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, Errc::guest_failure);
  EXPECT_NE(w.error().message.find("did not report started within 1 s"), std::string::npos) << w.error().message;
  EXPECT_EQ(m->state(), MachineState::failed);
  ASSERT_TRUE(m->last_exit());
  EXPECT_FALSE(m->last_exit()->requested_stop);
  EXPECT_EQ(types(*m), (std::vector<MachineEventType>{MachineEventType::launch, MachineEventType::exit}));
  EXPECT_EQ(m->events().back().status, MachineState::failed);

  // failed -> starting is allowed: the same thing happens again.
  ASSERT_TRUE(m->start().ok());
  EXPECT_FALSE(m->wait(MachineState::started, 30s).ok());
  EXPECT_TRUE(m->destroy().ok());
}

TEST_F(MachineKvm, KernelPanicFailsWithTheConsoleLine) {
  auto m = machine("panic");
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->start().ok());
  auto w = m->wait(MachineState::stopped, 30s);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message.find("kernel panic"), std::string::npos) << w.error().message;
  EXPECT_NE(w.error().message.find("(console: Kernel panic - not syncing: testguest)"), std::string::npos)
      << w.error().message;
}

TEST_F(MachineKvm, PoweringOffWithoutEventsIsAFailure) {
  auto m = machine("poweroff");
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->start().ok());
  auto w = m->wait(MachineState::stopped, 30s);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message.find("powered off without reporting"), std::string::npos) << w.error().message;
}

TEST_F(MachineKvm, IllegalTransitionsAreClearErrorsAndStopEndsAStartingMachine) {
  auto m = machine("hang");
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->start().ok());
  EXPECT_EQ(m->state(), MachineState::starting);

  auto again = m->start();
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, Errc::busy);
  EXPECT_NE(again.error().message.find("is starting"), std::string::npos) << again.error().message;
  auto destroy = m->destroy();
  ASSERT_FALSE(destroy.ok());
  EXPECT_EQ(destroy.error().code, Errc::busy);
  EXPECT_NE(destroy.error().message.find("with force"), std::string::npos);
  EXPECT_EQ(m->signal(15).error().code, Errc::busy);

  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(m->stop().ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);  // not the start timeout
  EXPECT_EQ(m->state(), MachineState::stopped);
  ASSERT_TRUE(m->last_exit());
  EXPECT_TRUE(m->last_exit()->requested_stop);
  EXPECT_EQ(m->last_exit()->error, "stopped before the program started");
  EXPECT_TRUE(m->stop().ok());  // stopping a stopped machine: nothing to do
  EXPECT_EQ(types(*m), (std::vector<MachineEventType>{MachineEventType::launch, MachineEventType::stop,
                                                      MachineEventType::exit}));

  ASSERT_TRUE(m->destroy().ok());
  EXPECT_EQ(m->state(), MachineState::destroyed);
  EXPECT_EQ(m->start().error().code, Errc::busy);
  EXPECT_EQ(m->stop().error().code, Errc::busy);
  auto w = m->wait(MachineState::started, 1s);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message.find("destroyed"), std::string::npos);
  EXPECT_TRUE(m->destroy().ok());  // already gone
}

TEST_F(MachineKvm, ForcedDestroyGivesBackFilesDescriptorsThreadsAndVolumes) {
  ASSERT_TRUE(host_->create_volume({"data", 1}).ok());
  size_t fds = entries("/proc/self/fd"), threads = entries("/proc/self/task");
  auto m = machine("hang", 60s, {{"data", "/data"}});
  ASSERT_TRUE(m);
  fs::path mdir = host_->options().state_dir / "machines" / m->id();
  EXPECT_TRUE(fs::is_directory(mdir));

  // The volume belongs to this machine now.
  MachineConfig other;
  other.image = image_;
  other.mounts = {{"data", "/data"}};
  auto taken = host_->create(other);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().code, Errc::busy);
  EXPECT_NE(taken.error().message.find("volume data is in use"), std::string::npos) << taken.error().message;
  auto listed = host_->list_volumes();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].attached_machine, m->id());

  ASSERT_TRUE(m->start().ok());
  EXPECT_GT(entries("/proc/self/task"), threads);
  EXPECT_GT(entries(host_->options().run_dir), 0u);  // the vsock sockets
  std::optional<MachineNetwork> net = m->network();
  if (net) {  // the TAP exists while the VM runs, with the host's address on it
    auto ip = run_command("ip -4 -o addr show dev " + net->tap);
    EXPECT_NE(ip.output.find(net->host_address + "/30"), std::string::npos) << ip.output;
    auto link = run_command("ip -o link show dev " + net->tap);
    EXPECT_NE(link.output.find(",UP"), std::string::npos) << link.output;
  }
  ASSERT_TRUE(m->destroy(/*force=*/true).ok());
  EXPECT_EQ(m->state(), MachineState::destroyed);
  EXPECT_EQ(m->events().back().type, MachineEventType::destroy);

  EXPECT_FALSE(fs::exists(mdir));
  if (net) {
    EXPECT_FALSE(fs::exists("/sys/class/net/" + net->tap));
  }
  for (const auto& e : fs::directory_iterator(host_->options().run_dir))
    EXPECT_EQ(e.path().filename().string().find(m->id()), std::string::npos) << e.path();
  EXPECT_EQ(entries("/proc/self/fd"), fds);
  // A joined thread can stay listed for a moment while the kernel finishes its exit.
  for (int i = 0; i < 100 && entries("/proc/self/task") != threads; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(entries("/proc/self/task"), threads) << thread_names();
  listed = host_->list_volumes();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ((*listed)[0].attached_machine, "");
  auto next = host_->create(other);
  EXPECT_TRUE(next.ok()) << next.error().describe();
}

TEST_F(MachineKvm, AutoDestroyRemovesAFailedMachine) {
  auto m = machine("poweroff", 60s, {}, /*auto_destroy=*/true);
  ASSERT_TRUE(m);
  fs::path mdir = host_->options().state_dir / "machines" / m->id();
  ASSERT_TRUE(m->start().ok());
  auto w = m->wait(MachineState::destroyed, 30s);
  ASSERT_TRUE(w.ok()) << w.error().describe();
  EXPECT_FALSE(fs::exists(mdir));
  EXPECT_EQ(m->events().back().type, MachineEventType::destroy);
}

TEST_F(MachineKvm, UnknownImageAndMissingKvmAreClearErrors) {
  MachineConfig c;
  c.image = "oci:" + (dir_.path() / "nothing").string() + ":latest";
  auto m = host_->create(c);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("not an OCI image layout"), std::string::npos) << m.error().message;

  HostOptions o = host_->options();
  o.kvm_device = (dir_.path() / "no-kvm").string();
  auto host = Host::open(o);
  ASSERT_TRUE(host.ok());
  c.image = image_;
  c.guest.kernel_args = {"testguest", "mode=hang"};
  auto machine = (*host)->create(c);
  ASSERT_TRUE(machine.ok()) << machine.error().describe();
  auto started = (*machine)->start();
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().code, Errc::kvm_unavailable) << started.error().describe();
  EXPECT_EQ((*machine)->state(), MachineState::created);  // unchanged
  for (const auto& e : fs::directory_iterator(o.run_dir))  // and nothing left behind
    EXPECT_EQ(e.path().filename().string().find((*machine)->id()), std::string::npos) << e.path();
}

}  // namespace
