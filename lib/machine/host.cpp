// Host: where machines live on this computer, and what they share.
#include <flick/machine.h>

#include "base/log.h"
#include "machine/embedded_init.h"
#include "machine/host_impl.h"
#include "machine/initramfs.h"
#include "machine/machine_impl.h"
#include "machine/pvh_kernel.h"
#include "machine/volume.h"
#include "runner/host_network.h"
#include "runner/machine_dir.h"
#include "runner/run_spec.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>

namespace fs = std::filesystem;

namespace flick {

namespace {

constexpr const char* kDefaultApp = "default";
constexpr uint32_t kSubnets = 16384;  // /30s in 172.19.0.0/16

fs::path env_path(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? fs::path(v) : fs::path();
}

fs::path default_state_dir() {
  if (auto p = env_path("FLICK_STATE_DIR"); !p.empty()) return p;
  if (auto p = env_path("XDG_STATE_HOME"); !p.empty()) return p / "flick";
  auto home = env_path("HOME");
  return (home.empty() ? fs::path("/tmp") : home) / ".local" / "state" / "flick";
}

fs::path default_run_dir() {
  if (auto p = env_path("XDG_RUNTIME_DIR"); !p.empty()) return p / "flick";
  return "/tmp/flick-" + std::to_string(::getuid());
}

// The run directory holds sockets other users must not reach: ours, and 0700.
Result<void> prepare_run_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(Errc::io, "creating run directory " + dir.string() + ": " + ec.message());
  struct stat st{};
  if (::lstat(dir.c_str(), &st) != 0) return sys_error("run directory " + dir.string(), errno);
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::getuid())
    return make_error(Errc::io, "run directory " + dir.string() + " is not a directory owned by this user");
  if ((st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) != 0)
    return sys_error("making run directory " + dir.string() + " private", errno);
  return {};
}

std::string new_machine_id() {
  unsigned char bytes[7];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) id += {hex[b >> 4], hex[b & 15]};
  return id;
}

Result<BootFiles> boot_files_for(const machine::GuestKernel& kernel, const fs::path& cache_dir) {
  auto initramfs = machine::build_base_initramfs(kernel, machine::embedded_init(),
                                                 machine::default_guest_modules(), cache_dir);
  if (!initramfs) return std::move(initramfs).error().with_context("building the initramfs for " + kernel.vmlinuz.string());
  // Its vmlinux, when it has a PVH entry: then no start decompresses the kernel in the guest.
  fs::path boot = kernel.vmlinuz;
  if (auto pvh = machine::pvh_vmlinux(kernel.vmlinuz, cache_dir); !pvh)
    LOG_INFO("booting %s as it is: %s", kernel.vmlinuz.c_str(), pvh.error().describe().c_str());
  else if (*pvh)
    boot = **pvh;
  return BootFiles{boot, *initramfs};
}

Volume to_volume(const store::VolumeRow& r) {
  Volume v{r.id, r.name, r.app, r.path, 0, r.attached_machine_id};
  struct stat st{};
  if (::stat(r.path.c_str(), &st) == 0) v.size_bytes = static_cast<uint64_t>(st.st_size);
  return v;
}

// Volumes from before the store (<state>/volumes/<name>.ext4) become volumes of the default
// app, named as before, their files renamed to their new ids.
void import_legacy_volumes(Host::Impl& h) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(h.volume_dir(), ec)) {
    const fs::path& p = entry.path();
    std::string name = p.stem().string();
    if (p.extension() != ".ext4" || name.rfind("vol_", 0) == 0 || !machine::check_volume_name(name)) continue;
    store::VolumeRow v;
    v.id = store::new_volume_id();
    v.name = name;
    v.app = kDefaultApp;
    v.path = (h.volume_dir() / (v.id + ".ext4")).string();
    v.size_gb = std::max<uint64_t>(1, fs::file_size(p, ec) >> 30);
    if (::rename(p.c_str(), v.path.c_str()) != 0) continue;
    if (auto in = h.store.insert_volume(v); !in) {
      ::rename(v.path.c_str(), p.c_str());
      LOG_WARN("importing volume %s: %s", name.c_str(), in.error().describe().c_str());
    }
  }
}

}  // namespace

