// Machine: a handle on a stored machine. start() writes what the run needs and spawns it
// (flick-vmm); stop, signal and kill go to the run's control socket; everything else reads
// the store, which the run keeps up to date.
#include <flick/machine.h>

#include "base/flock.h"
#include "base/log.h"
#include "machine/files.h"
#include "machine/initramfs.h"
#include "machine/log_follower.h"
#include "machine/machine_impl.h"
#include "runner/control.h"
#include "runner/exec_channel.h"
#include "runner/guest_channel.h"
#include "runner/machine_dir.h"
#include "runner/run_spec.h"
#include "runner/spawn.h"
#include "store/names.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace flick {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// No PCI in a flick VM: pci=off, and x86's PCI set-up skipped (it would only log that it
// found no config space access, on every boot).
constexpr const char* kBaseCmdline = "console=ttyS0 quiet panic=-1 pci=off initcall_blacklist=pci_subsys_init";

bool running(std::string_view s) { return running_state(s); }
bool settled(std::string_view s) { return s == "stopped" || s == "failed" || s == "destroyed"; }

// Wakes a waiter when the store's database changes (its WAL is written), or after `max`.
class StoreWatch {
 public:
  explicit StoreWatch(const fs::path& dir) : fd_(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) {
    if (fd_) ::inotify_add_watch(fd_.get(), dir.c_str(), IN_MODIFY | IN_CREATE | IN_MOVED_TO);
  }
  void wait(std::chrono::milliseconds max) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(max.count())) > 0) {
      char buf[4096];
      while (::read(fd_.get(), buf, sizeof buf) > 0) {
      }
    }
  }

 private:
  UniqueFd fd_;
};

// The run lock, exclusively, for a start or a destroy: Errc::busy when a run holds it.
Result<UniqueFd> take_run_lock(const fs::path& path, const std::string& id) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return sys_error("opening " + path.string(), errno);
  // A liveness check holds it shared for an instant, and a run that has recorded its end
  // exits a moment later: try for a while before calling it taken.
  for (int i = 0; i < 200; ++i) {
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return fd;
    if (errno != EWOULDBLOCK) return sys_error("locking " + path.string(), errno);
    ::usleep(10000);
  }
  return make_error(Errc::busy, "machine " + id + " has a run (another process started it)");
}

MachineEvent to_event(const store::EventRow& row) {
  MachineEvent e;
  e.id = static_cast<uint64_t>(row.id);
  e.type = store::machine_event_type_from_string(row.type).value_or(MachineEventType::launch);
  e.source = row.source;
  e.status = store::machine_state_from_string(row.status).value_or(MachineState::failed);
  e.timestamp = std::chrono::system_clock::time_point(std::chrono::milliseconds(row.timestamp_ms));
  if (row.request.empty()) return e;
  try {
    json r = json::parse(row.request);
    if (r.contains("exit_event"))
      if (auto st = runner::parse_exit_status(r["exit_event"].dump())) e.exit = std::move(st).value();
    if (r.contains("detail")) e.detail = r["detail"].get<std::string>();
    else if (r.contains("pid")) e.detail = "pid " + std::to_string(r["pid"].get<int>());
  } catch (const json::exception&) {
  }
  return e;
}

}  // namespace

Machine::Impl::Impl(std::shared_ptr<Host::Impl> h, const store::MachineRow& r, MachineConfig c, MachineBoot b,
                    MachineHandlers hs)
    : host(std::move(h)),
      id(r.id),
      name(r.name),
      app(r.app),
      region(r.region),
      created_at(std::chrono::milliseconds(r.created_at_ms)),
      dir(host->machine_dir(id)),
      view(std::make_shared<const View>(View{r.config, r.boot, std::move(c), std::move(b)})),
      handlers(std::move(hs)) {
  if (!handlers.console && !handlers.output && !handlers.event) return;
  // Follow from now on: events already recorded are history, not news.
  if (auto evs = host->store.events(id, 1); evs && !evs->empty()) last_event_id = evs->front().id;
  follower = std::thread([this] { follow(); });
}

Machine::Impl::~Impl() {
  closing = true;
  if (follower.joinable()) follower.join();
}

