// Machine: the state machine, and the supervisor thread that watches each run of the VM.
#include <flick/machine.h>

#include "base/log.h"
#include "runner/guest_channel.h"
#include "machine/initramfs.h"
#include "machine/machine_impl.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace flick {

namespace {

using Clock = std::chrono::steady_clock;

// After stop_config.timeout, flick-init kills the program, syncs, unmounts and powers off;
// the VM is killed if it has not ended this long after that.
constexpr auto kStopGrace = 10s;
constexpr size_t kConsoleTail = 4096;
constexpr const char* kBaseCmdline = "console=ttyS0 quiet panic=-1 pci=off";

std::string ms_text(std::chrono::milliseconds ms) {
  return ms.count() % 1000 == 0 ? std::to_string(ms.count() / 1000) + " s" : std::to_string(ms.count()) + " ms";
}

bool settled(MachineState s) {
  return s == MachineState::stopped || s == MachineState::failed || s == MachineState::destroyed;
}

bool running(MachineState s) {
  return s == MachineState::starting || s == MachineState::started || s == MachineState::stopping;
}

std::string stop_command_for(const std::optional<StopConfig>& how) {
  if (!how) return runner::stop_command();
  return "{\"command\":\"stop\",\"signal\":" + std::to_string(how->signal) +
         ",\"timeout_ms\":" + std::to_string(how->timeout.count()) + "}\n";
}

}  // namespace

MachineRun::~MachineRun() {
  if (vm && !exited) vm->stop();
  if (waiter.joinable()) waiter.join();
}

Machine::Impl::Impl(std::shared_ptr<Host::Impl> h, std::string id_, std::string name_, MachineConfig config_,
                    Rootfs image_, machine::ProcessSpec process_, BootFiles boot_,
                    std::vector<machine::VolumeLease> volumes_, MachineHandlers handlers_)
    : host(std::move(h)),
      id(std::move(id_)),
      name(std::move(name_)),
      config(std::move(config_)),
      image(std::move(image_)),
      process(std::move(process_)),
      boot(std::move(boot_)),
      dir(host->machine_dir(id)),
      vsock_path(host->options.run_dir / (id + ".vsock")),
      volumes(std::move(volumes_)),
      handlers(std::move(handlers_)) {}

Machine::Impl::~Impl() {
  {
    std::lock_guard lk(mu);
    kill_requested = true;
    wake_run();
  }
  if (supervisor.joinable()) supervisor.join();
  release_volumes();
}

void Machine::Impl::release_volumes() {
  {
    std::lock_guard lk(host->mu);
    for (const auto& v : volumes) host->attached.erase(v.name);
  }
  volumes.clear();  // releases the locks
}

void Machine::Impl::set_state(MachineState s) {
  state = s;
  cv.notify_all();
}

void Machine::Impl::wake_run() {
  if (run) (void)run->wake.signal();
}

void Machine::Impl::record(MachineEventType type, MachineState status, std::optional<ExitStatus> exit,
                           std::string detail, bool enter_status) {
  MachineEvent e{type, status, std::chrono::system_clock::now(), std::move(exit), std::move(detail)};
  {
    std::lock_guard lk(mu);
    events.push_back(e);
    if (enter_status) set_state(status);  // whoever sees the state also sees its event
  }
  if (handlers.event) handlers.event(e);
}

void Machine::Impl::on_console(std::string_view bytes) {
  if (handlers.console) handlers.console(bytes);
  std::lock_guard lk(console_mu);
  console_tail.append(bytes);
  if (console_tail.size() > 2 * kConsoleTail) console_tail.erase(0, console_tail.size() - kConsoleTail);
}

std::string Machine::Impl::telling_console_line() const {
  std::lock_guard lk(console_mu);
  const std::string& t = console_tail;
  // A panic's own line says more than the stack dump and "Kernel Offset" lines after it.
  size_t end = t.rfind("Kernel panic - not syncing");
  end = end != std::string::npos ? t.find_first_of("\r\n", end) : t.size();
  end = t.find_last_not_of("\r\n", end == std::string::npos ? t.size() : end);
  if (end == std::string::npos) return {};
  size_t begin = t.find_last_of("\r\n", end);
  begin = begin == std::string::npos ? 0 : begin + 1;
  return t.substr(begin, end - begin + 1);
}