Result<Rootfs> Host::Impl::rootfs(const MachineConfig& config) {
  PullOptions pull;
  pull.policy = config.pull;
  RootfsOptions size;
  size.size_bytes = uint64_t{config.guest.rootfs_size_mb} << 20;
  auto built = images.rootfs(config.image, size, pull);
  if (built) return built;
  if (config.guest.rootfs_size_mb && built.error().code == Errc::limit)
    return make_error(Errc::invalid_argument, "machine config: guest.rootfs_size_mb: " +
                                                  std::to_string(config.guest.rootfs_size_mb) +
                                                  " MiB is too small for image " + config.image + ": " +
                                                  built.error().message);
  return std::move(built).error().with_context("image " + config.image);
}

Result<void> Host::Impl::restore_rootfs(const MachineConfig& config, const Rootfs& had) {
  if (fs::exists(had.path)) return {};
  MachineConfig pinned = config;
  if (auto ref = ImageReference::parse(config.image, options.images.default_registry);
      ref && ref->transport == ImageTransport::registry) {
    ref->tag.clear();
    ref->digest = had.image_digest;
    pinned.image = ref->to_string();
  }
  if (pinned.pull == PullPolicy::always) pinned.pull = PullPolicy::missing;
  auto gone = [&](const std::string& why) {
    return make_error(Errc::not_found, "the rootfs of image " + config.image + " (" + had.image_digest +
                                           ") is gone from the image cache and cannot be rebuilt: " + why);
  };
  auto built = rootfs(pinned);
  if (!built) return gone(built.error().message);
  if (built->image_digest != had.image_digest)
    return gone(config.image + " is now " + built->image_digest + " (update the machine to run it)");
  if (built->path != had.path) return gone("it was rebuilt at " + built->path.string() + ", not " + had.path.string());
  return {};
}

Result<BootFiles> Host::Impl::boot_files(const GuestConfig& guest) {
  // The machine's own kernel, else the Host's: given, or fetched on first use.
  const std::string& kernel_path = guest.kernel.empty() ? options.kernel : guest.kernel;
  const std::string& modules_path = guest.kernel.empty() ? options.kernel_modules : guest.kernel_modules;
  std::lock_guard lk(mu);
  std::string key = kernel_path + '\n' + modules_path;
  if (auto it = boot.find(key); it != boot.end()) return it->second;
  machine::GuestKernel kernel;
  if (!kernel_path.empty()) {
    std::optional<fs::path> modules;
    if (!modules_path.empty()) modules = modules_path;
    FLICK_TRY_ASSIGN(kernel, machine::GuestKernel::from_dir(kernel_path, modules));
  } else {
    auto fetched = machine::fetch_guest_kernel(options.cache_dir);
    if (!fetched) return std::move(fetched).error().with_context("fetching the default guest kernel");
    kernel = std::move(fetched).value();
  }
  FLICK_TRY_ASSIGN(auto files, boot_files_for(kernel, options.cache_dir));
  return boot.emplace(std::move(key), std::move(files)).first->second;
}

Result<std::unique_ptr<Machine>> Host::Impl::open_machine(const store::MachineRow& row, MachineHandlers handlers,
                                                          std::shared_ptr<Impl> self) {
  auto config = MachineConfig::from_json(row.config);
  if (!config) return std::move(config).error().with_context("machine " + row.id + "'s stored config");
  FLICK_TRY_ASSIGN(auto resolved, MachineBoot::from_json(row.boot));
  auto m = std::make_unique<Machine::Impl>(std::move(self), row, std::move(config).value(), std::move(resolved),
                                           std::move(handlers));
  return std::unique_ptr<Machine>(new Machine(std::move(m)));
}

