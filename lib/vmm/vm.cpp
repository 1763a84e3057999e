// Vm: assembles KVM, guest memory, the kernel, boot data, devices and vCPUs into one machine.
#include <flick/vm.h>

#include "base/event_fd.h"
#include "base/hex.h"
#include "base/log.h"
#include "vmm/acpi/tables.h"
#include "vmm/bus.h"
#include "vmm/cpu_setup.h"
#include "vmm/devices/platform.h"
#include "vmm/devices/serial.h"
#include "vmm/kvm.h"
#include "vmm/layout.h"
#include "vmm/loader/boot_params.h"
#include "vmm/loader/kernel.h"
#include "vmm/state_dump.h"
#include "vmm/vcpu.h"
#include "virtio/block/block_device.h"
#include "virtio/mmio_transport.h"
#include "virtio/net/net_device.h"
#include "virtio/net/tap.h"
#include "virtio/rng_device.h"
#include "virtio/vsock/vsock_device.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace flick {

const char* to_string(VmExitReason reason) noexcept {
  switch (reason) {
    case VmExitReason::power_off: return "power-off";
    case VmExitReason::reboot: return "reboot";
    case VmExitReason::panic: return "kernel panic";
    case VmExitReason::crash: return "crash";
    case VmExitReason::kvm_error: return "KVM error";
    case VmExitReason::stopped: return "stopped";
    case VmExitReason::vmm_error: return "VMM error";
  }
  return "unknown";
}

namespace {

using Clock = std::chrono::steady_clock;

// An interrupt line into KVM's IOAPIC through an irqfd: trigger() is one eventfd write.
class IrqfdLine : public Interrupt {
 public:
  static Result<std::shared_ptr<IrqfdLine>> create(vmm::KvmVm& vm, uint32_t gsi) {
    FLICK_TRY_ASSIGN(EventFd fd, EventFd::create());
    if (auto r = vm.irqfd(fd.fd(), gsi); !r)
      return std::move(r).error().with_context("wiring IRQ " + std::to_string(gsi));
    auto line = std::make_shared<IrqfdLine>();
    line->fd_ = std::move(fd);
    return line;
  }
  void trigger() override { (void)fd_.signal(); }

 private:
  EventFd fd_;
};

// "aa:bb:cc:dd:ee:ff" -> bytes; an empty string derives a stable locally administered MAC
// from `seed` (the TAP name) so a machine keeps its address across restarts.
Result<std::array<uint8_t, 6>> parse_mac(const std::string& text, const std::string& seed) {
  std::array<uint8_t, 6> mac{};
  if (text.empty()) {
    uint32_t h = 2166136261u;  // FNV-1a
    for (char c : seed) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
    mac = {0x52, 0x54, 0x00, static_cast<uint8_t>(h >> 16), static_cast<uint8_t>(h >> 8),
           static_cast<uint8_t>(h)};
    return mac;
  }
  unsigned v[6];
  char tail;
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4],
                  &v[5], &tail) != 6)
    return make_error(Errc::invalid_argument, "MAC address \"" + text + "\" is not of the form aa:bb:cc:dd:ee:ff");
  for (int i = 0; i < 6; ++i) mac[static_cast<size_t>(i)] = static_cast<uint8_t>(v[i]);
  if (mac[0] & 1) return make_error(Errc::invalid_argument, "MAC address " + text + " is a multicast address");
  return mac;
}

