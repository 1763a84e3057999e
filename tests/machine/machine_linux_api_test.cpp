// Machines running real programs: Debian's cloud kernel, flick-init and a busybox image.
// Runs inside the test host (or on a real KVM host), driven by machine_linux_test.py, which
// passes FLICK_TEST_IMAGE, FLICK_TEST_KERNEL and FLICK_TEST_MODULES.
#include <flick/machine.h>

#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

namespace {

using namespace flick;
using namespace std::chrono_literals;
using flick::testing::TempDir;

constexpr auto kBoot = 300s;  // a boot under TCG emulation can take a while

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// What a machine printed, to wait for and search in.
class Console {
 public:
  MachineHandlers handlers() {
    MachineHandlers h;
    h.console = [this](std::string_view s) {
      std::lock_guard lk(mu_);
      text_.append(s);
      cv_.notify_all();
    };
    h.output = [this](std::string_view s) {
      std::lock_guard lk(mu_);
      output_.append(s);
      cv_.notify_all();
    };
    return h;
  }
  bool wait_for_output(const std::string& needle, std::chrono::seconds timeout = 30s) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return output_.find(needle) != std::string::npos; });
  }
  std::string output() const {  // the program's own output
    std::lock_guard lk(mu_);
    return output_;
  }
  bool wait_for(const std::string& needle, std::chrono::seconds timeout = kBoot) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return text_.find(needle) != std::string::npos; });
  }
  size_t count(const std::string& needle) const {
    std::lock_guard lk(mu_);
    size_t n = 0;
    for (size_t at = text_.find(needle); at != std::string::npos; at = text_.find(needle, at + 1)) ++n;
    return n;
  }
  std::string text() const {
    std::lock_guard lk(mu_);
    return text_;
  }
  void clear() {
    std::lock_guard lk(mu_);
    text_.clear();
    output_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string text_, output_;
};

class MachineLinux : public ::testing::Test {
 protected:
  void SetUp() override {
    if (env("FLICK_TEST_KERNEL").empty()) GTEST_SKIP() << "run by machine_linux_test.py";
    HostOptions o;
    o.state_dir = dir_.path() / "state";
    o.cache_dir = dir_.path() / "cache";
    o.run_dir = dir_.path() / "run";
    o.kernel = env("FLICK_TEST_KERNEL");
    o.kernel_modules = env("FLICK_TEST_MODULES");
    auto host = Host::open(o);
    ASSERT_TRUE(host.ok()) << host.error().describe();
    host_ = std::move(host).value();
  }

  std::unique_ptr<Machine> machine(const std::string& script, MachineConfig c = {}) {
    c.image = env("FLICK_TEST_IMAGE");
    c.init.cmd = {"sh", "-c", script};
    c.start_timeout = kBoot;
    auto m = host_->create(c, console_.handlers());
    EXPECT_TRUE(m.ok()) << m.error().describe();
    return m.ok() ? std::move(m).value() : nullptr;
  }

  static size_t count(const Machine& m, MachineEventType type) {
    size_t n = 0;
    for (const auto& e : m.events()) n += e.type == type;
    return n;
  }

  TempDir dir_{"flick-machine-linux"};
  std::unique_ptr<Host> host_;
  Console console_;
};

TEST_F(MachineLinux, RootIsABlankSlateOnEveryStartAndVolumesKeepTheirData) {
  ASSERT_TRUE(host_->create_volume({"data", 1}).ok());
  MachineConfig c;
  c.mounts = {{"data", "/data"}};
  const std::string script =
      "test -e /marker && echo root-kept; echo \"volume-runs=$(cat /data/runs 2>/dev/null | wc -l)\";"
      "echo x > /marker; echo x >> /data/runs; echo done";
  auto m = machine(script, c);
  ASSERT_TRUE(m);
  for (int run = 0; run < 2; ++run) {
    console_.clear();
    ASSERT_TRUE(m->start().ok());
    ASSERT_TRUE(m->wait(MachineState::stopped, kBoot).ok()) << console_.text();
    EXPECT_EQ(console_.count("root-kept"), 0u) << console_.text();
    EXPECT_EQ(console_.count("volume-runs=" + std::to_string(run)), 1u) << console_.text();
    // The program's output comes apart from the kernel's and flick-init's, and in the console too.
    EXPECT_TRUE(console_.wait_for("reboot: Power down", 30s)) << console_.text();
    EXPECT_TRUE(console_.wait_for_output("done")) << console_.output();
    EXPECT_NE(console_.output().find("volume-runs=" + std::to_string(run)), std::string::npos) << console_.output();
    EXPECT_EQ(console_.output().find("reboot: Power down"), std::string::npos) << console_.output();
    EXPECT_EQ(console_.output().find("flick-init"), std::string::npos) << console_.output();
    ASSERT_TRUE(m->last_exit());
    EXPECT_TRUE(m->last_exit()->success()) << m->last_exit()->error;
  }
  EXPECT_EQ(count(*m, MachineEventType::start), 2u);
  EXPECT_EQ(count(*m, MachineEventType::exit), 2u);
  ASSERT_TRUE(m->destroy().ok());

  // The data outlives the machine that wrote it.
  console_.clear();
  auto next = machine(script, c);
  ASSERT_TRUE(next);
  ASSERT_TRUE(next->start().ok());
  ASSERT_TRUE(next->wait(MachineState::stopped, kBoot).ok());
  EXPECT_EQ(console_.count("volume-runs=2"), 1u) << console_.text();
}