Result<std::shared_ptr<MachineRun>> Machine::Impl::boot_run(Clock::time_point began) {
  std::vector<machine::GuestMount> mounts;
  for (size_t i = 0; i < config.mounts.size(); ++i)
    mounts.push_back({machine::virtio_disk_name(i + 1), config.mounts[i].path});
  fs::path per_start = dir / "config.cpio";
  FLICK_TRY(machine::write_config_archive(
      machine::init_config_json(id, process, mounts, config.stop_config, network), per_start));

  auto r = std::make_shared<MachineRun>();
  r->began = began;
  FLICK_TRY_ASSIGN(r->wake, EventFd::create());
  FLICK_TRY_ASSIGN(r->listener, runner::listen_unix(vsock_path.string() + "_" + std::to_string(runner::kEventPort)));
  {
    std::lock_guard lk(console_mu);
    console_tail.clear();
  }

  VmConfig vc;
  vc.kernel = boot.kernel;
  vc.initrd = boot.base_initramfs;
  vc.initrd_append = {per_start};
  vc.cmdline = kBaseCmdline;
  for (const auto& arg : config.guest.kernel_args) vc.cmdline += " " + arg;
  for (const auto& arg : config.init.kernel_args) vc.cmdline += " " + arg;
  vc.cpus = config.guest.cpus;
  vc.memory_mib = config.guest.memory_mb;
  vc.kvm_device = host->options.kvm_device;
  vc.disks.push_back({image.path, false, true, dir, "rootfs"});
  for (const auto& v : volumes) vc.disks.push_back({v.path, false, false, {}, v.name});
  vc.vsock = VsockConfig{vsock_path, 3};
  if (network) vc.nets.push_back({network->tap, {}});
  vc.console = [this](std::string_view s) { on_console(s); };

  r->vm_create_began = Clock::now();
  auto vm = Vm::create(vc);
  if (!vm) return std::move(vm).error().with_context("machine " + id);
  r->vm = std::move(vm).value();
  if (network) {  // the VM has just made the TAP; it goes when the VM closes it
    if (auto up = runner::configure_tap(*network); !up) return std::move(up).error().with_context("machine " + id);
  }
  FLICK_TRY(r->vm->start());
  r->waiter = std::thread([run = r.get()] {
    run->exit = run->vm->wait();
    run->exited = true;
    (void)run->wake.signal();
  });
  return r;
}

