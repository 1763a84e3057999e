#include "runner/vm_process.h"

#include "base/event_fd.h"
#include "base/fd.h"
#include "base/log.h"
#include "runner/console_log.h"
#include "runner/guest_channel.h"
#include "runner/host_network.h"
#include "store/names.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

namespace flick::runner {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string stop_command_for(int signo, std::chrono::milliseconds timeout) {
  return "{\"command\":\"stop\",\"signal\":" + std::to_string(signo) + ",\"timeout_ms\":" +
         std::to_string(timeout.count()) + "}\n";
}

void tell(int fd, const json& message) {
  std::string s = message.dump();
  while (::send(fd, s.data(), s.size(), MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

int64_t since(Clock::time_point began) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - began).count();
}

}  // namespace

int run_vm_process(const RunSpec& spec, int monitor, Clock::time_point began) {
  ConsoleLog console(spec.console_log, kConsoleLogCap);
  std::optional<ConsoleLog> output;
  if (!spec.output_log.empty()) output.emplace(spec.output_log, kConsoleLogCap);
  const std::string event_socket = spec.vm.vsock ? spec.vm.vsock->uds_path + "_" + std::to_string(kEventPort) : "";
  auto fail = [&](const Error& e) {
    tell(monitor, {{"ev", "boot_failed"}, {"error", e.describe()}, {"code", static_cast<int>(e.code)}});
    if (spec.vm.vsock) {
      ::unlink(spec.vm.vsock->uds_path.c_str());
      ::unlink(event_socket.c_str());
    }
    return 1;
  };

  auto wake = EventFd::create();
  if (!wake) return fail(wake.error());
  UniqueFd listener;
  if (spec.vm.vsock) {
    auto l = listen_unix(event_socket);
    if (!l) return fail(l.error());
    listener = std::move(l).value();
  }
  VmConfig vc = spec.vm;
  vc.console = [&console](std::string_view s) { console.write(s); };
  if (output)
    vc.serial2 = [&console, &output](std::string_view s) {
      console.write(s);
      output->write(s);
    };
  const auto vm_create_began = Clock::now();  // VmTimings count from here (setup, then the boot timer)
  auto created = Vm::create(vc);
  if (!created) return fail(std::move(created).error().with_context("machine " + spec.machine_id));
  std::unique_ptr<Vm> vm = std::move(created).value();
  if (spec.network)  // the VM has just made the TAP; it goes when the VM closes it
    if (auto up = configure_tap(*spec.network); !up) return fail(std::move(up).error().with_context("machine " + spec.machine_id));
  if (auto s = vm->start(); !s) return fail(s.error());
  tell(monitor, {{"ev", "booted"}, {"vm_created_ns", since(began)}});

  VmExit vm_exit;
  std::atomic<bool> exited{false};
  std::thread waiter([&] {
    vm_exit = vm->wait();
    exited = true;
    (void)wake->signal();
  });

  ExitStatus st;
  UniqueFd conn;
  LineSplitter splitter;
  std::string out;  // bytes for the guest not yet written
  bool started = false, got_exit = false, forced = false, requested = false, monitor_gone = false;
  int bad_lines = 0;
  const auto start_deadline = began + spec.start_timeout;
  std::optional<Clock::time_point> kill_deadline;

  auto kill = [&] {
    if (!forced) {
      forced = true;
      vm->stop();
    }
  };
  auto handle = [&](const std::string& line) {
    auto ev = parse_guest_event(line);
    if (!ev) {  // the guest's word: note a few, never flood the log
      if (++bad_lines <= 3) LOG_WARN("machine %s: %s", spec.machine_id.c_str(), ev.error().describe().c_str());
      return;
    }
    switch (ev->kind) {
      case GuestEvent::Kind::started: {
        if (started) return;
        started = true;
        json m = {{"ev", "started"}, {"pid", ev->pid}, {"started_ns", since(began)}};
        if (auto bt = vm->timings().boot_timer)
          m["boot_timer_ns"] = std::chrono::duration_cast<std::chrono::nanoseconds>(vm_create_began - began).count() +
                               vm->timings().setup.count() + bt->count();
        tell(monitor, m);
        return;
      }
      case GuestEvent::Kind::exited:
        got_exit = true;
        st.exit_code = ev->exit_code.value_or(-1);
        st.signal = ev->signal;
        tell(monitor, {{"ev", "exited"}});
        return;
      case GuestEvent::Kind::oom: st.oom_killed = true; return;
      case GuestEvent::Kind::error:
        got_exit = true;
        st.error = ev->message.empty() ? "flick-init reported an error" : ev->message;
        st.exit_code = ev->exit_code.value_or(1);
        return;
    }
  };
  auto read_conn = [&] {
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(conn.get(), buf, sizeof buf);
      if (n > 0) {
        for (const auto& line : splitter.feed({buf, static_cast<size_t>(n)})) handle(line);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      conn.reset();  // EOF after the guest's half-close: closing ours lets it power off
      return;
    }
  };
  auto stop = [&](int signo, std::chrono::milliseconds timeout) {
    requested = true;
    if (started && conn) {
      out += stop_command_for(signo, timeout);
      kill_deadline = Clock::now() + timeout + kStopGrace;
    } else {
      kill();  // nothing runs yet that could stop gracefully, or no channel to ask
    }
  };
  auto read_monitor = [&] {
    char buf[4096];
    ssize_t n = ::recv(monitor, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      monitor_gone = true;  // never run unsupervised
      requested = true;
      kill();
      return;
    }
    if (n < 0) return;
    try {
      json c = json::parse(std::string_view(buf, static_cast<size_t>(n)));
      std::string cmd = c.at("cmd");
      if (cmd == "stop") stop(c.at("signal"), std::chrono::milliseconds(c.at("timeout_ms").get<int64_t>()));
      else if (cmd == "signal" && conn) out += signal_command(c.at("signal"));
      else if (cmd == "kill") requested = true, kill();
    } catch (const json::exception& e) {
      LOG_WARN("machine %s: a bad command from the monitor: %s", spec.machine_id.c_str(), e.what());
    }
  };

  for (;;) {
    while (conn && !out.empty()) {
      ssize_t n = ::send(conn.get(), out.data(), out.size(), MSG_NOSIGNAL);
      if (n > 0) out.erase(0, static_cast<size_t>(n));
      else if (n < 0 && errno == EINTR) continue;
      else break;  // EAGAIN: poll for POLLOUT; other errors: the read side sees them
    }
    int timeout_ms = -1;
    auto now = Clock::now();
    auto until = [&](Clock::time_point t) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - now).count();
      int v = static_cast<int>(std::clamp<int64_t>(ms, 0, 1 << 30));
      timeout_ms = timeout_ms < 0 ? v : std::min(timeout_ms, v);
    };
    if (!started && !forced) until(start_deadline);
    if (kill_deadline && !forced) until(*kill_deadline);

