#include "runner/monitor.h"

#include "base/fd.h"
#include "base/log.h"
#include "runner/control.h"
#include "runner/guest_channel.h"
#include "runner/machine_dir.h"
#include "runner/vm_process.h"
#include "store/machine_store.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <vector>

namespace flick::runner {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Beyond the VM process's own deadlines (stop timeout + 10 s, start timeout), how long the
// monitor waits before it kills the VM process itself.
constexpr auto kBackstop = 15s;
constexpr auto kKillGrace = 5s;
constexpr size_t kMaxClients = 32;

const std::vector<std::string> kRunning = {"starting", "started", "stopping"};

// The one line the starting process waits for.
class Ready {
 public:
  explicit Ready(int fd) : fd_(fd) {}
  ~Ready() { close(); }
  bool pending() const { return fd_ >= 0; }
  void ok() { send("ok\n"); }
  int fail(const Error& e) {
    std::string msg = e.describe();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    if (pending()) send("error " + std::to_string(static_cast<int>(e.code)) + " " + msg + "\n");
    else LOG_ERROR("%s", msg.c_str());
    return 1;
  }

 private:
  void send(const std::string& line) {
    if (fd_ < 0) return;
    write_all(fd_, line);
    close();
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_;
};

std::string wait_status_text(int status) {
  if (WIFSIGNALED(status)) return std::string("killed by ") + strsignal(WTERMSIG(status));
  return "exit status " + std::to_string(WEXITSTATUS(status));
}

struct Client {
  UniqueFd fd;
  LineSplitter lines{64 * 1024};
  int version = 0;  // 0 until hello
};

class Monitor {
 public:
  Monitor(const RunSpec& spec, store::MachineStore store, UniqueFd signals, UniqueFd listener, Ready& ready,
          int lock_fd, Clock::time_point began)
      : spec_(spec), store_(std::move(store)), signals_(std::move(signals)), listener_(std::move(listener)),
        ready_(ready), lock_fd_(lock_fd), began_(began) {}

  int run();

 private:
  Result<void> boot();
  void on_vm_message(const json& m);
  // The VM process has ended: record how, then boot again or finish. False when done.
  bool on_vm_ended(int wait_status);
  void request_stop(int signo, std::chrono::milliseconds timeout);
  void serve(Client& c);
  std::string handle(Client& c, const std::string& line);
  void finish();
  // Reports the first start's failure to the starting process, after removing the control socket.
  int fail_first_start(const Error& e);
  void record(std::string to, std::vector<std::string> from, std::optional<store::EventRow> event,
              std::optional<std::string> last_exit = std::nullopt);
  void kill_vm() {
    if (vm_pid_ > 0) ::kill(vm_pid_, SIGKILL);
  }

  const RunSpec& spec_;
  store::MachineStore store_;
  UniqueFd signals_, listener_;
  Ready& ready_;
  int lock_fd_;
  std::vector<Client> clients_;

  // The current boot.
  Clock::time_point began_;
  pid_t vm_pid_ = 0;
  UniqueFd vm_sock_;
  bool booted_ = false, started_ = false;
  std::optional<ExitStatus> exit_;
  std::string boot_error_;
  Errc boot_errc_ = Errc::io;
  std::optional<Clock::time_point> kill_deadline_;

