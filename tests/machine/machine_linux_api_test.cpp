// Machines running real programs: Debian's cloud kernel, flick-init and a busybox image.
// Runs inside the test host (or on a real KVM host), driven by machine_linux_test.py, which
// passes FLICK_TEST_IMAGE, FLICK_TEST_KERNEL and FLICK_TEST_MODULES.
#include <flick/machine.h>

#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
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

TEST_F(MachineLinux, AVolumeExtendedWhileStoppedGrowsAtTheNextStart) {
  auto v = host_->create_volume({"grow", 1});
  ASSERT_TRUE(v.ok()) << v.error().describe();
  MachineConfig c;
  c.mounts = {{"grow", "/data"}};
  auto m = machine("echo x >> /data/runs; echo \"kb=$(df -k /data | tail -n 1 | awk '{print $2}') "
                   "runs=$(wc -l < /data/runs)\"", c);
  ASSERT_TRUE(m);
  auto size_kb = [&](int runs) -> uint64_t {
    console_.clear();
    EXPECT_TRUE(m->start().ok());
    EXPECT_TRUE(m->wait(MachineState::stopped, kBoot).ok()) << console_.text();
    EXPECT_TRUE(console_.wait_for_output("runs=" + std::to_string(runs))) << console_.output();
    const std::string out = console_.output();
    const auto at = out.find("kb=");
    return at == std::string::npos ? 0 : std::stoull(out.substr(at + 3));
  };
  const uint64_t before = size_kb(1);
  EXPECT_GT(before, 900'000u);
  EXPECT_LT(before, 1'100'000u);
  auto grown = host_->extend_volume("grow", 2);
  ASSERT_TRUE(grown.ok()) << grown.error().describe();
  EXPECT_EQ(grown->size_bytes, uint64_t{2} << 30);
  const uint64_t after = size_kb(2);  // its data kept
  EXPECT_GT(after, 1'900'000u) << console_.text();
  EXPECT_LT(after, 2'100'000u);
  EXPECT_EQ(host_->extend_volume("grow", 1).error().code, Errc::invalid_argument);
  ASSERT_TRUE(m->destroy().ok());
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

// A raw connection to flick-init's exec port (docs/exec-protocol.md), for what Machine::exec
// never sends. Returns what the guest answered until it closed ("" if the connection failed).
std::string raw_exec(const std::filesystem::path& vsock, const std::string& bytes, bool wait_for_close = true) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", vsock.c_str());
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
      ::send(fd, "CONNECT 10001\n", 14, MSG_NOSIGNAL) == 14) {
    char c;
    std::string ok;
    while (::recv(fd, &c, 1, 0) == 1 && c != '\n') ok += c;
    if (ok.rfind("OK ", 0) == 0 && ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size())) {
      char buf[4096];
      ssize_t n;
      while (wait_for_close && (n = ::recv(fd, buf, sizeof buf, 0)) > 0) reply.append(buf, static_cast<size_t>(n));
      if (!wait_for_close) reply = "sent";
    }
  }
  ::close(fd);
  return reply;
}

std::string exec_frame(uint8_t type, const std::string& payload, uint32_t len) {
  std::string f{static_cast<char>(type), static_cast<char>(len >> 24), static_cast<char>(len >> 16),
                static_cast<char>(len >> 8), static_cast<char>(len)};
  return f + payload;
}
std::string exec_frame(uint8_t type, const std::string& payload) {
  return exec_frame(type, payload, static_cast<uint32_t>(payload.size()));
}