void Host::Impl::settle_if_orphaned(const store::MachineRow& seen) {
  fs::path dir = machine_dir(seen.id);
  // Never created here: a start makes the lock file before the machine leaves created, stopped
  // or failed, and a destroy removes it only after recording `destroyed`, so a missing one
  // means no run — and creating it could keep a destroy from removing the directory.
  UniqueFd lock(::open((dir / runner::kRunLock).c_str(), O_RDWR | O_CLOEXEC));
  if (!lock && errno != ENOENT) return;
  if (lock && ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) return;  // a run is alive
  // Unlocked, or no lock at all: read it again, it may have settled meanwhile.
  auto row = store.get_machine("", seen.id);
  if (!row) return;
  store::Transition t;
  t.machine_id = row->id;
  t.by_run = true;  // recording what happened, lease or not
  if (row->state == "destroying") {  // a destroy was interrupted: finish it
    (void)runner::remove_machine_files(dir);
    t.from = {"destroying"};
    t.to = "destroyed";
    store::EventRow e;
    e.type = "destroy";
    e.source = "flick";
    e.request = R"({"detail":"finished after an interrupted destroy"})";
    t.event = e;
  } else if (running_state(row->state)) {
    ExitStatus st;
    st.error = "the machine's run ended without recording how (its flick-vmm was killed or crashed, or the host went down)";
    st.run_lost = true;
    t.from = {row->state};
    t.to = row->state == "starting" ? "failed" : "stopped";
    t.last_exit = runner::exit_status_json(st);
    store::EventRow e;
    e.type = "exit";
    e.source = "flick";
    e.request = nlohmann::json{{"exit_event", nlohmann::json::parse(*t.last_exit)}}.dump();
    t.event = e;
  } else {
    return;
  }
  if (auto r = store.transition(t); !r)
    LOG_WARN("machine %s: settling its ended run: %s", row->id.c_str(), r.error().describe().c_str());
  else if (t.to == "destroyed")
    runner::remove_machine_dir(dir);
}