// Delivers console output and events as they reach the log and the store, until the handle
// closes (then once more, so nothing recorded before the close is lost).
void Machine::Impl::follow() {
  StoreWatch watch(host->options.state_dir);
  machine::LogFollower console(console_path(), machine::LogFollower::From::end);
  machine::LogFollower output(output_path(), machine::LogFollower::From::end);
  for (bool last = false; !last;) {
    last = closing.load();
    if (handlers.console) console.drain(handlers.console);
    if (handlers.output) output.drain(handlers.output);
    if (handlers.event) {
      if (auto evs = host->store.events(id, 0, last_event_id); evs) {
        for (auto it = evs->rbegin(); it != evs->rend(); ++it) {
          last_event_id = it->id;
          handlers.event(to_event(*it));
        }
      }
    }
    if (!last) watch.wait(50ms);
  }
}

Result<store::MachineRow> Machine::Impl::wait_until(const std::function<bool(const store::MachineRow&)>& done,
                                                    std::chrono::milliseconds timeout) {
  StoreWatch watch(host->options.state_dir);
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    FLICK_TRY_ASSIGN(auto r, row());
    if (done(r)) return r;
    if ((running(r.state) || r.state == "destroying") && !flock_held(lock_path())) {
      host->settle_if_orphaned(r);
      continue;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= 0ms) return r;
    watch.wait(std::min<std::chrono::milliseconds>(left, 250ms));
  }
}

Result<std::shared_ptr<const Machine::Impl::View>> Machine::Impl::refresh(const store::MachineRow& r) {
  if (auto v = current(); v->config_json == r.config && v->boot_json == r.boot) return v;
  auto c = MachineConfig::from_json(r.config);
  if (!c) return std::move(c).error().with_context("machine " + id + "'s stored config");
  FLICK_TRY_ASSIGN(auto b, MachineBoot::from_json(r.boot));
  auto fresh = std::make_shared<const View>(View{r.config, r.boot, std::move(c).value(), std::move(b)});
  std::lock_guard lk(mu);
  retired.push_back(std::move(view));
  view = fresh;
  return fresh;
}

Result<void> Machine::Impl::write_run_spec(const store::MachineRow& row) {
  FLICK_TRY_ASSIGN(auto seen, refresh(row));
  const MachineConfig& config = seen->config;
  const MachineBoot& boot = seen->boot;
  FLICK_TRY(host->restore_rootfs(config, boot.image));
  std::vector<machine::GuestMount> mounts;
  for (size_t i = 0; i < config.mounts.size(); ++i)
    mounts.push_back({machine::virtio_disk_name(i + 1), config.mounts[i].path});
  fs::path per_start = dir / "config.cpio";
  machine::ProcessSpec process = boot.process;
  process.terminal = "/dev/ttyS1";  // the VM's second serial port: the program's output apart
  FLICK_TRY(machine::write_config_archive(
      machine::init_config_json(id, process, mounts, config.stop_config, boot.network), per_start,
      metadata_json(row)));

  runner::RunSpec s;
  s.machine_id = id;
  s.store = host->db_path();
  s.machine_dir = dir;
  s.lock_path = lock_path();
  s.control_path = control_path();
  s.console_log = console_path();
  s.output_log = output_path();
  VmConfig& vc = s.vm;
  vc.kernel = boot.kernel;
  vc.initrd = boot.initramfs;
  vc.initrd_append = {per_start};
  vc.cmdline = kBaseCmdline;
  for (const auto& arg : config.guest.kernel_args) vc.cmdline += " " + arg;
  for (const auto& arg : config.init.kernel_args) vc.cmdline += " " + arg;
  vc.cpus = config.guest.cpus;
  vc.memory_mib = config.guest.memory_mb;
  vc.kvm_device = host->options.kvm_device;
  if (vc.kvm_device.empty())
    if (const char* e = std::getenv("FLICK_KVM_DEVICE"); e && *e) vc.kvm_device = e;  // flick-vmm's env is clean
  vc.disks.push_back({boot.image.path, false, true, dir, "rootfs"});
  FLICK_TRY_ASSIGN(auto volumes, host->store.list_volumes(app));
  for (const auto& m : config.mounts) {
    auto v = std::find_if(volumes.begin(), volumes.end(), [&](const store::VolumeRow& vr) { return vr.id == m.volume; });
    if (v == volumes.end()) return make_error(Errc::not_found, "machine " + id + ": volume " + m.volume + " is gone");
    vc.disks.push_back({v->path, false, false, {}, v->name});
  }
  vc.vsock = VsockConfig{vsock_path(), 3};
  if (boot.network) vc.nets.push_back({boot.network->tap, {}});
  s.network = boot.network;
  s.restart = config.restart;
  s.stop = config.stop_config;
  s.start_timeout = config.start_timeout;
  s.auto_destroy = config.auto_destroy;
  std::string text = s.to_json();
  return machine::write_file_atomic(spec_path(), text.data(), text.size());
}