TEST_F(MachineLinux, StopIsGracefulThenForcedAfterTheTimeout) {
  MachineConfig c;
  c.stop_config = {SIGINT, 2s};
  auto stubborn = machine("trap '' INT; echo ready; while true; do sleep 1; done", c);
  ASSERT_TRUE(stubborn);
  ASSERT_TRUE(stubborn->start().ok());
  ASSERT_TRUE(stubborn->wait(MachineState::started, kBoot).ok());
  ASSERT_TRUE(console_.wait_for("ready"));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(stubborn->stop().ok());
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 2s);
  EXPECT_EQ(stubborn->state(), MachineState::stopped);
  ASSERT_TRUE(stubborn->last_exit());
  EXPECT_EQ(stubborn->last_exit()->signal, SIGKILL);
  EXPECT_TRUE(stubborn->last_exit()->requested_stop);
  EXPECT_EQ(count(*stubborn, MachineEventType::stop), 1u);

  console_.clear();
  auto polite = machine("trap 'echo got-int; exit 0' INT; echo ready; while true; do sleep 1; done", c);
  ASSERT_TRUE(polite);
  ASSERT_TRUE(polite->start().ok());
  ASSERT_TRUE(console_.wait_for("ready"));
  ASSERT_TRUE(polite->stop().ok());
  EXPECT_TRUE(console_.wait_for("got-int", 1s)) << console_.text();
  ASSERT_TRUE(polite->last_exit());
  EXPECT_EQ(polite->last_exit()->exit_code, 0);
  EXPECT_TRUE(polite->last_exit()->requested_stop);
}

TEST_F(MachineLinux, RestartOnFailureRetriesMaxRetriesTimes) {
  MachineConfig c;
  c.restart = {RestartPolicy::on_failure, 2};
  auto m = machine("echo attempt; exit 1", c);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->start().ok());
  // Restarts go from stopping straight to starting: `stopped` means it has given up.
  ASSERT_TRUE(m->wait(MachineState::stopped, 3 * kBoot).ok());
  EXPECT_EQ(console_.count("attempt"), 3u) << console_.text();
  EXPECT_EQ(count(*m, MachineEventType::restart), 2u);
  EXPECT_EQ(count(*m, MachineEventType::exit), 3u);
  ASSERT_TRUE(m->last_exit());
  EXPECT_EQ(m->last_exit()->exit_code, 1);
  EXPECT_EQ(m->events().back().detail, "");
  EXPECT_EQ(m->events().back().status, MachineState::stopped);
}

TEST_F(MachineLinux, SignalsReachTheProgramAndTheStartIsTimed) {
  auto m = machine("trap 'echo got-usr1; exit 7' USR1; echo ready; while true; do sleep 1; done");
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->start().ok());
  ASSERT_TRUE(console_.wait_for("ready"));
  EXPECT_EQ(m->state(), MachineState::started);
  ASSERT_TRUE(m->signal(SIGUSR1).ok());
  ASSERT_TRUE(m->wait(MachineState::stopped, kBoot).ok());
  ASSERT_TRUE(m->last_exit());
  EXPECT_EQ(m->last_exit()->exit_code, 7);
  EXPECT_FALSE(m->last_exit()->requested_stop);

  auto t = m->last_start_timings();
  ASSERT_TRUE(t && t->boot_timer && t->started);
  EXPECT_GT(t->vm_created.count(), 0);
  EXPECT_LE(t->vm_created, *t->boot_timer);
  EXPECT_LE(*t->boot_timer, *t->started);
}