  bool stop_requested_ = false;
  uint32_t retries_ = 0;
};

store::EventRow event(std::string type, std::string status, std::string source, json request = nullptr) {
  store::EventRow e;
  e.type = std::move(type);
  e.status = std::move(status);
  e.source = std::move(source);
  if (!request.is_null()) e.request = request.dump();
  return e;
}

void Monitor::record(std::string to, std::vector<std::string> from, std::optional<store::EventRow> ev,
                     std::optional<std::string> last_exit) {
  store::Transition t;
  t.machine_id = spec_.machine_id;
  t.from = std::move(from);
  t.to = std::move(to);
  t.event = std::move(ev);
  t.last_exit = std::move(last_exit);
  t.by_run = true;
  if (auto r = store_.transition(t); !r)
    LOG_WARN("machine %s: recording %s: %s", spec_.machine_id.c_str(), t.to.c_str(), r.error().describe().c_str());
}

Result<void> Monitor::boot() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return sys_error("creating the VM process's socket", errno);
  UniqueFd mine(sv[0]), theirs(sv[1]);
  const pid_t monitor = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return sys_error("forking the VM process", errno);
  if (pid == 0) {
    // The VM process: dies with the monitor, never touches the store (SQLite connections
    // must not cross a fork), and gets the signals the monitor blocked back.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != monitor) ::_exit(1);
    // Only the monitor's socket and the run lock stay open: the lock is held while any
    // process of the run lives; clients, the readiness pipe and the store are the monitor's.
    int sock = ::fcntl(theirs.get(), F_DUPFD, 10), lock = ::fcntl(lock_fd_, F_DUPFD, 10);
    if (sock < 0 || lock < 0 || ::dup2(sock, 3) < 0 || ::dup2(lock, 4) < 0) ::_exit(1);
    ::close_range(5, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    ::prctl(PR_SET_NAME, "flick-vm");
    ::_exit(run_vm_process(spec_, 3, began_));
  }
  vm_pid_ = pid;
  vm_sock_ = std::move(mine);
  booted_ = started_ = false;
  exit_.reset();
  boot_error_.clear();
  boot_errc_ = Errc::io;
  kill_deadline_.reset();
  return {};
}

void Monitor::on_vm_message(const json& m) {
  const std::string ev = m.value("ev", "");
  if (ev == "booted") {
    booted_ = true;
    if (ready_.pending()) ready_.ok();
  } else if (ev == "boot_failed") {
    boot_error_ = m.value("error", "the VM did not boot");
    int code = m.value("code", static_cast<int>(Errc::io));
    if (code >= 1 && code <= static_cast<int>(Errc::exists)) boot_errc_ = static_cast<Errc>(code);
  } else if (ev == "started") {
    started_ = true;
    json timings = {{"vm_created_ns", nullptr}, {"started_ns", m.value("started_ns", int64_t{0})}};
    if (m.contains("boot_timer_ns")) timings["boot_timer_ns"] = m["boot_timer_ns"];
    record("started", {"starting"},
           event("start", "started", "flick", {{"pid", m.value("pid", 0)}, {"timings", timings}}));
  } else if (ev == "exited") {
    record("stopping", {"started"}, std::nullopt);
  } else if (ev == "exit") {
    auto st = parse_exit_status(m.dump());
    if (st) exit_ = std::move(st).value();
  }
}

void Monitor::request_stop(int signo, std::chrono::milliseconds timeout) {
  stop_requested_ = true;
  if (vm_sock_) {
    std::string cmd = json{{"cmd", "stop"}, {"signal", signo}, {"timeout_ms", timeout.count()}}.dump();
    (void)::send(vm_sock_.get(), cmd.data(), cmd.size(), MSG_NOSIGNAL);
  }
  auto deadline = Clock::now() + timeout + kBackstop;
  if (!kill_deadline_ || deadline < *kill_deadline_) kill_deadline_ = deadline;
}

bool Monitor::on_vm_ended(int wait_status) {
  vm_pid_ = 0;
  // Messages sent just before the process ended are still queued on the socket.
  for (char buf[4096];;) {
    ssize_t n = ::recv(vm_sock_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) break;
    try {
      on_vm_message(json::parse(std::string_view(buf, static_cast<size_t>(n))));
    } catch (const json::exception&) {
    }
  }
  vm_sock_.reset();

  if (!booted_) {  // this boot never ran
    std::string why = !boot_error_.empty() ? boot_error_ : "the VM process ended before the VM ran (" + wait_status_text(wait_status) + ")";
    if (ready_.pending()) {  // the first: the starting process reports it and restores the state
      fail_first_start(make_error(boot_error_.empty() ? Errc::io : boot_errc_, why));
      return false;
    }
    ExitStatus failed{-1, 0, false, false, why};
    record("failed", kRunning, event("exit", "failed", "flick", {{"exit_event", json::parse(exit_status_json(failed))}}),
           exit_status_json(failed));
    return false;
  }

  ExitStatus st = exit_.value_or(ExitStatus{});
  if (!exit_) {
    st.error = "the VM process ended without saying how the run ended (" + wait_status_text(wait_status) + ")";
    st.requested_stop = stop_requested_;
  }
  std::string next = "stopped";
  std::string restart_detail;
  if (!started_ && !st.requested_stop) {
    next = "failed";
    if (st.error.empty()) st.error = "the guest reported an exit before the program started";
  } else if (!st.requested_stop) {
    if (spec_.restart.policy == RestartPolicy::always) {
      next = "starting";
      restart_detail = "restart (always)";
    } else if (spec_.restart.policy == RestartPolicy::on_failure && !st.success()) {
      if (retries_ < spec_.restart.max_retries) {
        next = "starting";
        restart_detail = "restart " + std::to_string(++retries_) + " of " + std::to_string(spec_.restart.max_retries) +
                         " (on-failure)";
      }
    } else if (st.success()) {
      retries_ = 0;
    }
  }
  std::string exit_json = exit_status_json(st);
  record(next, kRunning,
         event("exit", next, "flick", {{"exit_event", json::parse(exit_json)}, {"restart_count", retries_}}), exit_json);
  if (next != "starting") return false;

  record("starting", kRunning, event("restart", "starting", "flick", {{"detail", restart_detail}}));
  began_ = Clock::now();
  if (auto b = boot(); !b) {
    ExitStatus failed{-1, 0, false, false, b.error().describe()};
    record("failed", kRunning, event("exit", "failed", "flick", {{"exit_event", json::parse(exit_status_json(failed))}}),
           exit_status_json(failed));
    return false;
  }
  return true;
}

std::string Monitor::handle(Client& c, const std::string& line) {
  auto error = [](const std::string& msg, const char* code = "invalid") {
    return json{{"ok", false}, {"error", msg}, {"code", code}}.dump();
  };
  json req;
  try {
    req = json::parse(line);
    std::string op = req.at("op");
    if (op == "hello") return control_hello_reply(req.at("min"), req.at("max"), &c.version);
    if (c.version == 0) return error("say hello first: {\"op\":\"hello\",\"min\":1,\"max\":1}");
    auto row = store_.get_machine("", spec_.machine_id);
    std::string state = row ? row->state : "unknown";
    if (op == "status")
      return json{{"ok", true}, {"state", state}, {"monitor_pid", ::getpid()}, {"vmm_pid", vm_pid_}, {"restarts", retries_}}
          .dump();
    if (op == "stop" || op == "kill") {
      store::Transition t;
      t.machine_id = spec_.machine_id;
      t.from = {"starting", "started"};
      t.to = "stopping";
      if (req.contains("lease_nonce")) t.lease_nonce = req["lease_nonce"].get<std::string>();
      int signo = op == "kill" ? SIGKILL : req.value("signal", spec_.stop.signal);
      auto timeout = op == "kill" ? 0ms : std::chrono::milliseconds(req.value("timeout_ms", spec_.stop.timeout.count()));
      t.event = event("stop", "stopping", "user",
                      {{"detail", op == "kill" ? std::string("killed")
                                               : "signal " + std::to_string(signo) + ", timeout " +
                                                     std::to_string(timeout.count()) + " ms"}});
      auto r = store_.transition(t);
      if (!r && r.error().code == Errc::lease_held) return error(r.error().message, "lease_held");
      // Otherwise it is already stopping or settled: stopping again is a no-op.
      if (op == "kill") {
        stop_requested_ = true;
        std::string cmd = R"({"cmd":"kill"})";
        if (vm_sock_) (void)::send(vm_sock_.get(), cmd.data(), cmd.size(), MSG_NOSIGNAL);
        auto deadline = Clock::now() + kKillGrace;
        if (!kill_deadline_ || deadline < *kill_deadline_) kill_deadline_ = deadline;
      } else if (r) {
        request_stop(signo, timeout);
      }
      return R"({"ok":true})";
    }
    if (op == "signal") {
      int signo = req.at("signal");
      if (signo < 1 || signo > 64) return error(std::to_string(signo) + " is not a signal number");
      if (state != "started" || !vm_sock_)
        return error("machine " + spec_.machine_id + " is " + state + ": its program is not running", "busy");
      std::string cmd = json{{"cmd", "signal"}, {"signal", signo}}.dump();
      (void)::send(vm_sock_.get(), cmd.data(), cmd.size(), MSG_NOSIGNAL);
      return R"({"ok":true})";
    }
    return error("unknown op \"" + op + "\" in protocol version " + std::to_string(c.version));
  } catch (const json::exception& e) {
    return error(std::string("a malformed request: ") + e.what());
  }
}

void Monitor::serve(Client& c) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      c.fd.reset();
      return;
    }
    for (const auto& line : c.lines.feed({buf, static_cast<size_t>(n)})) {
      std::string reply = handle(c, line) + "\n";
      // Replies are small; a client that does not read them loses its connection.
      if (::send(c.fd.get(), reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT) != static_cast<ssize_t>(reply.size())) {
        c.fd.reset();
        return;
      }
    }
  }
}