Machine::Machine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Machine::~Machine() = default;

const std::string& Machine::id() const { return impl_->id; }
const std::string& Machine::name() const { return impl_->name; }
const std::string& Machine::app() const { return impl_->app; }
const std::string& Machine::region() const { return impl_->region; }
std::chrono::system_clock::time_point Machine::created_at() const { return impl_->created_at; }
const MachineConfig& Machine::config() const { return impl_->current()->config; }
const Rootfs& Machine::image() const { return impl_->current()->boot.image; }
const std::optional<MachineNetwork>& Machine::network() const { return impl_->current()->boot.network; }

std::chrono::system_clock::time_point Machine::updated_at() const {
  auto r = impl_->row();
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(r ? r->updated_at_ms : 0));
}

MachineState Machine::state() const {
  auto r = impl_->row();
  if (!r) return MachineState::destroyed;
  if (running(r->state) && !flock_held(impl_->lock_path())) {
    impl_->host->settle_if_orphaned(*r);
    r = impl_->row();
    if (!r) return MachineState::destroyed;
  }
  return store::machine_state_from_string(r->state).value_or(MachineState::failed);
}

std::vector<MachineEvent> Machine::events(size_t last) const {
  std::vector<MachineEvent> out;
  auto evs = impl_->host->store.events(impl_->id, last);
  if (!evs) return out;
  for (auto it = evs->rbegin(); it != evs->rend(); ++it) out.push_back(to_event(*it));
  return out;
}

std::optional<ExitStatus> Machine::last_exit() const {
  auto r = impl_->row();
  if (!r || r->last_exit.empty()) return std::nullopt;
  auto st = runner::parse_exit_status(r->last_exit);
  if (!st) return std::nullopt;
  return std::move(st).value();
}

std::optional<StartTimings> Machine::last_start_timings() const {
  std::optional<StartTimings> t;
  {
    std::lock_guard lk(impl_->mu);
    t = impl_->timings;
  }
  if (!t) return t;
  auto evs = impl_->host->store.events(impl_->id, 0);
  if (!evs) return t;
  for (const auto& e : *evs) {  // newest first: the start of the run this handle began
    if (e.type != "start" || e.request.empty()) continue;
    try {
      json timings = json::parse(e.request).at("timings");
      t->started = std::chrono::nanoseconds(timings.at("started_ns").get<int64_t>());
      if (timings.contains("boot_timer_ns")) t->boot_timer = std::chrono::nanoseconds(timings["boot_timer_ns"].get<int64_t>());
    } catch (const json::exception&) {
    }
    break;
  }
  return t;
}

Result<void> Machine::start() {
  auto& d = *impl_;
  const auto began = Clock::now();
  const std::vector<std::string> startable = {"created", "stopped", "failed"};
  FLICK_TRY_ASSIGN(auto before, d.row());
  if (std::find(startable.begin(), startable.end(), before.state) == startable.end())
    return make_error(Errc::busy, "machine " + d.id + " is " + before.state +
                                      ": only a created, stopped or failed machine can start");
  // The run lock, then the state: while the lock is held no other process starts or settles
  // this machine, and the compare-and-set catches one that got there in between.
  FLICK_TRY_ASSIGN(UniqueFd lock, take_run_lock(d.lock_path(), d.id));
  store::Transition t;
  t.machine_id = d.id;
  t.from = startable;
  t.to = "starting";
  t.lease_nonce = d.nonce();
  auto moved = d.host->store.transition(t);
  if (!moved) {
    if (auto now = d.row(); now && now->state == "destroyed") runner::remove_machine_dir(d.dir);  // our lock file
    Error e = std::move(moved).error();
    if (e.code == Errc::busy) e.message += ": only a created, stopped or failed machine can start";
    return e;
  }
  auto undo = [&](Error e) -> Error {
    store::Transition back;
    back.machine_id = d.id;
    back.from = {"starting"};
    back.to = before.state;
    back.by_run = true;  // undoing our own step, lease or not
    (void)d.host->store.transition(back);
    return e;
  };
  std::error_code ec;
  fs::create_directories(d.dir, ec);
  if (auto w = d.write_run_spec(*moved); !w) return undo(std::move(w).error());
  fs::path program = d.host->options.vmm_program;
  if (program.empty()) {
    auto found = runner::find_vmm_program();
    if (!found) return undo(std::move(found).error());
    program = *found;
  }
  if (auto run = runner::spawn_run(program, d.spec_path(), d.dir / "vmm.log", lock.get(), began); !run)
    return undo(std::move(run).error());
  std::lock_guard lk(d.mu);
  d.timings = StartTimings{Clock::now() - began, std::nullopt, std::nullopt};
  return {};
}

