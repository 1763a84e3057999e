// The Machine lifecycle on this machine's /dev/kvm with the freestanding test guest as the
// kernel: it boots in milliseconds but never runs flick-init, so these are the paths where a
// machine does not start — timeouts, panics, stops and destroys while starting, what a
// destroy must give back — and the process model: runs that outlive the process that started
// them, processes racing each other, and runs killed at the worst moment. Machines that run
// programs are tested in the test host (machine_linux_test.py).
#include <flick/machine.h>

#include "runner/control.h"
#include "store/machine_store.h"
#include "support/command.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
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
    o.vmm_program = FLICK_VMM_PROGRAM;
    auto host = Host::open(o);
    ASSERT_TRUE(host.ok()) << host.error().describe();
    host_ = std::move(host).value();
  }

  // Runs outlive handles: end every one this test left, so no flick-vmm outlives the test.
  void TearDown() override {
    if (!host_) return;
    if (HasFailure()) {  // what each run said about itself
      std::error_code ec;
      for (const auto& d : fs::directory_iterator(host_->options().state_dir / "machines", ec)) {
        std::ifstream log(d.path() / "vmm.log");
        std::stringstream text;
        text << log.rdbuf();
        if (!text.str().empty()) std::printf("--- %s/vmm.log\n%s\n", d.path().c_str(), text.str().c_str());
      }
    }
    if (auto all = host_->list(); all.ok())
      for (auto& m : *all) (void)m->destroy(/*force=*/true);
  }

  // Whether a run holds the machine's lock (/proc/locks lists it while any process does).
  bool run_locked(const std::string& id) {
    struct stat st{};
    fs::path lock = host_->options().state_dir / "machines" / id / "run.lock";
    if (::stat(lock.c_str(), &st) != 0) return false;
    std::ifstream locks("/proc/locks");
    std::string inode = ":" + std::to_string(st.st_ino) + " ";
    for (std::string line; std::getline(locks, line);)
      if (line.find(inode) != std::string::npos) return true;
    return false;
  }

  // Gone, or a zombie its new parent has not reaped yet.
  static bool ended(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(stat, text)) return true;
    size_t paren = text.rfind(')');
    return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'Z';
  }

  std::unique_ptr<Host> another_host() {
    auto h = Host::open(host_->options());
    EXPECT_TRUE(h.ok()) << h.error().describe();
    return h.ok() ? std::move(h).value() : nullptr;
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
  EXPECT_NE(w.error().message.find("did not report started within 1s"), std::string::npos) << w.error().message;
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

// While a lease is held, only its nonce starts, stops or updates the machine, from any
// process; the machine's own run records its states all the same. An update of a running
// machine stops it and starts the new version.
TEST_F(MachineKvm, ALeasedMachineObeysItsHolderAndAnUpdateRestartsIt) {
  auto m = machine("hang");
  ASSERT_TRUE(m);
  auto lease = m->acquire_lease(60s, "kvm test");
  ASSERT_TRUE(lease.ok()) << lease.error().describe();
  auto other = another_host();
  ASSERT_TRUE(other);
  auto theirs = other->get(m->id());
  ASSERT_TRUE(theirs.ok());
  EXPECT_EQ((*theirs)->start().error().code, Errc::lease_held);
  ASSERT_TRUE(m->start().ok());
  EXPECT_EQ((*theirs)->stop().error().code, Errc::lease_held);
  EXPECT_EQ((*theirs)->destroy(/*force=*/true).error().code, Errc::lease_held);
  EXPECT_EQ(m->state(), MachineState::starting);

  MachineConfig next = m->config();
  next.env["VERSION"] = "2";
  auto updated = m->update(next);
  ASSERT_TRUE(updated.ok()) << updated.error().describe();
  EXPECT_EQ(m->version(), 2u);
  EXPECT_EQ(m->state(), MachineState::starting);  // the new version's run
  EXPECT_TRUE(run_locked(m->id()));
  ASSERT_TRUE(m->stop().ok());
  EXPECT_EQ(m->state(), MachineState::stopped);
  EXPECT_EQ(types(*m), (std::vector<MachineEventType>{MachineEventType::launch, MachineEventType::stop,
                                                      MachineEventType::exit, MachineEventType::update,
                                                      MachineEventType::stop, MachineEventType::exit}));
  ASSERT_TRUE(m->release_lease(lease->nonce).ok());
  ASSERT_TRUE((*theirs)->destroy().ok());
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
  EXPECT_TRUE(run_locked(m->id()));           // a run of its own: flick-vmm
  EXPECT_GT(entries(host_->options().run_dir), 0u);  // its control and vsock sockets
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
  EXPECT_FALSE(run_locked(m->id()));
  EXPECT_EQ(entries("/proc/self/fd"), fds);
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

TEST_F(MachineKvm, RunsOutliveTheProcessThatStartedThemAndAnotherHostStopsThem) {
  // A child process creates and starts three machines, says which, and is killed.
  int ids_pipe[2];
  ASSERT_EQ(::pipe(ids_pipe), 0);
  pid_t creator = ::fork();
  ASSERT_GE(creator, 0);
  if (creator == 0) {
    auto h = Host::open(host_->options());
    std::string ids;
    for (int i = 0; h.ok() && i < 3; ++i) {
      MachineConfig c;
      c.image = image_;
      c.guest.kernel_args = {"testguest", "mode=hang"};
      c.start_timeout = 300s;
      auto m = (*h)->create(c);
      if (!m.ok() || !(*m)->start().ok()) ::_exit(1);
      ids += (*m)->id() + "\n";
    }
    (void)!::write(ids_pipe[1], ids.data(), ids.size());
    ::pause();
  }
  ::close(ids_pipe[1]);
  std::string ids;
  char buf[256];
  // Until three ids or the creator's end (it keeps its end open while it waits to be killed).
  for (ssize_t n; std::count(ids.begin(), ids.end(), '\n') < 3 && (n = ::read(ids_pipe[0], buf, sizeof buf)) > 0;)
    ids.append(buf, static_cast<size_t>(n));
  ::close(ids_pipe[0]);
  ::kill(creator, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(creator, &status, 0), creator);
  ASSERT_EQ(std::count(ids.begin(), ids.end(), '\n'), 3) << "the creator failed: " << ids;

  auto other = another_host();
  ASSERT_TRUE(other);
  auto listed = other->list();
  ASSERT_TRUE(listed.ok()) << listed.error().describe();
  ASSERT_EQ(listed->size(), 3u);
  for (auto& m : *listed) {
    EXPECT_NE(ids.find(m->id()), std::string::npos);
    EXPECT_EQ(m->state(), MachineState::starting) << m->id();  // still running, unwatched
    EXPECT_TRUE(run_locked(m->id()));
  }
  for (auto& m : *listed) {
    ASSERT_TRUE(m->stop().ok());
    EXPECT_EQ(m->state(), MachineState::stopped);
    EXPECT_FALSE(run_locked(m->id()));
    // Seen the same from a third handle, events included.
    auto seen = host_->get(m->id());
    ASSERT_TRUE(seen.ok());
    EXPECT_EQ((*seen)->state(), MachineState::stopped);
    EXPECT_EQ(types(**seen), (std::vector<MachineEventType>{MachineEventType::launch, MachineEventType::stop,
                                                           MachineEventType::exit}));
    ASSERT_TRUE(m->destroy().ok());
  }
}

TEST_F(MachineKvm, RacingStartsHaveOneWinnerAndClearErrorsForTheRest) {
  auto m = machine("hang", 300s);
  ASSERT_TRUE(m);
  constexpr int kRacers = 4;
  std::vector<pid_t> racers;
  int results[2];
  ASSERT_EQ(::pipe(results), 0);
  for (int i = 0; i < kRacers; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto h = Host::open(host_->options());
      auto mine = h.ok() ? (*h)->get(m->id()) : Result<std::unique_ptr<Machine>>(h.error());
      auto r = mine.ok() ? (*mine)->start() : Result<void>(mine.error());
      std::string line = r.ok() ? "ok\n" : std::string(to_string(r.error().code)) + " " + r.error().message + "\n";
      (void)!::write(results[1], line.data(), line.size());
      ::_exit(0);
    }
    racers.push_back(pid);
  }
  ::close(results[1]);
  for (pid_t p : racers) ::waitpid(p, nullptr, 0);
  std::string out;
  char buf[1024];
  for (ssize_t n; (n = ::read(results[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(results[0]);
  std::istringstream lines(out);
  int wins = 0, clear = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line == "ok") ++wins;
    else if (line.rfind("busy ", 0) == 0 &&
             (line.find("is starting") != std::string::npos || line.find("has a run") != std::string::npos))
      ++clear;
    else ADD_FAILURE() << line;
  }
  EXPECT_EQ(wins, 1) << out;
  EXPECT_EQ(clear, kRacers - 1) << out;
  EXPECT_EQ(m->state(), MachineState::starting);
  ASSERT_TRUE(m->destroy(/*force=*/true).ok());
}

TEST_F(MachineKvm, AKilledVmProcessIsRecordedWithTheReason) {
  auto m = machine("hang", 300s);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->start().ok());
  std::string ctl = (host_->options().run_dir / (m->id() + ".ctl")).string();
  auto control = runner::ControlClient::connect(ctl);
  ASSERT_TRUE(control.ok()) << control.error().describe();
  auto status = control->status();
  ASSERT_TRUE(status.ok()) << status.error().describe();
  ASSERT_GT(status->vmm_pid, 0);
  ASSERT_EQ(::kill(status->vmm_pid, SIGKILL), 0);

  auto w = m->wait(MachineState::stopped, 30s);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, Errc::guest_failure);
  EXPECT_NE(w.error().message.find("the VM process ended without saying how the run ended (killed by"),
            std::string::npos)
      << w.error().message;
  EXPECT_EQ(m->state(), MachineState::failed);
  for (int i = 0; i < 100 && run_locked(m->id()); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(run_locked(m->id()));  // the monitor ended too: nothing to restart
  EXPECT_FALSE(fs::exists(ctl));
}

TEST_F(MachineKvm, AKilledMonitorTakesItsVmAlongAndTheNextHostSettlesTheMachine) {
  auto m = machine("hang", 300s);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->start().ok());
  auto control = runner::ControlClient::connect(host_->options().run_dir / (m->id() + ".ctl"));
  ASSERT_TRUE(control.ok()) << control.error().describe();
  auto status = control->status();
  ASSERT_TRUE(status.ok());
  pid_t vm = status->vmm_pid, monitor = status->monitor_pid;
  ASSERT_GT(vm, 0);
  ASSERT_GT(monitor, 0);
  ASSERT_NE(monitor, ::getpid());
  ASSERT_EQ(::kill(monitor, SIGKILL), 0);
  // The VM process dies with its monitor (PR_SET_PDEATHSIG): no run is left unsupervised.
  // Its files (the lock among them) close a moment before it turns into a zombie: wait for both.
  for (int i = 0; i < 250 && (run_locked(m->id()) || !ended(vm)); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(run_locked(m->id()));
  EXPECT_TRUE(ended(vm)) << "the VM process " << vm << " outlived its monitor";

  auto other = another_host();  // opening settles what no one recorded
  ASSERT_TRUE(other);
  auto seen = other->get(m->id());
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ((*seen)->state(), MachineState::failed);
  ASSERT_TRUE((*seen)->last_exit());
  EXPECT_NE((*seen)->last_exit()->error.find("flick-vmm was killed"), std::string::npos);
  auto db = store::MachineStore::open(host_->options().state_dir / "flick.db");
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(*db->integrity_check(), "ok");
  // And it can start again.
  ASSERT_TRUE((*seen)->start().ok());
  ASSERT_TRUE((*seen)->destroy(true).ok());
}

TEST_F(MachineKvm, TheControlProtocolVersionIsNegotiated) {
  auto m = machine("hang", 300s);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->start().ok());
  fs::path ctl = host_->options().run_dir / (m->id() + ".ctl");
  // A newer client that also speaks version 1 gets version 1.
  auto newer = runner::ControlClient::connect(ctl, 1, runner::kControlProtocolMax + 3);
  ASSERT_TRUE(newer.ok()) << newer.error().describe();
  EXPECT_EQ(newer->version(), runner::kControlProtocolMax);
  EXPECT_TRUE(newer->status().ok());
  // One that speaks only later versions is refused, saying what the run speaks.
  auto future = runner::ControlClient::connect(ctl, runner::kControlProtocolMax + 1, runner::kControlProtocolMax + 2);
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(future.error().code, Errc::unsupported);
  EXPECT_NE(future.error().message.find("this flick-vmm speaks 1..1"), std::string::npos) << future.error().message;
  // Unknown ops and bad requests are errors, not a dead run.
  auto bad = newer->call(R"({"op":"teleport"})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("unknown op"), std::string::npos);
  EXPECT_FALSE(newer->call("not json").ok());
  EXPECT_TRUE(newer->status().ok());
  ASSERT_TRUE(m->destroy(true).ok());
}

}  // namespace