Host::Host(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Host::~Host() = default;

Result<std::unique_ptr<Host>> Host::open(HostOptions o) {
  if (o.state_dir.empty()) o.state_dir = default_state_dir();
  if (o.cache_dir.empty()) o.cache_dir = ImageStore::default_dir();
  if (o.run_dir.empty()) o.run_dir = default_run_dir();
  if (o.kernel.empty()) {  // for hosts that cannot fetch Debian's kernel
    o.kernel = env_path("FLICK_KERNEL");
    if (o.kernel_modules.empty()) o.kernel_modules = env_path("FLICK_KERNEL_MODULES");
  }
  std::error_code ec;
  for (const auto& d : {o.state_dir / "machines", o.state_dir / "volumes"}) {
    fs::create_directories(d, ec);
    if (ec) return make_error(Errc::io, "creating state directory " + d.string() + ": " + ec.message());
  }
  FLICK_TRY(prepare_run_dir(o.run_dir));
  auto images = ImageStore::open(o.cache_dir, o.images);
  if (!images) return std::move(images).error();
  auto db = store::MachineStore::open(o.state_dir / "flick.db");
  if (!db) return std::move(db).error();
  FLICK_TRY(db->ensure_app(kDefaultApp));
  auto impl = std::make_shared<Impl>(std::move(o), std::move(images).value(), std::move(db).value());
  import_legacy_volumes(*impl);
  store::MachineFilter unsettled;
  unsettled.states = {"starting", "started", "stopping", "destroying"};
  if (auto rows = impl->store.list_machines(unsettled))
    for (const auto& row : *rows) impl->settle_if_orphaned(row);
  return std::unique_ptr<Host>(new Host(std::move(impl)));
}

Result<std::unique_ptr<Machine>> Host::create(const MachineConfig& given, MachineHandlers handlers, std::string name,
                                              std::string app) {
  FLICK_TRY(given.validate());
  if (app.empty()) app = kDefaultApp;
  auto& store = impl_->store;
  if (auto a = store.get_app(app); !a) return std::move(a).error();
  MachineConfig config = given;
  std::vector<std::string> volume_ids;
  for (auto& m : config.mounts) {  // by id or by a name unique in the app; kept by id
    auto v = store.get_volume(app, m.volume);
    if (!v) return std::move(v).error().with_context("machine mount " + m.path);
    if (!v->attached_machine_id.empty())
      return make_error(Errc::busy, "volume " + m.volume + " is in use by machine " + v->attached_machine_id);
    m.volume = v->id;
    volume_ids.push_back(v->id);
  }
  FLICK_TRY_ASSIGN(auto rootfs, impl_->rootfs(config));
  auto process = machine::resolve_process(config, rootfs.config);
  if (!process) return std::move(process).error();
  FLICK_TRY_ASSIGN(auto files, impl_->boot_files(config.guest));

  MachineBoot boot{files.kernel, files.base_initramfs, std::move(rootfs), std::move(process).value(), {}, 0};
  store::MachineRow row;
  row.id = new_machine_id();
  row.name = name.empty() ? row.id : std::move(name);
  row.app = app;
  row.region = "local";
  row.state = "created";
  row.config = config.to_json();
  store::EventRow launch;
  launch.type = "launch";
  launch.status = "created";
  launch.source = "user";
  launch.request = nlohmann::json{{"detail", "image " + boot.image.image_digest}}.dump();

  bool networked = false;
  if (impl_->options.network != HostOptions::Networking::none) {
    networked = runner::can_create_taps();
    if (!networked && impl_->options.network == HostOptions::Networking::required)
      return make_error(Errc::unsupported,
                        "machine networking needs CAP_NET_ADMIN and /dev/net/tun (or HostOptions::network = none)");
  }
  // A /30 no live machine has; the store's unique index settles a race with another process.
  uint32_t subnet = static_cast<uint32_t>(std::stoul(row.id.substr(0, 8), nullptr, 16)) % kSubnets;
  for (int attempt = 0;; ++attempt) {
    if (networked) {
      std::set<uint32_t> taken;
      if (auto rows = store.list_machines({}))
        for (const auto& r : *rows)
          if (auto b = MachineBoot::from_json(r.boot); b && b->network) taken.insert(b->subnet);
      while (taken.count(subnet)) subnet = (subnet + 1) % kSubnets;
      if (taken.size() >= kSubnets) return make_error(Errc::limit, "every machine subnet is in use");
      boot.subnet = subnet;
      boot.network = runner::subnet_addresses(subnet, "flk" + row.id.substr(0, 12));
    }
    row.boot = boot.to_json();
    auto in = store.insert_machine(row, launch);
    if (in) break;
    // Errc::busy: another process took the subnet meanwhile (a name taken is Errc::exists).
    if (!networked || attempt > 8 || in.error().code != Errc::busy) return std::move(in).error();
  }
  for (const auto& v : volume_ids) {
    if (auto a = store.attach_volume(v, row.id); !a) {
      store::Transition undo;
      undo.machine_id = row.id;
      undo.to = "destroyed";
      (void)store.transition(undo);  // detaches what was attached
      return std::move(a).error().with_context("machine " + row.id);
    }
  }
  fs::path dir = impl_->machine_dir(row.id);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(Errc::io, "creating machine directory " + dir.string() + ": " + ec.message());
  FLICK_TRY_ASSIGN(auto stored, store.get_machine("", row.id));
  return impl_->open_machine(stored, std::move(handlers), impl_);
}

Result<std::unique_ptr<Machine>> Host::get(std::string_view id_or_name, MachineHandlers handlers, std::string_view app) {
  FLICK_TRY_ASSIGN(auto row, impl_->store.get_machine(app, id_or_name));
  return impl_->open_machine(row, std::move(handlers), impl_);
}

Result<std::vector<std::unique_ptr<Machine>>> Host::list(const ListFilter& filter) {
  store::MachineFilter f;
  f.app = filter.app;
  for (auto s : filter.states) f.states.push_back(to_string(s));
  for (const auto& [k, v] : filter.metadata) f.metadata.emplace_back(k, v);
  FLICK_TRY_ASSIGN(auto rows, impl_->store.list_machines(f));
  std::vector<std::unique_ptr<Machine>> out;
  for (const auto& row : rows) {
    if (running_state(row.state)) impl_->settle_if_orphaned(row);
    FLICK_TRY_ASSIGN(auto m, impl_->open_machine(row, {}, impl_));
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::vector<std::string>> Host::restart_lost_machines() {
  ListFilter filter;
  filter.states = {MachineState::stopped};
  FLICK_TRY_ASSIGN(auto stopped, list(filter));
  std::vector<std::string> started;
  for (auto& m : stopped) {
    if (m->config().restart.policy != RestartPolicy::always) continue;
    auto exit = m->last_exit();
    if (!exit || !exit->run_lost) continue;
    if (auto r = m->start(); !r)
      LOG_WARN("machine %s: starting it again after its run was lost: %s", m->id().c_str(),
               r.error().describe().c_str());
    else
      started.push_back(m->id());
  }
  return started;
}

Result<Volume> Host::create_volume(const VolumeConfig& config) {
  FLICK_TRY(machine::check_volume_name(config.name));
  std::string app = config.app.empty() ? kDefaultApp : config.app;
  if (auto a = impl_->store.get_app(app); !a) return std::move(a).error();
  store::VolumeRow v;
  v.id = store::new_volume_id();
  v.name = config.name;
  v.app = app;
  v.region = "local";
  v.size_gb = config.size_gb;
  v.path = (impl_->volume_dir() / (v.id + ".ext4")).string();
  FLICK_TRY(machine::make_volume_file(v.path, config.size_gb));
  if (auto in = impl_->store.insert_volume(v); !in) {
    ::unlink(v.path.c_str());
    return std::move(in).error();
  }
  return to_volume(v);
}

Result<std::vector<Volume>> Host::list_volumes(std::string_view app) {
  FLICK_TRY_ASSIGN(auto rows, impl_->store.list_volumes(app));
  std::vector<Volume> out;
  for (const auto& r : rows) out.push_back(to_volume(r));
  return out;
}

Result<void> Host::destroy_volume(std::string_view id_or_name, std::string_view app) {
  FLICK_TRY_ASSIGN(auto v, impl_->store.get_volume(app, id_or_name));
  FLICK_TRY(impl_->store.mark_volume_destroyed(v.id));
  if (::unlink(v.path.c_str()) != 0 && errno != ENOENT) return sys_error("deleting volume file " + v.path, errno);
  return {};
}

Result<Volume> Host::extend_volume(std::string_view id_or_name, uint64_t size_gb, std::string_view app) {
  FLICK_TRY_ASSIGN(auto v, impl_->store.get_volume(app, id_or_name));
  if (size_gb > machine::kMaxVolumeGb)
    return make_error(Errc::invalid_argument, "volume size_gb " + std::to_string(size_gb) + " is more than " +
                                                  std::to_string(machine::kMaxVolumeGb));
  // The store first: it refuses to shrink, and a file left smaller by a failed truncate is
  // grown by the next extend to the same size.
  FLICK_TRY(impl_->store.set_volume_size(v.id, size_gb));
  struct stat st{};
  if (::stat(v.path.c_str(), &st) != 0) return sys_error("extending volume " + v.id, errno);
  const auto bytes = static_cast<off_t>(size_gb << 30);
  if (st.st_size < bytes && ::truncate(v.path.c_str(), bytes) != 0)
    return sys_error("extending volume file " + v.path, errno);
  FLICK_TRY_ASSIGN(auto now, impl_->store.get_volume(app, v.id));
  return to_volume(now);
}

namespace {

AppInfo to_app(const store::AppRow& r) {
  return AppInfo{r.name, r.org_slug, r.machine_count, r.volume_count,
                 std::chrono::system_clock::time_point(std::chrono::milliseconds(r.created_at_ms))};
}

}  // namespace

Result<AppInfo> Host::create_app(std::string_view name, std::string_view org_slug) {
  store::AppRow row;
  row.name = name;
  row.org_slug = org_slug;
  FLICK_TRY(impl_->store.create_app(row));
  return get_app(name);
}

Result<AppInfo> Host::get_app(std::string_view name) {
  FLICK_TRY_ASSIGN(auto row, impl_->store.get_app(name));
  return to_app(row);
}

Result<std::vector<AppInfo>> Host::list_apps() {
  FLICK_TRY_ASSIGN(auto rows, impl_->store.list_apps());
  std::vector<AppInfo> out;
  for (const auto& r : rows) out.push_back(to_app(r));
  return out;
}

Result<void> Host::destroy_app(std::string_view name, bool force) {
  FLICK_TRY_ASSIGN(auto app, impl_->store.get_app(name));
  if (!force && (app.machine_count || app.volume_count))
    return make_error(Errc::busy, "app " + app.name + " has " + std::to_string(app.machine_count) + " machines and " +
                                      std::to_string(app.volume_count) + " volumes: destroy them first, or use force");
  if (force) {
    ListFilter f;
    f.app = app.name;
    FLICK_TRY_ASSIGN(auto machines, list(f));
    for (auto& m : machines) FLICK_TRY(m->destroy(/*force=*/true));
    FLICK_TRY_ASSIGN(auto volumes, list_volumes(app.name));
    for (const auto& v : volumes) FLICK_TRY(destroy_volume(v.id, app.name));
  }
  return impl_->store.delete_app(app.name, force);
}

ImageStore& Host::images() { return impl_->images; }
const HostOptions& Host::options() const { return impl_->options; }

}  // namespace flick
