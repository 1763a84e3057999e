// Host: where machines live on this computer, and what they share.
#include <flick/machine.h>

#include "machine/embedded_init.h"
#include "machine/host_impl.h"
#include "runner/host_network.h"
#include "machine/initramfs.h"
#include "machine/pvh_kernel.h"
#include "base/log.h"
#include "machine/machine_impl.h"
#include "machine/volume.h"

#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace fs = std::filesystem;

namespace flick {

namespace {

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

}  // namespace

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

Host::Host(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Host::~Host() = default;

Result<std::unique_ptr<Host>> Host::open(HostOptions o) {
  if (o.state_dir.empty()) o.state_dir = default_state_dir();
  if (o.cache_dir.empty()) o.cache_dir = ImageStore::default_dir();
  if (o.run_dir.empty()) o.run_dir = default_run_dir();
  std::error_code ec;
  for (const auto& d : {o.state_dir / "machines", o.state_dir / "volumes"}) {
    fs::create_directories(d, ec);
    if (ec) return make_error(Errc::io, "creating state directory " + d.string() + ": " + ec.message());
  }
  FLICK_TRY(prepare_run_dir(o.run_dir));
  auto images = ImageStore::open(o.cache_dir, o.images);
  if (!images) return std::move(images).error();
  auto impl = std::make_shared<Impl>(std::move(o), std::move(images).value());
  return std::unique_ptr<Host>(new Host(std::move(impl)));
}

Result<std::unique_ptr<Machine>> Host::create(const MachineConfig& config, MachineHandlers handlers,
                                              std::string name) {
  FLICK_TRY(config.validate());
  auto rootfs = impl_->images.rootfs(config.image);
  if (!rootfs) return std::move(rootfs).error().with_context("image " + config.image);
  auto process = machine::resolve_process(config, rootfs->config);
  if (!process) return std::move(process).error();
  FLICK_TRY_ASSIGN(auto boot, impl_->boot_files(config.guest));

  std::string id = new_machine_id();
  std::vector<machine::VolumeLease> leases;
  for (const auto& m : config.mounts) {
    auto lease = machine::lease_volume(impl_->volume_dir(), m.volume);
    if (!lease) return std::move(lease).error().with_context("machine mount " + m.path);
    leases.push_back(std::move(lease).value());
  }
  std::optional<MachineNetwork> network;
  std::optional<runner::SubnetLease> subnet;
  if (impl_->options.network != HostOptions::Networking::none) {
    if (runner::can_create_taps()) {
      uint32_t preferred = static_cast<uint32_t>(std::stoul(id.substr(0, 8), nullptr, 16));
      auto lease = runner::lease_subnet(impl_->options.run_dir, preferred);
      if (!lease) return std::move(lease).error().with_context("machine network");
      network = runner::subnet_addresses(lease->index, "flk" + id.substr(0, 12));
      subnet = std::move(lease).value();
    } else if (impl_->options.network == HostOptions::Networking::required) {
      return make_error(Errc::unsupported,
                        "machine networking needs CAP_NET_ADMIN and /dev/net/tun (or HostOptions::network = none)");
    }
  }
  fs::path dir = impl_->machine_dir(id);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(Errc::io, "creating machine directory " + dir.string() + ": " + ec.message());

  auto m = std::make_unique<Machine::Impl>(impl_, id, name.empty() ? id : std::move(name), config,
                                           std::move(rootfs).value(), std::move(process).value(),
                                           std::move(boot), std::move(leases), std::move(handlers));
  m->network = std::move(network);
  m->subnet = std::move(subnet);
  {
    std::lock_guard lk(impl_->mu);
    for (const auto& mount : config.mounts) impl_->attached[mount.volume] = id;
  }
  m->record(MachineEventType::launch, MachineState::created, std::nullopt, "image " + m->image.image_digest);
  return std::unique_ptr<Machine>(new Machine(std::move(m)));
}

Result<Volume> Host::create_volume(const VolumeConfig& config) {
  return machine::create_volume(impl_->volume_dir(), config);
}

Result<std::vector<Volume>> Host::list_volumes() {
  std::vector<Volume> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(impl_->volume_dir(), ec)) {
    const auto& p = entry.path();
    if (p.extension() != ".ext4" || p.filename().string().front() == '.') continue;
    auto v = machine::describe_volume(p);
    if (!v) continue;  // deleted meanwhile
    std::lock_guard lk(impl_->mu);
    if (auto it = impl_->attached.find(v->name); it != impl_->attached.end()) v->attached_machine = it->second;
    out.push_back(std::move(v).value());
  }
  if (ec) return make_error(Errc::io, "listing volumes in " + impl_->volume_dir().string() + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const Volume& a, const Volume& b) { return a.name < b.name; });
  return out;
}

Result<void> Host::destroy_volume(std::string_view name) {
  return machine::destroy_volume(impl_->volume_dir(), name);
}

ImageStore& Host::images() { return impl_->images; }
const HostOptions& Host::options() const { return impl_->options; }

}  // namespace flick