int Monitor::fail_first_start(const Error& e) {
  // Nothing of the run is left once the starting process hears that it failed.
  ::unlink(spec_.control_path.c_str());
  return ready_.fail(e);
}

void Monitor::finish() {
  ::unlink(spec_.control_path.c_str());
  if (!spec_.auto_destroy) return;
  store::Transition t;
  t.machine_id = spec_.machine_id;
  t.from = {"stopped", "failed"};
  t.to = "destroying";
  t.by_run = true;
  if (!store_.transition(t)) return;  // someone else has the machine now
  if (auto r = remove_machine_files(spec_.machine_dir); !r)
    LOG_WARN("machine %s: %s", spec_.machine_id.c_str(), r.error().describe().c_str());
  record("destroyed", {"destroying"}, event("destroy", "destroyed", "flick", {{"detail", "auto_destroy"}}));
  remove_machine_dir(spec_.machine_dir);
}

int Monitor::run() {
  if (auto b = boot(); !b) return fail_first_start(b.error());
  for (;;) {
    std::vector<pollfd> fds = {{signals_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}, {vm_sock_.get(), POLLIN, 0}};
    const size_t polled = clients_.size();  // a client accepted below is polled next time
    for (const auto& c : clients_) fds.push_back({c.fd.get(), POLLIN, 0});
    int timeout_ms = -1;
    auto now = Clock::now();
    std::optional<Clock::time_point> deadline = kill_deadline_;
    if (!started_ && vm_pid_ > 0) {
      auto start_backstop = began_ + spec_.start_timeout + kBackstop;
      if (!deadline || start_backstop < *deadline) deadline = start_backstop;
    }
    if (deadline)
      timeout_ms = static_cast<int>(std::clamp<int64_t>(
          std::chrono::ceil<std::chrono::milliseconds>(*deadline - now).count(), 0, 1 << 30));
    int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) {
      LOG_ERROR("machine %s: poll: %s", spec_.machine_id.c_str(), std::strerror(errno));
      kill_vm();
      ::sleep(1);
    }
    if (n == 0 && deadline && Clock::now() >= *deadline) {
      LOG_WARN("machine %s: the VM process has not ended in time: killing it", spec_.machine_id.c_str());
      kill_vm();
      kill_deadline_ = Clock::now() + 1h;  // once
      continue;
    }
    if (n <= 0) continue;
    if (fds[2].revents & POLLIN) {
      char buf[4096];
      ssize_t got = ::recv(vm_sock_.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (got > 0) {
        try {
          on_vm_message(json::parse(std::string_view(buf, static_cast<size_t>(got))));
        } catch (const json::exception& e) {
          LOG_WARN("machine %s: a bad message from the VM process: %s", spec_.machine_id.c_str(), e.what());
        }
      }
    }
    if (fds[0].revents) {
      signalfd_siginfo si{};
      while (::read(signals_.get(), &si, sizeof si) == sizeof si) {
        if (si.ssi_signo != SIGCHLD) {  // asked to end: stop the machine as stop() would
          request_stop(spec_.stop.signal, spec_.stop.timeout);
          continue;
        }
        int status = 0;
        while (vm_pid_ > 0 && ::waitpid(vm_pid_, &status, WNOHANG) == vm_pid_) {
          if (!on_vm_ended(status)) {
            finish();
            return ready_.pending() ? 1 : 0;
          }
        }
      }
    }
    if (fds[1].revents) {
      int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd >= 0 && clients_.size() < kMaxClients) clients_.push_back({UniqueFd(fd)});
      else if (fd >= 0) ::close(fd);
    }
    for (size_t i = 0; i < polled; ++i)
      if (fds[3 + i].revents) serve(clients_[i]);
    std::erase_if(clients_, [](const Client& c) { return !c.fd; });
  }
}

}  // namespace