// Follows one run from boot to the VM's end: the guest's events, the start timeout, stop
// requests and the kill deadline. Returns how the run ended.
ExitStatus Machine::Impl::watch(MachineRun& r, bool* reached_started) {
  ExitStatus st;
  UniqueFd conn;
  runner::LineSplitter splitter;
  std::string out;  // bytes for the guest not yet written
  bool started = false, got_exit = false, forced = false, stop_sent = false;
  int bad_lines = 0;
  const auto start_deadline = r.began + config.start_timeout;
  std::optional<Clock::time_point> kill_deadline;

  auto kill = [&] {
    if (!forced) {
      forced = true;
      r.vm->stop();
    }
  };
  auto handle = [&](const std::string& line) {
    auto ev = runner::parse_guest_event(line);
    if (!ev) {  // the guest's word: note a few, never flood the log
      if (++bad_lines <= 3) LOG_WARN("machine %s: %s", id.c_str(), ev.error().describe().c_str());
      return;
    }
    using Kind = runner::GuestEvent::Kind;
    switch (ev->kind) {
      case Kind::started: {
        if (started) return;
        started = true;
        auto now = Clock::now();
        auto vt = r.vm->timings();
        {
          std::lock_guard lk(mu);
          if (timings) {
            timings->started = now - r.began;
            if (vt.boot_timer) timings->boot_timer = (r.vm_create_began - r.began) + vt.setup + *vt.boot_timer;
          }
          if (state == MachineState::starting) set_state(MachineState::started);
        }
        record(MachineEventType::start, MachineState::started, std::nullopt, "pid " + std::to_string(ev->pid));
        return;
      }
      case Kind::exited: {
        got_exit = true;
        st.exit_code = ev->exit_code.value_or(-1);
        st.signal = ev->signal;
        std::lock_guard lk(mu);
        if (state == MachineState::started) set_state(MachineState::stopping);
        return;
      }
      case Kind::oom: st.oom_killed = true; return;
      case Kind::error: {
        got_exit = true;
        st.error = ev->message.empty() ? "flick-init reported an error" : ev->message;
        st.exit_code = ev->exit_code.value_or(1);
        return;
      }
    }
  };
  auto read_conn = [&] {  // false once the connection is gone
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(conn.get(), buf, sizeof buf);
      if (n > 0) {
        for (const auto& line : splitter.feed({buf, static_cast<size_t>(n)})) handle(line);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;
      conn.reset();  // EOF after the guest's half-close: closing ours lets it power off
      return false;
    }
  };

  for (;;) {
    bool kill_now = false;
    {
      std::lock_guard lk(mu);
      kill_now = kill_requested;
      if (stop_requested && !stop_sent) {
        if (started && conn) {
          out += stop_command_for(stop_how);
          stop_sent = true;
          kill_deadline = Clock::now() + stop_how.value_or(config.stop_config).timeout + kStopGrace;
        } else {
          kill_now = true;  // nothing runs yet that could stop gracefully, or no channel to ask
        }
      }
      if (conn) out += std::exchange(outbox, {});
    }
    if (kill_now) kill();
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

    pollfd fds[3] = {{r.wake.fd(), POLLIN, 0}, {r.listener.get(), POLLIN, 0},
                     {conn.get(), static_cast<short>(POLLIN | (out.empty() ? 0 : POLLOUT)), 0}};
    int n = ::poll(fds, 3, timeout_ms);
    if (n < 0 && errno != EINTR) {
      LOG_WARN("machine %s: poll: %s", id.c_str(), std::strerror(errno));
      kill();
    }
    if (n == 0) {
      now = Clock::now();
      if (!started && !forced && now >= start_deadline) {
        st.error = "the machine did not report started within " + ms_text(config.start_timeout);
        kill();
      }
      if (kill_deadline && !forced && now >= *kill_deadline) kill();
      continue;
    }
    if (fds[0].revents) {
      (void)r.wake.consume();
      if (r.exited) {
        if (conn) read_conn();  // what the guest sent before it powered off
        break;
      }
    }
    if (fds[1].revents) {
      int fd = ::accept4(r.listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        conn.reset(fd);
        r.listener.reset();
      }
    }
    if (conn && fds[2].revents) read_conn();
  }

  *reached_started = started;
  std::lock_guard lk(mu);
  st.requested_stop = stop_requested || kill_requested;
  if (!got_exit && st.error.empty()) {
    const VmExit& ex = r.exit;
    if (forced && st.requested_stop) {
      if (started) st.signal = SIGKILL;
      else st.error = "stopped before the program started";
    } else if (ex.reason == VmExitReason::power_off) {
      st.error = "the guest powered off without reporting how the program ended";
    } else if (ex.reason == VmExitReason::reboot) {
      st.error = "the guest rebooted before the program ended (a kernel panic does, with panic=-1)";
    } else {
      st.error = std::string("the guest ended: ") + to_string(ex.reason) + (ex.detail.empty() ? "" : ": " + ex.detail);
    }
    if (!st.requested_stop)
      if (auto line = telling_console_line(); !line.empty()) st.error += " (console: " + line + ")";
  }
  return st;
}