namespace {

// The run's control socket, as its spec names it.
Result<runner::ControlClient> control(const Machine::Impl& d) {
  FLICK_TRY_ASSIGN(auto text, machine::read_file(d.spec_path()));
  FLICK_TRY_ASSIGN(auto spec, runner::RunSpec::from_json(text));
  return runner::ControlClient::connect(spec.control_path);
}

}  // namespace

Result<void> Machine::stop(std::optional<StopConfig> how) {
  auto& d = *impl_;
  FLICK_TRY_ASSIGN(auto r, d.row());
  if (r.state == "destroying" || r.state == "destroyed") return make_error(Errc::busy, "machine " + d.id + " is " + r.state);
  FLICK_TRY(d.host->store.check_lease(d.id, d.nonce()));
  if (!running(r.state)) return {};
  FLICK_TRY_ASSIGN(auto v, d.refresh(r));
  const StopConfig effective = how.value_or(v->config.stop_config);
  if (auto c = control(d)) {
    if (auto s = c->stop(effective, d.nonce());
        !s && (s.error().code == Errc::busy || s.error().code == Errc::lease_held))
      return std::move(s).error();
  }
  auto limit = effective.timeout + runner::kStopGrace + 30s;
  // Settled, and the run gone: a start right after this one finds the machine free.
  FLICK_TRY_ASSIGN(r, d.wait_until([&](const store::MachineRow& x) { return !running(x.state) && !flock_held(d.lock_path()); },
                                   limit));
  if (running(r.state))
    return make_error(Errc::timeout, "machine " + d.id + " did not stop within " + store::format_duration(limit));
  return {};
}

Result<void> Machine::signal(int signo) {
  auto& d = *impl_;
  if (signo < 1 || signo > 64) return make_error(Errc::invalid_argument, "signal " + std::to_string(signo) + " is not a signal number");
  FLICK_TRY_ASSIGN(auto r, d.row());
  if (r.state != "started")
    return make_error(Errc::busy, "machine " + d.id + " is " + r.state + ": its program is not running");
  FLICK_TRY(d.host->store.check_lease(d.id, d.nonce()));
  FLICK_TRY_ASSIGN(auto c, control(d));
  return c.signal(signo);
}

Result<void> Machine::destroy(bool force) {
  auto& d = *impl_;
  FLICK_TRY_ASSIGN(auto r, d.row());
  if (r.state != "destroyed") FLICK_TRY(d.host->store.check_lease(d.id, d.nonce()));
  if (running(r.state)) {
    if (!force)
      return make_error(Errc::busy, "machine " + d.id + " is " + r.state + ": stop it first, or destroy it with force");
    if (auto c = control(d)) (void)c->kill(d.nonce());
    FLICK_TRY_ASSIGN(r, d.wait_until([&](const store::MachineRow& x) { return !running(x.state) && !flock_held(d.lock_path()); },
                                     60s));
    if (running(r.state)) return make_error(Errc::timeout, "machine " + d.id + " did not end within 60 s of a kill");
  }
  if (r.state == "destroyed") return {};
  // auto_destroy may be finishing it: then the lock (or its directory) goes, and the state
  // says `destroyed`; a lock file made again meanwhile is removed with the directory.
  auto destroyed_meanwhile = [&] {
    auto now = d.row();
    if (!now || now->state != "destroyed") return false;
    runner::remove_machine_dir(d.dir);
    return true;
  };
  auto lock = take_run_lock(d.lock_path(), d.id);
  if (!lock) return destroyed_meanwhile() ? Result<void>() : Result<void>(std::move(lock).error());
  store::Transition t;
  t.machine_id = d.id;
  t.from = {"created", "stopped", "failed"};
  t.to = "destroying";
  t.lease_nonce = d.nonce();
  if (auto moved = d.host->store.transition(t); !moved) {
    if (destroyed_meanwhile()) return {};
    return std::move(moved).error();
  }
  Result<void> removed = runner::remove_machine_files(d.dir);
  ::unlink(d.control_path().c_str());
  t.from = {"destroying"};
  t.to = "destroyed";
  store::EventRow e;
  e.type = "destroy";
  e.source = "user";
  if (force) e.request = R"({"detail":"forced"})";
  t.event = e;
  FLICK_TRY(d.host->store.transition(t));
  runner::remove_machine_dir(d.dir);
  return removed;
}