Result<std::vector<std::byte>> read_file(const std::string& path, const char* what, uint64_t max) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error(std::string("opening the ") + what + " " + path, errno);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return sys_error(std::string("reading the ") + what + " " + path, errno);
  if (!S_ISREG(st.st_mode))
    return make_error(Errc::invalid_argument, std::string("the ") + what + " " + path + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max)
    return make_error(Errc::limit, std::string("the ") + what + " " + path + " is larger than the guest memory");
  std::vector<std::byte> data(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::read(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error(std::string("reading the ") + what + " " + path, n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  return data;
}

}  // namespace

struct Vm::Impl {
  VmConfig config;
  Clock::time_point created = Clock::now();
  std::optional<vmm::KvmSystem> kvm;
  std::optional<vmm::KvmVm> vm;
  GuestMemory memory;
  vmm::Bus pio{"port I/O"};
  vmm::Bus mmio{"MMIO"};
  std::shared_ptr<vmm::Serial> serial;
  std::shared_ptr<vmm::BootTimer> boot_timer;
  std::shared_ptr<vmm::PvPanic> pvpanic;
  std::vector<std::unique_ptr<vmm::Vcpu>> vcpus;
  std::vector<std::shared_ptr<virtio::MmioTransport>> virtio;
  std::vector<vmm::acpi::MmioDevice> virtio_windows;

  std::mutex mu;
  std::condition_variable cv;
  std::optional<VmExit> exit;
  bool started = false;
  bool joined = false;
  std::atomic<Clock::rep> first_run{0};
  std::atomic<unsigned> unhandled_accesses{0};
  Clock::time_point exited{};

  // Read in load_inputs(), before KVM is opened; used by build().
  std::optional<vmm::LoadedKernel> kernel;
  std::vector<std::byte> initrd;
  std::vector<std::pair<std::shared_ptr<virtio::VirtioDevice>, std::string>> pending_virtio;

  Result<void> build();
  Result<void> load_inputs();
  Result<void> open_virtio_devices();
  Result<void> add_devices();
  Result<void> add_virtio(std::shared_ptr<virtio::VirtioDevice> device, const std::string& what);
  void request_exit(VmExit e);
  void on_platform_event(vmm::PlatformEvent ev);
  void join_vcpus();
  std::string describe();
  vmm::StateDumpRegistration dump_registration;
  ~Impl() {
    dump_registration.reset();
    if (started) {
      request_exit({VmExitReason::stopped, "stopped by the host"});
      join_vcpus();
    }
  }
};

Result<void> Vm::Impl::add_devices() {
  using namespace vmm;
  auto sink = [this](PlatformEvent ev) { on_platform_event(ev); };
  FLICK_TRY_ASSIGN(auto com1_irq, IrqfdLine::create(*vm, layout::kIrqCom1));
  serial = std::make_shared<Serial>(com1_irq, [this](std::span<const uint8_t> bytes) {
    if (config.console)
      config.console(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  });
  if (config.serial2) {
    FLICK_TRY_ASSIGN(auto com2_irq, IrqfdLine::create(*vm, layout::kIrqCom2));
    auto com2 = std::make_shared<Serial>(com2_irq, [this](std::span<const uint8_t> bytes) {
      config.serial2(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    });
    FLICK_TRY(pio.insert(com2, layout::kPioCom2, 8));
  }
  boot_timer = std::make_shared<BootTimer>();
  pvpanic = std::make_shared<PvPanic>();
  FLICK_TRY(pio.insert(serial, layout::kPioCom1, 8));
  FLICK_TRY(pio.insert(std::make_shared<I8042>(sink), layout::kPioI8042Data, 5));
  FLICK_TRY(pio.insert(std::make_shared<AcpiPowerDevice>(sink), layout::kPioAcpiSleepControl, 3));
  FLICK_TRY(pio.insert(boot_timer, layout::kPioBootTimer, 1));
  FLICK_TRY(pio.insert(pvpanic, layout::kPioPvPanic, 1));
  // Ports every PC guest probes and finds empty here: the POST code port, the CMOS RTC,
  // COM2-4 and PCI configuration mechanism #1 (reads return all-ones: "nothing there").
  auto ignored = std::make_shared<IgnoredPorts>();
  for (auto [base, len] : {std::pair<uint16_t, uint16_t>{layout::kPioPostCode, 1}, {0x70, 2},
                           {0x2e8, 8}, {0x2f8, 8}, {0x3e8, 8}, {0xcf8, 8}})
    if (base != layout::kPioCom2 || !config.serial2) FLICK_TRY(pio.insert(ignored, base, len));
  FLICK_TRY(mmio.insert(boot_timer, layout::kBootTimerMmio, 0x1000));
  return {};
}

Result<void> Vm::Impl::add_virtio(std::shared_ptr<virtio::VirtioDevice> device, const std::string& what) {
  using namespace vmm;
  const uint64_t index = virtio.size();
  const uint32_t gsi = layout::kIrqFirstDevice + static_cast<uint32_t>(index);
  if (gsi > layout::kIrqLastDevice)
    return make_error(Errc::limit, "too many virtio devices: " + what + " would need IRQ " + std::to_string(gsi) +
                                       " (at most " + std::to_string(layout::kIrqLastDevice - layout::kIrqFirstDevice + 1) + ")");
  const uint64_t base = layout::kVirtioMmioBase + index * layout::kVirtioMmioStride;
  FLICK_TRY_ASSIGN(auto line, IrqfdLine::create(*vm, gsi));
  auto transport = virtio::MmioTransport::create(std::move(device), &memory, line);
  if (!transport) return std::move(transport).error().with_context(what);
  std::shared_ptr<virtio::MmioTransport> t = std::move(transport).value();
  // QueueNotify writes become eventfd signals inside KVM: no exit to this process.
  for (auto [queue, fd] : t->queue_notifiers()) {
    IoEventSpec spec{base + 0x50, 4, false, true, queue};
    if (auto r = vm->ioeventfd(fd, spec); !r) return std::move(r).error().with_context(what);
  }
  FLICK_TRY(mmio.insert(t, base, layout::kVirtioMmioStride));
  virtio.push_back(t);
  virtio_windows.push_back({base, layout::kVirtioMmioStride, gsi});
  return {};
}

Result<void> Vm::Impl::open_virtio_devices() {
  for (size_t i = 0; i < config.disks.size(); ++i) {
    const auto& d = config.disks[i];
    virtio::BlockDeviceOptions o;
    (d.copy_on_write ? o.cow_base : o.path) = d.path;
    o.cow_overlay_dir = d.overlay_dir;
    o.read_only = d.read_only;
    o.serial = d.serial;
    auto dev = virtio::BlockDevice::open(o);
    if (!dev) return std::move(dev).error().with_context("disk " + std::to_string(i) + " (" + d.path + ")");
    pending_virtio.push_back({std::move(dev).value(), "disk " + d.path});
  }
  for (const auto& n : config.nets) {
    FLICK_TRY_ASSIGN(auto mac, parse_mac(n.mac, n.tap));
    auto tap = virtio::Tap::open(n.tap);
    if (!tap) return std::move(tap).error().with_context("network interface on TAP " + n.tap);
    virtio::NetDeviceOptions o;
    o.mac = mac;
    pending_virtio.push_back({virtio::NetDevice::create(std::move(tap).value(), o), "network interface " + n.tap});
  }
  if (config.rng) pending_virtio.push_back({std::make_shared<virtio::RngDevice>(), "entropy device"});
  if (config.vsock) {
    virtio::VsockOptions o;
    o.uds_path = config.vsock->uds_path;
    o.guest_cid = config.vsock->guest_cid;
    auto dev = virtio::VsockDevice::create(o);
    if (!dev) return std::move(dev).error().with_context("vsock device at " + o.uds_path);
    pending_virtio.push_back({std::move(dev).value(), "vsock device"});
  }
  return {};
}

Result<void> Vm::Impl::load_inputs() {
  using namespace vmm;
  if (config.cpus == 0 || config.cpus > 254)
    return make_error(Errc::invalid_argument, "cpus must be between 1 and 254, got " + std::to_string(config.cpus));
  if (config.memory_mib < 16 || config.memory_mib > (1u << 20))
    return make_error(Errc::invalid_argument,
                      "memory must be between 16 MiB and 1 TiB, got " + std::to_string(config.memory_mib) + " MiB");
  if (config.kernel.empty()) return make_error(Errc::invalid_argument, "no kernel given");
  if (!config.initrd_append.empty() && config.initrd.empty())
    return make_error(Errc::invalid_argument, "initrd_append given without an initrd");

  const uint64_t mem_bytes = config.memory_mib << 20;
  FLICK_TRY_ASSIGN(auto kernel_file, read_file(config.kernel, "kernel", mem_bytes));
  FLICK_TRY_ASSIGN(memory, GuestMemory::create(layout::ram_ranges(mem_bytes),
                                               config.shared_memory ? GuestMemory::Backing::memfd
                                                                    : GuestMemory::Backing::anonymous));
  auto loaded = load_kernel(memory, kernel_file);
  if (!loaded) return std::move(loaded).error().with_context("loading the kernel " + config.kernel);
  kernel = std::move(loaded).value();

  if (!config.initrd.empty()) {
    FLICK_TRY_ASSIGN(initrd, read_file(config.initrd, "initrd", mem_bytes));
  }
  for (const auto& path : config.initrd_append) {
    FLICK_TRY_ASSIGN(auto part, read_file(path, "initrd", mem_bytes));
    initrd.resize((initrd.size() + 3) & ~size_t{3});  // archives start 4-byte aligned; zeros are skipped
    initrd.insert(initrd.end(), part.begin(), part.end());
  }
  return open_virtio_devices();
}

Result<void> Vm::Impl::build() {
  using namespace vmm;
  // Everything the user gave is read and checked first: bad input never touches KVM.
  FLICK_TRY(load_inputs());

  std::string kvm_path = config.kvm_device;
  if (kvm_path.empty()) {
    const char* env = std::getenv("FLICK_KVM_DEVICE");
    kvm_path = env && *env ? env : "/dev/kvm";
  }
  FLICK_TRY_ASSIGN(kvm, KvmSystem::open(kvm_path));
  FLICK_TRY_ASSIGN(vm, kvm->create_vm());
  FLICK_TRY(vm->set_tss_addr(layout::kTss));
  if (kvm->check_extension(KVM_CAP_SET_IDENTITY_MAP_ADDR)) FLICK_TRY(vm->set_identity_map_addr(layout::kIdentityMapPage));
  FLICK_TRY(vm->create_irqchip());
  FLICK_TRY(vm->create_pit2());
  for (size_t i = 0; i < memory.regions().size(); ++i) {
    const auto& r = memory.regions()[i];
    FLICK_TRY(vm->set_user_memory_region(static_cast<uint32_t>(i), r.start.value, r.size, r.host));
  }

  FLICK_TRY(add_devices());
  for (auto& [device, what] : pending_virtio) FLICK_TRY(add_virtio(std::move(device), what));
  pending_virtio.clear();

  acpi::AcpiConfig acpi_cfg;
  acpi_cfg.cpus = config.cpus;
  acpi_cfg.com2 = static_cast<bool>(config.serial2);
  acpi_cfg.mmio_devices = virtio_windows;
  acpi_cfg.extra_devices.push_back(acpi::Aml::device(
      "PEVT", {acpi::Aml::name("_HID", acpi::Aml::string("QEMU0001")),
               acpi::Aml::name("_CRS", acpi::Aml::resource_template({acpi::Resource::io(
                                           layout::kPioPvPanic, layout::kPioPvPanic, 1, 1)}))}));
  FLICK_TRY_ASSIGN(GuestAddress rsdp, acpi::write_tables(memory, acpi_cfg));
  // There is no BIOS, but Linux on a hardware-reduced ACPI machine without reboot= ends its
  // restart attempts (EFI, then BIOS) with a jump to the real-mode reset vector. Code there
  // pulses the i8042 reset line, so that reboot and panic=-1 still end the VM:
  //   mov al, 0xfe; out 0x64, al; hlt; jmp $-1
  const std::array<uint8_t, 7> reset_stub{0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd};
  FLICK_TRY(memory.write_obj(GuestAddress{layout::kBiosResetVector}, reset_stub));

  BootConfig boot;
  boot.cmdline = config.cmdline;
  if (config.virtio_cmdline_devices) {
    char dev[64];
    for (const auto& w : virtio_windows) {
      std::snprintf(dev, sizeof dev, " virtio_mmio.device=4K@0x%llx:%u",
                    static_cast<unsigned long long>(w.base), w.gsi);
      boot.cmdline += dev;
    }
  }
  if (!initrd.empty()) boot.initrd = std::span<const std::byte>(initrd);
  boot.rsdp = rsdp.value;
  FLICK_TRY_ASSIGN(BootRegisters regs, write_boot_params(memory, *kernel, boot));
  initrd = {};

  FLICK_TRY_ASSIGN(CpuidTable cpuid, kvm->supported_cpuid());
  add_capability_features(cpuid, {kvm->check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0});
  FLICK_TRY_ASSIGN(auto msr_list, kvm->msr_index_list());
  for (uint32_t i = 0; i < config.cpus; ++i) {
    FLICK_TRY_ASSIGN(KvmVcpu kv, vm->create_vcpu(i));
    FLICK_TRY(configure_vcpu(kv, cpuid, msr_list, config.cpus));
    if (i == 0) {
      BootCpuState st{regs.mode == EntryMode::Long64, regs.rip, regs.rsi, regs.rbx};
      FLICK_TRY(setup_boot_vcpu(kv, memory, st));
    }
    Vcpu::Hooks hooks;
    hooks.pio = &pio;
    hooks.mmio = &mmio;
    hooks.unhandled_accesses = &unhandled_accesses;
    hooks.on_exit = [this](VmExit e) { request_exit(std::move(e)); };
    if (i == 0)
      hooks.on_first_run = [this] {
        auto now = Clock::now();
        first_run = now.time_since_epoch().count();
        boot_timer->set_start(now);
      };
    vcpus.push_back(std::make_unique<Vcpu>(std::move(kv), std::move(hooks)));
  }
  return {};
}

void Vm::Impl::on_platform_event(vmm::PlatformEvent ev) {
  // request_exit() turns a reset after a pvpanic report into a panic.
  if (ev == vmm::PlatformEvent::power_off) {
    request_exit({VmExitReason::power_off, "guest powered off"});
  } else {
    request_exit({VmExitReason::reboot, "guest rebooted"});
  }
}

void Vm::Impl::request_exit(VmExit e) {
  {
    std::lock_guard lk(mu);
    if (exit) return;
    // A reset right after a pvpanic report is the panic's doing.
    if (e.reason == VmExitReason::reboot && pvpanic && pvpanic->panicked())
      e = {VmExitReason::panic, "guest kernel panicked and reset"};
    exit = std::move(e);
    exited = Clock::now();
  }
  for (auto& v : vcpus) v->post(vmm::Vcpu::Message::finish);
  cv.notify_all();
}

void Vm::Impl::join_vcpus() {
  {
    std::lock_guard lk(mu);
    if (joined) return;
    joined = true;
  }
  for (auto& v : vcpus) v->join();
}

std::string Vm::Impl::describe() {
  std::string s = std::to_string(vcpus.size()) + " vCPU(s), " + std::to_string(config.memory_mib) +
                  " MiB, kernel " + config.kernel;
  {
    std::lock_guard lk(mu);
    s += exit ? ", ended: " + std::string(to_string(exit->reason)) + ": " + exit->detail
              : started ? ", running" : ", not started";
  }
  for (auto& v : vcpus) s += "\n" + v->describe(std::chrono::seconds(1));
  for (size_t i = 0; i < virtio.size(); ++i)
    s += "\nvirtio-mmio at " + hex(virtio_windows[i].base) + " irq " + std::to_string(virtio_windows[i].gsi) +
         ": " + virtio[i]->describe();
  s += "\nunhandled guest accesses " + std::to_string(unhandled_accesses.load());
  return s;
}

Vm::Vm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Vm::~Vm() = default;

Result<std::unique_ptr<Vm>> Vm::create(const VmConfig& config) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  FLICK_TRY(impl->build());
  impl->dump_registration = vmm::StateDumpRegistration::add([d = impl.get()] { return d->describe(); });
  return std::unique_ptr<Vm>(new Vm(std::move(impl)));
}

Result<void> Vm::start() {
  auto& d = *impl_;
  {
    std::lock_guard lk(d.mu);
    if (d.started) return make_error(Errc::busy, "the VM was already started");
    d.started = true;
  }
  for (auto& v : d.vcpus) {
    if (auto r = v->spawn(); !r) {
      d.request_exit({VmExitReason::vmm_error, r.error().describe()});
      return r;
    }
  }
  for (auto& v : d.vcpus) v->send(vmm::Vcpu::Message::resume);
  return {};
}

VmExit Vm::wait() {
  auto& d = *impl_;
  {
    std::unique_lock lk(d.mu);
    if (!d.started) return {VmExitReason::stopped, "the VM was never started"};
    d.cv.wait(lk, [&] { return d.exit.has_value(); });
  }
  d.join_vcpus();
  return *d.exit;
}

std::optional<VmExit> Vm::wait_for(std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  {
    std::unique_lock lk(d.mu);
    if (!d.cv.wait_for(lk, timeout, [&] { return d.exit.has_value(); })) return std::nullopt;
  }
  d.join_vcpus();
  return *d.exit;
}

void Vm::stop() {
  impl_->request_exit({VmExitReason::stopped, "stopped by the host"});
  if (impl_->started) impl_->join_vcpus();
}

Result<void> Vm::pause() {
  for (auto& v : impl_->vcpus) v->send(vmm::Vcpu::Message::pause);
  return {};
}

Result<void> Vm::resume() {
  for (auto& v : impl_->vcpus) v->send(vmm::Vcpu::Message::resume);
  return {};
}

size_t Vm::send_console_input(std::string_view bytes) {
  return impl_->serial->push_input(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

VmTimings Vm::timings() const {
  auto& d = *impl_;
  VmTimings t;
  const auto first = d.first_run.load();
  if (first == 0) return t;
  const Clock::time_point first_tp{Clock::duration(first)};
  t.setup = std::chrono::duration_cast<std::chrono::nanoseconds>(first_tp - d.created);
  if (int64_t ns = d.boot_timer->elapsed_ns(); ns >= 0) t.boot_timer = std::chrono::nanoseconds(ns);
  std::lock_guard lk(d.mu);
  if (d.exit) t.run = std::chrono::duration_cast<std::chrono::nanoseconds>(d.exited - first_tp);
  return t;
}

uint64_t Vm::guest_memory_bytes() const { return impl_->memory.total_size(); }

std::string Vm::describe_state() { return impl_->describe(); }

}  // namespace flick