void Machine::Impl::supervise() {
  std::shared_ptr<MachineRun> r;
  {
    std::lock_guard lk(mu);
    r = run;
  }
  while (r) {
    bool reached = false;
    ExitStatus st = watch(*r, &reached);
    {
      std::lock_guard lk(mu);
      run.reset();
    }
    r.reset();  // joins the waiter and tears the VM down before anyone sees the machine settle
    remove_sockets();

    MachineState next = MachineState::stopped;
    std::string restart_detail;
    {
      std::lock_guard lk(mu);
      last_exit = st;
      if (!reached && !st.requested_stop) {
        next = MachineState::failed;
        if (st.error.empty()) st.error = "the guest reported an exit before the program started";
        failure = st.error;
      } else if (!st.requested_stop) {
        const auto& policy = config.restart;
        if (policy.policy == RestartPolicy::always) {
          next = MachineState::starting;
          restart_detail = "restart (always)";
        } else if (policy.policy == RestartPolicy::on_failure && !st.success()) {
          if (retries < policy.max_retries) {
            next = MachineState::starting;
            restart_detail = "restart " + std::to_string(++retries) + " of " +
                             std::to_string(policy.max_retries) + " (on-failure)";
          }
        } else if (st.success()) {
          retries = 0;
        }
      }
    }
    record(MachineEventType::exit, next, st, {}, /*enter_status=*/true);
    if (next != MachineState::starting) break;

    record(MachineEventType::restart, MachineState::starting, std::nullopt, restart_detail);
    auto began = Clock::now();
    auto booted = boot_run(began);
    if (!booted) {
      remove_sockets();
      ExitStatus failed{-1, 0, false, false, booted.error().describe()};
      {
        std::lock_guard lk(mu);
        failure = failed.error;
        last_exit = failed;
      }
      record(MachineEventType::exit, MachineState::failed, failed, {}, true);
      break;
    }
    std::lock_guard lk(mu);
    run = r = std::move(booted).value();
    timings = StartTimings{Clock::now() - began, std::nullopt, std::nullopt};
  }

  if (config.auto_destroy) {
    {
      std::lock_guard lk(mu);
      if (state != MachineState::stopped && state != MachineState::failed) return;
      set_state(MachineState::destroying);
    }
    auto removed = remove_files();
    if (!removed) LOG_WARN("machine %s: %s", id.c_str(), removed.error().describe().c_str());
    record(MachineEventType::destroy, MachineState::destroyed, std::nullopt, "auto_destroy", true);
  }
}

void Machine::Impl::remove_sockets() {
  ::unlink(vsock_path.c_str());
  ::unlink((vsock_path.string() + "_" + std::to_string(runner::kEventPort)).c_str());
}

Result<void> Machine::Impl::remove_files() {
  release_volumes();
  subnet.reset();
  remove_sockets();
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return make_error(Errc::io, "removing machine directory " + dir.string() + ": " + ec.message());
  return {};
}

Machine::Machine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Machine::~Machine() = default;

const std::string& Machine::id() const { return impl_->id; }
const std::string& Machine::name() const { return impl_->name; }
const MachineConfig& Machine::config() const { return impl_->config; }
const Rootfs& Machine::image() const { return impl_->image; }

const std::optional<MachineNetwork>& Machine::network() const { return impl_->network; }

MachineState Machine::state() const {
  std::lock_guard lk(impl_->mu);
  return impl_->state;
}

std::vector<MachineEvent> Machine::events() const {
  std::lock_guard lk(impl_->mu);
  return impl_->events;
}

std::optional<ExitStatus> Machine::last_exit() const {
  std::lock_guard lk(impl_->mu);
  return impl_->last_exit;
}

std::optional<StartTimings> Machine::last_start_timings() const {
  std::lock_guard lk(impl_->mu);
  return impl_->timings;
}

Result<void> Machine::start() {
  auto& d = *impl_;
  std::lock_guard life(d.lifecycle_mu);
  MachineState before;
  {
    std::lock_guard lk(d.mu);
    before = d.state;
    if (before != MachineState::created && before != MachineState::stopped && before != MachineState::failed)
      return make_error(Errc::busy, "machine " + d.id + " is " + to_string(before) +
                                        ": only a created, stopped or failed machine can start");
    d.stop_requested = d.kill_requested = false;
    d.stop_how.reset();
    d.outbox.clear();
    d.retries = 0;
    d.failure.clear();
    d.timings = StartTimings{};
    d.set_state(MachineState::starting);
  }
  if (d.supervisor.joinable()) d.supervisor.join();
  auto began = Clock::now();
  auto booted = d.boot_run(began);
  {
    std::lock_guard lk(d.mu);
    if (!booted) {
      d.remove_sockets();
      d.set_state(before);
      return std::move(booted).error();
    }
    d.run = std::move(booted).value();
    d.timings->vm_created = Clock::now() - began;
  }
  d.supervisor = std::thread([&d] { d.supervise(); });
  return {};
}