// Every exec case on one started machine: a boot under emulation is slow.
TEST_F(MachineLinux, ExecRunsCommandsBesideTheProgram) {
  MachineConfig c;
  c.env["FROM_MACHINE"] = "machine-env";
  auto m = machine("echo main-ready; while true; do sleep 1; done", c);
  ASSERT_TRUE(m);
  auto run = [&](std::vector<std::string> cmd, std::string in = {}) {
    ExecRequest r;
    r.cmd = std::move(cmd);
    r.stdin_data = std::move(in);
    return m->exec(r);
  };
  auto early = run({"true"});
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().code, Errc::busy) << early.error().describe();
  auto early_ps = m->processes();
  ASSERT_FALSE(early_ps.ok());
  EXPECT_EQ(early_ps.error().code, Errc::busy) << early_ps.error().describe();

  ASSERT_TRUE(m->start().ok());
  ASSERT_TRUE(m->wait(MachineState::started, kBoot).ok()) << console_.text();
  ASSERT_TRUE(console_.wait_for("main-ready"));

  // ps: flick-init lists the guest's processes, itself first and the main program among them.
  auto listed = m->processes();
  ASSERT_TRUE(listed.ok()) << listed.error().describe();
  ASSERT_FALSE(listed->empty());
  EXPECT_EQ(listed->front().pid, 1);
  EXPECT_TRUE(std::is_sorted(listed->begin(), listed->end(), [](const auto& a, const auto& b) { return a.pid < b.pid; }));
  auto main_program = std::find_if(listed->begin(), listed->end(), [](const ProcessInfo& p) {
    return p.command.find("echo main-ready; while true; do sleep 1; done") != std::string::npos;
  });
  ASSERT_NE(main_program, listed->end()) << listed->size() << " processes, the first " << listed->front().command;
  EXPECT_EQ(main_program->ppid, 1);
  EXPECT_EQ(main_program->directory, "/");
  EXPECT_GT(main_program->rss_bytes, 0u);
  EXPECT_LT(main_program->run_time, std::chrono::seconds(600));
  EXPECT_GT(main_program->started_at, std::chrono::system_clock::now() - std::chrono::hours(1));

  auto echo = run({"echo", "hello", "world"});
  ASSERT_TRUE(echo.ok()) << echo.error().describe();
  EXPECT_EQ(echo->exit_code, 0);
  EXPECT_EQ(echo->exit_signal, 0);
  EXPECT_EQ(echo->stdout_data, "hello world\n");
  EXPECT_EQ(echo->stderr_data, "");

  auto both = run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(both.ok()) << both.error().describe();
  EXPECT_EQ(both->exit_code, 3);
  EXPECT_EQ(both->stdout_data, "out\n");
  EXPECT_EQ(both->stderr_data, "err\n");

  std::string input;  // more than the guest buffers, and more than one frame
  for (int i = 0; input.size() < 600 * 1024; ++i) input += "line " + std::to_string(i) + "\n";
  auto cat = run({"cat"}, input);
  ASSERT_TRUE(cat.ok()) << cat.error().describe();
  EXPECT_EQ(cat->exit_code, 0);
  EXPECT_TRUE(cat->stdout_data == input) << cat->stdout_data.size() << " bytes back of " << input.size();

  // The main program's environment and user by default; the request's when given.
  auto env = run({"sh", "-c", "echo $(id -un) $(pwd) $FROM_MACHINE $EXTRA"});
  ASSERT_TRUE(env.ok()) << env.error().describe();
  EXPECT_EQ(env->stdout_data, "root / machine-env\n");
  ExecRequest as;
  as.cmd = {"sh", "-c", "echo $(id -un) $(pwd) $FROM_MACHINE $EXTRA"};
  as.env = {{"EXTRA", "extra"}, {"FROM_MACHINE", "request-env"}};
  as.user = "nobody";
  as.workdir = "/tmp";
  auto overridden = m->exec(as);
  ASSERT_TRUE(overridden.ok()) << overridden.error().describe();
  EXPECT_EQ(overridden->stdout_data, "nobody /tmp request-env extra\n");

  auto missing = run({"no-such-command", "x"});
  ASSERT_TRUE(missing.ok()) << missing.error().describe();
  EXPECT_EQ(missing->exit_code, 127);
  EXPECT_NE(missing->stderr_data.find("no-such-command"), std::string::npos) << missing->stderr_data;
  as.user = "no-such-user";
  auto bad_user = m->exec(as);
  ASSERT_FALSE(bad_user.ok());
  EXPECT_EQ(bad_user.error().code, Errc::invalid_argument);
  EXPECT_NE(bad_user.error().message.find("no-such-user"), std::string::npos) << bad_user.error().message;

  auto killed = run({"sh", "-c", "kill -9 $$"});
  ASSERT_TRUE(killed.ok()) << killed.error().describe();
  EXPECT_EQ(killed->exit_code, -1);
  EXPECT_EQ(killed->exit_signal, 9);

  auto big = run({"sh", "-c", "head -c 3000000 /dev/zero; echo done >&2"});
  ASSERT_TRUE(big.ok()) << big.error().describe();
  EXPECT_EQ(big->exit_code, 0);
  EXPECT_EQ(big->stdout_data.size(), kExecOutputCap);
  EXPECT_TRUE(big->truncated);
  EXPECT_EQ(big->stderr_data, "done\n");

  // A hostile or broken host: each gets an error frame (type 4) or is dropped, and PID 1 lives on.
  std::filesystem::path vsock;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir_.path() / "run"))
    if (e.path().extension() == ".vsock") vsock = e.path();
  ASSERT_FALSE(vsock.empty());
  auto refused = [&](const std::string& bytes, const std::string& why) {
    std::string reply = raw_exec(vsock, bytes);
    EXPECT_TRUE(reply.size() > 5 && reply[0] == 4 && reply.find(why) != std::string::npos)
        << "expected an error frame saying \"" << why << "\", got " << reply.size() << " bytes: " << reply;
  };
  refused(exec_frame(16, "{not json"), "not valid JSON");
  refused(exec_frame(16, R"({"cmd":["true"],"bogus":1})"), "unknown member");
  refused(exec_frame(16, "", 0xffffffff), "larger than");
  refused(exec_frame(1, "hello"), "must be a request");
  refused(exec_frame(16, R"({"cmd":["cat"]})") + exec_frame(99, ""), "unexpected frame");
  EXPECT_EQ(raw_exec(vsock, std::string("\x10\x00", 2), false), "sent");  // cut short
  EXPECT_EQ(raw_exec(vsock, exec_frame(16, R"({"cmd":["sleep","100"]})"), false), "sent");  // abandoned
  auto after = run({"echo", "still-here"});
  ASSERT_TRUE(after.ok()) << after.error().describe();
  EXPECT_EQ(after->stdout_data, "still-here\n");

  ExecRequest slow;
  slow.cmd = {"sleep", "100"};
  slow.timeout = 2s;
  auto t0 = std::chrono::steady_clock::now();
  auto timed_out = m->exec(slow);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(timed_out.ok());
  EXPECT_EQ(timed_out.error().code, Errc::timeout) << timed_out.error().describe();
  EXPECT_LT(took, 20s);
  std::string left;  // the sleeps were killed with their connections
  for (int i = 0; i < 50; ++i) {
    auto ps = run({"sh", "-c", "ps | grep -c '[s]leep 100'"});
    ASSERT_TRUE(ps.ok()) << ps.error().describe();
    left = ps->stdout_data;
    if (left == "0\n") break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(left, "0\n");

  // Streaming: chunks as they come, nothing kept.
  std::string streamed;
  ExecOutput out;
  out.stdout_chunk = [&](std::string_view s) { streamed.append(s); };
  ExecRequest count;
  count.cmd = {"sh", "-c", "for i in 1 2 3; do echo $i; done"};
  auto st = m->exec(count, out);
  ASSERT_TRUE(st.ok()) << st.error().describe();
  EXPECT_EQ(streamed, "1\n2\n3\n");
  EXPECT_EQ(st->stdout_data, "");

  EXPECT_EQ(m->state(), MachineState::started) << "the main program runs on";
  EXPECT_EQ(console_.count("main-ready"), 1u);

  // A lease guards exec as Fly's does: another handle without the nonce is refused.
  auto lease = m->acquire_lease(60s);
  ASSERT_TRUE(lease.ok()) << lease.error().describe();
  auto theirs = host_->get(m->id());
  ASSERT_TRUE(theirs.ok());
  ExecRequest probe;
  probe.cmd = {"true"};
  auto held = (*theirs)->exec(probe);
  ASSERT_FALSE(held.ok());
  EXPECT_EQ(held.error().code, Errc::lease_held) << held.error().describe();
  (*theirs)->set_lease_nonce(lease->nonce);
  EXPECT_TRUE((*theirs)->exec(probe).ok());
  ASSERT_TRUE(m->release_lease(lease->nonce).ok());

  ASSERT_TRUE(m->stop().ok());
  auto late = run({"true"});
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, Errc::busy);
  EXPECT_NE(late.error().message.find("stopped"), std::string::npos) << late.error().message;
  auto late_ps = m->processes();
  ASSERT_FALSE(late_ps.ok());
  EXPECT_EQ(late_ps.error().code, Errc::busy);
  ASSERT_TRUE(m->last_exit());
  EXPECT_TRUE(m->last_exit()->requested_stop);
}

}  // namespace