int run_monitor(const RunSpec& spec, int ready_fd, int lock_fd, Clock::time_point began) {
  Ready ready(ready_fd);
  UniqueFd lock(lock_fd);
  if (!lock) {
    lock.reset(::open(spec.lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!lock) return ready.fail(sys_error("opening the run lock " + spec.lock_path, errno));
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
      return ready.fail(make_error(Errc::busy, "machine " + spec.machine_id + " already has a run (" + spec.lock_path + " is locked)"));
  }
  ::fcntl(lock.get(), F_SETFD, FD_CLOEXEC);
  auto store = store::MachineStore::open(spec.store);
  if (!store) return ready.fail(store.error());

  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  UniqueFd signals(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals) return ready.fail(sys_error("creating a signalfd", errno));
  auto listener = listen_unix(spec.control_path, 16);
  if (!listener) return ready.fail(listener.error());
  Monitor m(spec, std::move(store).value(), std::move(signals), std::move(listener).value(), ready, lock.get(), began);
  return m.run();  // `lock` is held until here: the run is alive while this process is
}

Result<void> read_ready(int fd, std::chrono::milliseconds timeout) {
  std::string line;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return make_error(Errc::timeout, "flick-vmm did not report within " + std::to_string(timeout.count()) + " ms");
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("waiting for flick-vmm", errno);
    if (n == 0) continue;
    char buf[1024];
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return sys_error("reading from flick-vmm", errno);
    if (got == 0) break;
    line.append(buf, static_cast<size_t>(got));
    if (line.find('\n') != std::string::npos) break;
  }
  if (line.rfind("ok", 0) == 0) return {};
  if (line.rfind("error ", 0) == 0) {
    char* end = nullptr;
    long code = std::strtol(line.c_str() + 6, &end, 10);
    std::string msg = end && *end == ' ' ? std::string(end + 1) : line;
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    if (code < 1 || code > static_cast<long>(Errc::exists)) code = static_cast<long>(Errc::io);
    return make_error(static_cast<Errc>(code), msg);
  }
  return make_error(Errc::io, "flick-vmm ended without reporting whether the machine booted (see its log)");
}

}  // namespace flick::runner