Result<void> Machine::stop(std::optional<StopConfig> how) {
  auto& d = *impl_;
  const StopConfig effective = how.value_or(d.config.stop_config);
  {
    std::unique_lock lk(d.mu);
    if (d.state == MachineState::destroying || d.state == MachineState::destroyed)
      return make_error(Errc::busy, "machine " + d.id + " is " + to_string(d.state));
    if (!running(d.state)) return {};
    if (!d.stop_requested) {
      d.stop_requested = true;
      d.stop_how = how;
      d.set_state(MachineState::stopping);
      d.wake_run();
      lk.unlock();
      d.record(MachineEventType::stop, MachineState::stopping, std::nullopt,
               "signal " + std::to_string(effective.signal) + ", timeout " + ms_text(effective.timeout));
    }
  }
  auto limit = effective.timeout + kStopGrace + 30s;
  std::unique_lock lk(d.mu);
  if (!d.cv.wait_for(lk, limit, [&] { return settled(d.state); }))
    return make_error(Errc::timeout, "machine " + d.id + " did not stop within " +
                                         ms_text(std::chrono::duration_cast<std::chrono::milliseconds>(limit)));
  return {};
}

Result<void> Machine::signal(int signo) {
  auto& d = *impl_;
  if (signo < 1 || signo > 64) return make_error(Errc::invalid_argument, "signal " + std::to_string(signo) + " is not a signal number");
  std::lock_guard lk(d.mu);
  if (d.state != MachineState::started)
    return make_error(Errc::busy, "machine " + d.id + " is " + to_string(d.state) + ": its program is not running");
  d.outbox += runner::signal_command(signo);
  d.wake_run();
  return {};
}

Result<void> Machine::destroy(bool force) {
  auto& d = *impl_;
  std::lock_guard life(d.lifecycle_mu);
  {
    std::unique_lock lk(d.mu);
    if (running(d.state)) {
      if (!force)
        return make_error(Errc::busy, "machine " + d.id + " is " + to_string(d.state) +
                                          ": stop it first, or destroy it with force");
      d.kill_requested = true;
      d.wake_run();
    }
    d.cv.wait(lk, [&] { return !running(d.state); });
  }
  if (d.supervisor.joinable()) d.supervisor.join();  // it may be destroying the machine itself
  {
    std::lock_guard lk(d.mu);
    if (d.state == MachineState::destroyed) return {};
    d.set_state(MachineState::destroying);
  }
  auto removed = d.remove_files();
  d.record(MachineEventType::destroy, MachineState::destroyed, std::nullopt, force ? "forced" : "", true);
  return removed;
}

Result<void> Machine::wait(MachineState target, std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  std::unique_lock lk(d.mu);
  // A failed machine may still be on its way to `destroyed` (auto_destroy).
  bool past_failed = target == MachineState::destroying || target == MachineState::destroyed;
  bool done = d.cv.wait_for(lk, timeout, [&] {
    return d.state == target || (d.state == MachineState::failed && !past_failed) ||
           d.state == MachineState::destroyed;
  });
  if (d.state == target) return {};
  if (!done)
    return make_error(Errc::timeout, "machine " + d.id + " is still " + to_string(d.state) + " after " +
                                         ms_text(timeout) + " (waiting for " + to_string(target) + ")");
  if (d.state == MachineState::failed && !past_failed)
    return make_error(Errc::guest_failure, "machine " + d.id + " failed: " + d.failure);
  return make_error(Errc::busy, "machine " + d.id + " was destroyed");
}

}  // namespace flick