Result<void> Machine::wait(MachineState target, std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  const std::string want = to_string(target);
  // A failed machine may still be on its way to `destroyed` (auto_destroy).
  bool past_failed = target == MachineState::destroying || target == MachineState::destroyed;
  // A settled state is reported once the run that recorded it has also ended (and a
  // destroyed machine's directory is gone), so what follows finds the machine free.
  auto run_over = [&](const store::MachineRow& x) {
    if (x.state == "destroyed") return !fs::exists(d.dir);
    return !(settled(x.state) && flock_held(d.lock_path()));
  };
  FLICK_TRY_ASSIGN(auto r, d.wait_until(
                               [&](const store::MachineRow& x) {
                                 return (x.state == want || (x.state == "failed" && !past_failed) ||
                                         x.state == "destroyed") &&
                                        run_over(x);
                               },
                               timeout));
  if (r.state == want) return {};
  if (r.state == "failed" && !past_failed) {
    std::string why = "the start failed";
    if (auto st = runner::parse_exit_status(r.last_exit); st && !st->error.empty()) why = st->error;
    return make_error(Errc::guest_failure, "machine " + d.id + " failed: " + why);
  }
  if (r.state == "destroyed") return make_error(Errc::busy, "machine " + d.id + " was destroyed");
  return make_error(Errc::timeout, "machine " + d.id + " is still " + r.state + " after " + store::format_duration(timeout) +
                                       " (waiting for " + want + ")");
}

Result<ExecResult> Machine::exec(const ExecRequest& request, const ExecOutput& output) {
  auto& d = *impl_;
  if (request.cmd.empty() || request.cmd[0].empty())
    return make_error(Errc::invalid_argument, "exec in machine " + d.id + ": no command");
  if (!request.workdir.empty() && request.workdir[0] != '/')
    return make_error(Errc::invalid_argument, "exec in machine " + d.id + ": workdir " + request.workdir + " is not absolute");
  FLICK_TRY_ASSIGN(auto r, d.row());
  if (r.state != "started")
    return make_error(Errc::busy, "machine " + d.id + " is " + r.state + ": exec needs a started machine");
  FLICK_TRY(d.host->store.check_lease(d.id, d.nonce()));  // as Fly's exec: 409 without the nonce
  FLICK_TRY_ASSIGN(auto text, machine::read_file(d.spec_path()));
  FLICK_TRY_ASSIGN(auto spec, runner::RunSpec::from_json(text));
  if (!spec.vm.vsock) return make_error(Errc::unsupported, "machine " + d.id + " has no vsock device");
  auto result = runner::exec_in_guest(spec.vm.vsock->uds_path, request, output);
  if (!result) return std::move(result).error().with_context("exec in machine " + d.id);
  return result;
}

Result<std::vector<ProcessInfo>> Machine::processes() {
  auto& d = *impl_;
  FLICK_TRY_ASSIGN(auto r, d.row());
  if (r.state != "started")
    return make_error(Errc::busy, "machine " + d.id + " is " + r.state + ": ps needs a started machine");
  FLICK_TRY_ASSIGN(auto text, machine::read_file(d.spec_path()));
  FLICK_TRY_ASSIGN(auto spec, runner::RunSpec::from_json(text));
  if (!spec.vm.vsock) return make_error(Errc::unsupported, "machine " + d.id + " has no vsock device");
  auto list = runner::list_guest_processes(spec.vm.vsock->uds_path);
  if (!list) return std::move(list).error().with_context("ps in machine " + d.id);
  return list;
}

Result<ExecResult> Machine::exec(const ExecRequest& request) {
  ExecResult kept;
  auto keep = [&](std::string& to) {
    return [&to, &kept](std::string_view chunk) {
      size_t room = kExecOutputCap - to.size();
      if (chunk.size() > room) kept.truncated = true;
      to.append(chunk.substr(0, room));
    };
  };
  ExecOutput output;
  output.stdout_chunk = keep(kept.stdout_data);
  output.stderr_chunk = keep(kept.stderr_data);
  FLICK_TRY_ASSIGN(auto result, exec(request, output));
  result.stdout_data = std::move(kept.stdout_data);
  result.stderr_data = std::move(kept.stderr_data);
  result.truncated = kept.truncated;
  return result;
}

}  // namespace flick