TEST_F(MachineLinux, OutOfMemoryIsReported) {
  MachineConfig c;
  c.guest.memory_mb = 128;
  // tail keeps growing its buffer looking for a newline: the kernel kills it, the shell goes on.
  auto m = machine("tail /dev/zero; echo tail-status=$?", c);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->start().ok());
  ASSERT_TRUE(m->wait(MachineState::stopped, kBoot).ok()) << console_.text();
  ASSERT_TRUE(m->last_exit());
  EXPECT_TRUE(m->last_exit()->oom_killed) << console_.text();
  EXPECT_EQ(console_.count("tail-status=137"), 1u) << console_.text();
}

// An HTTP GET of http://address:port/ from the host; the whole response, or "" on failure.
std::string http_get(const std::string& address, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
  std::string response;
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
    std::string req = "GET / HTTP/1.0\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) response.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return response;
}

TEST_F(MachineLinux, TheHostAndTheGuestReachEachOther) {
  auto m = machine(
      "mkdir -p /www && echo served-by-guest > /www/index.html &&"
      "ping -c 1 -W 10 host.flick.internal >/dev/null && echo ping-ok;"
      "ip -4 -o addr show dev eth0; exec httpd -f -p 8080 -h /www");
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->network()) << "the test host runs as root: machines get a network";
  const MachineNetwork net = *m->network();
  ASSERT_TRUE(m->start().ok());
  ASSERT_TRUE(console_.wait_for("inet " + net.guest_address + "/30")) << console_.text();
  EXPECT_EQ(console_.count("ping-ok"), 1u) << console_.text();
  std::string response;
  for (int i = 0; i < 50 && response.find("served-by-guest") == std::string::npos; ++i) {
    response = http_get(net.guest_address, 8080);  // httpd may still be starting
    if (response.empty()) std::this_thread::sleep_for(200ms);
  }
  EXPECT_NE(response.find("served-by-guest"), std::string::npos) << response;
  ASSERT_TRUE(m->stop().ok());
  EXPECT_FALSE(std::filesystem::exists("/sys/class/net/" + net.tap));  // the TAP went with the VM
}

// Fly's update of a started machine: stopped, given the new config (a new version and
// instance_id) and started on it; the guest reads its metadata in /flick/metadata.json, as of
// each start. A clone of it runs the same config under its own id.
TEST_F(MachineLinux, UpdateRestartsOntoTheNewConfigAndTheGuestSeesItsMetadata) {
  MachineConfig c;
  c.env["GREETING"] = "one";
  c.metadata["role"] = "web";
  auto m = machine("cat /flick/metadata.json; echo; echo greeting=$GREETING; while true; do sleep 1; done", c);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->start().ok());
  ASSERT_TRUE(console_.wait_for("greeting=one")) << console_.text();
  const std::string first = m->instance_id();
  EXPECT_EQ(console_.count("\"instance_id\":\"" + first + "\""), 1u) << console_.text();
  EXPECT_EQ(console_.count("\"metadata\":{\"role\":\"web\"}"), 1u) << console_.text();

  ASSERT_TRUE(m->set_metadata("role", "db").ok());
  MachineConfig next = m->config();
  next.env["GREETING"] = "two";
  auto updated = m->update(next);
  ASSERT_TRUE(updated.ok()) << updated.error().describe();
  ASSERT_TRUE(m->wait(MachineState::started, kBoot).ok());
  ASSERT_TRUE(console_.wait_for("greeting=two")) << console_.text();
  EXPECT_EQ(m->version(), 2u);
  EXPECT_NE(m->instance_id(), first);
  EXPECT_EQ(console_.count("\"instance_id\":\"" + m->instance_id() + "\""), 1u) << console_.text();
  EXPECT_EQ(console_.count("\"metadata\":{\"role\":\"db\"}"), 1u) << console_.text();
  EXPECT_EQ(console_.count("\"version\":2"), 1u) << console_.text();
  EXPECT_EQ(count(*m, MachineEventType::update), 1u);
  EXPECT_EQ(count(*m, MachineEventType::stop), 1u);

  Console theirs;
  auto copy = host_->clone(*m, {}, theirs.handlers());
  ASSERT_TRUE(copy.ok()) << copy.error().describe();
  ASSERT_TRUE((*copy)->wait(MachineState::started, kBoot).ok());
  ASSERT_TRUE(theirs.wait_for("greeting=two")) << theirs.text();
  EXPECT_EQ(theirs.count("\"id\":\"" + (*copy)->id() + "\""), 1u) << theirs.text();
  EXPECT_EQ(theirs.count("\"role\":\"db\""), 1u) << theirs.text();
  ASSERT_TRUE((*copy)->destroy(/*force=*/true).ok());
  ASSERT_TRUE(m->destroy(/*force=*/true).ok());
}

}  // namespace