    pollfd fds[4] = {{wake->fd(), POLLIN, 0},
                     {listener.get(), POLLIN, 0},
                     {conn.get(), static_cast<short>(POLLIN | (out.empty() ? 0 : POLLOUT)), 0},
                     {monitor_gone ? -1 : monitor, POLLIN, 0}};
    int n = ::poll(fds, 4, timeout_ms);
    if (n < 0 && errno != EINTR) {
      LOG_WARN("machine %s: poll: %s", spec.machine_id.c_str(), std::strerror(errno));
      kill();
    }
    if (n == 0) {
      now = Clock::now();
      if (!started && !forced && now >= start_deadline) {
        st.error = "the machine did not report started within " + store::format_duration(spec.start_timeout);
        kill();
      }
      if (kill_deadline && !forced && now >= *kill_deadline) kill();
      continue;
    }
    if (n < 0) continue;
    if (fds[0].revents) {
      (void)wake->consume();
      if (exited) {
        if (conn) read_conn();  // what the guest sent before it powered off
        break;
      }
    }
    if (fds[1].revents) {
      int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        conn.reset(fd);
        listener.reset();
      }
    }
    if (conn && fds[2].revents) read_conn();
    if (fds[3].revents) read_monitor();
  }
  waiter.join();
  vm.reset();  // the TAP and the overlay go with it

  st.requested_stop = requested;
  if (!got_exit && st.error.empty()) {
    if (forced && requested) {
      if (started) st.signal = SIGKILL;
      else st.error = "stopped before the program started";
    } else if (vm_exit.reason == VmExitReason::power_off) {
      st.error = "the guest powered off without reporting how the program ended";
    } else if (vm_exit.reason == VmExitReason::reboot) {
      st.error = "the guest rebooted before the program ended (a kernel panic does, with panic=-1)";
    } else {
      st.error = std::string("the guest ended: ") + to_string(vm_exit.reason) +
                 (vm_exit.detail.empty() ? "" : ": " + vm_exit.detail);
    }
    if (!requested)
      if (auto line = console.telling_line(); !line.empty()) st.error += " (console: " + line + ")";
  }
  if (spec.vm.vsock) {
    ::unlink(spec.vm.vsock->uds_path.c_str());
    ::unlink(event_socket.c_str());
  }
  json m = json::parse(exit_status_json(st));
  m["ev"] = "exit";
  tell(monitor, m);
  return 0;
}

}  // namespace flick::runner
