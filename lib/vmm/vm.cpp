// Vm: assembles KVM, guest memory, the kernel, boot data, devices and vCPUs into one machine.
#include <flick/vm.h>
#include <flick/version.h>

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
#include "vmm/snapshot.h"
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
#include <filesystem>
#include <functional>
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
  std::shared_ptr<vmm::Serial> serial2;
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
  Result<void> check_config() const;
  Result<void> load_inputs();
  Result<void> open_machine();
  void add_vcpu(vmm::KvmVcpu kv);
  Result<void> save(const std::string& dir);
  Result<void> restore(const std::string& dir);
  std::string snapshot_key() const;
  size_t virtio_count() const;
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
    serial2 = std::make_shared<Serial>(com2_irq, [this](std::span<const uint8_t> bytes) {
      config.serial2(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    });
    FLICK_TRY(pio.insert(serial2, layout::kPioCom2, 8));
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

Result<void> Vm::Impl::check_config() const {
  if (config.cpus == 0 || config.cpus > 254)
    return make_error(Errc::invalid_argument, "cpus must be between 1 and 254, got " + std::to_string(config.cpus));
  if (config.memory_mib < 16 || config.memory_mib > (1u << 20))
    return make_error(Errc::invalid_argument,
                      "memory must be between 16 MiB and 1 TiB, got " + std::to_string(config.memory_mib) + " MiB");
  return {};
}

Result<void> Vm::Impl::load_inputs() {
  using namespace vmm;
  FLICK_TRY(check_config());
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
  FLICK_TRY(open_machine());

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
    add_vcpu(std::move(kv));
  }
  return {};
}

Result<void> Vm::Impl::open_machine() {
  using namespace vmm;
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
  return {};
}

void Vm::Impl::add_vcpu(vmm::KvmVcpu kv) {
  using namespace vmm;
  const uint32_t i = kv.id();
  {
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

namespace {

// Names the memory file a state file goes with, without reading it (a digest would read every
// page, and a restore reads only those the guest touches).
struct MemoryFileId {
  uint64_t size, dev, ino;
  int64_t mtime_sec, mtime_nsec;
  bool operator==(const MemoryFileId&) const = default;
};

MemoryFileId file_id(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_size), st.st_dev, st.st_ino, st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
}

struct SerialRegisters {
  uint8_t ier, lcr, mcr, scr, dll, dlm, msr, thr_empty_pending;
};

void write_serial(vmm::StateWriter& w, vmm::Serial& serial) {
  auto s = serial.save();
  w.put(SerialRegisters{s.ier, s.lcr, s.mcr, s.scr, s.dll, s.dlm, s.msr, s.thr_empty_pending});
  w.put_bytes(s.rx);
}

Result<void> read_serial(vmm::StateReader& r, vmm::Serial::State* out) {
  FLICK_TRY_ASSIGN(auto regs, r.get<SerialRegisters>());
  FLICK_TRY_ASSIGN(auto rx, r.get_bytes());
  *out = {regs.ier, regs.lcr, regs.mcr, regs.scr, regs.dll, regs.dlm, regs.msr, regs.thr_empty_pending != 0,
          {rx.begin(), rx.end()}};
  return {};
}

struct VirtioRegisters {
  uint64_t driver_features, acked;
  uint32_t device_features_sel, driver_features_sel, queue_sel, status, config_generation, interrupt_status;
};

struct SavedQueue {
  uint16_t max_size, size;
  uint32_t ready;
  uint64_t desc, avail, used;
};

void write_virtio(vmm::StateWriter& w, const virtio::MmioTransport::State& s) {
  w.put(VirtioRegisters{s.driver_features, s.acked, s.device_features_sel, s.driver_features_sel, s.queue_sel,
                        s.status, s.config_generation, s.interrupt_status});
  w.put(static_cast<uint32_t>(s.queues.size()));
  for (const auto& q : s.queues)
    w.put(SavedQueue{q.max_size, q.size, q.ready, q.desc_table.value, q.avail_ring.value, q.used_ring.value});
}

Result<virtio::MmioTransport::State> read_virtio(vmm::StateReader& r) {
  FLICK_TRY_ASSIGN(auto regs, r.get<VirtioRegisters>());
  virtio::MmioTransport::State s{regs.driver_features, regs.acked, regs.device_features_sel, regs.driver_features_sel,
                                 regs.queue_sel, regs.status, regs.config_generation, regs.interrupt_status, {}};
  FLICK_TRY_ASSIGN(uint32_t queues, r.get<uint32_t>());
  if (queues > 64) return r.malformed("a virtio device with " + std::to_string(queues) + " queues");
  for (uint32_t i = 0; i < queues; ++i) {
    FLICK_TRY_ASSIGN(auto q, r.get<SavedQueue>());
    s.queues.push_back({q.max_size, q.size, q.ready != 0, GuestAddress{q.desc}, GuestAddress{q.avail}, GuestAddress{q.used}});
  }
  return s;
}

// Writes `path` through a temporary file that `fill` writes into, synced and renamed into place.
Result<void> write_file_atomically(const std::string& path, const std::function<Result<void>(int fd)>& fill) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return sys_error("creating " + tmp, errno);
  if (auto r = fill(fd.get()); !r) return std::move(r).error().with_context(tmp);
  if (::fsync(fd.get()) != 0) return sys_error("syncing " + tmp, errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return sys_error("renaming " + tmp + " to " + path, errno);
  return {};
}

Result<void> write_all_bytes(int fd, std::span<const uint8_t> bytes) {
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error("writing", n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  return {};
}

// The CPUID feature bits a saved vCPU used that `host` (what this KVM offers) lacks, as
// "leaf 0x7 ebx 0x20" phrases; empty when the host offers them all. Bits the guest or KVM set
// at run time (OSXSAVE, OSPKE, the APIC bit) are not features.
std::string missing_cpu_features(vmm::CpuidTable saved, vmm::CpuidTable host) {
  struct Reg { uint32_t leaf; const char* name; uint32_t kvm_cpuid_entry2::*reg; uint32_t dynamic; };
  static constexpr Reg kRegs[] = {
      {1, "ecx", &kvm_cpuid_entry2::ecx, 1u << 27}, {1, "edx", &kvm_cpuid_entry2::edx, 1u << 9},
      {7, "ebx", &kvm_cpuid_entry2::ebx, 0},        {7, "ecx", &kvm_cpuid_entry2::ecx, 1u << 4},
      {7, "edx", &kvm_cpuid_entry2::edx, 0},        {0x80000001, "ecx", &kvm_cpuid_entry2::ecx, 0},
      {0x80000001, "edx", &kvm_cpuid_entry2::edx, 0}};
  std::string missing;
  for (const auto& r : kRegs) {
    const kvm_cpuid_entry2* s = saved.find(r.leaf);
    if (!s) continue;
    const kvm_cpuid_entry2* h = host.find(r.leaf);
    const uint32_t lacking = (s->*r.reg) & ~r.dynamic & ~(h ? h->*r.reg : 0);
    if (lacking) missing += (missing.empty() ? "" : ", ") + std::string("leaf ") + hex(r.leaf) + " " + r.name + " " + hex(lacking);
  }
  return missing;
}

}  // namespace

size_t Vm::Impl::virtio_count() const {
  return config.disks.size() + config.nets.size() + (config.rng ? 1 : 0) + (config.vsock ? 1 : 0);
}

std::string Vm::Impl::snapshot_key() const {
  std::string virtio_kinds;
  auto add = [&](const char* kind) { virtio_kinds += (virtio_kinds.empty() ? "" : ",") + std::string(kind); };
  for (size_t i = 0; i < config.disks.size(); ++i) add("blk");
  for (size_t i = 0; i < config.nets.size(); ++i) add("net");
  if (config.rng) add("rng");
  if (config.vsock) add("vsock");
  return std::to_string(config.cpus) + " vCPU(s), " + std::to_string(config.memory_mib) + " MiB, " +
         (config.serial2 ? "COM1 and COM2" : "COM1") + ", virtio [" + virtio_kinds + "]";
}

Result<void> Vm::Impl::save(const std::string& dir) {
  using namespace vmm;
  for (auto& v : vcpus) {
    if (v->state() == Vcpu::State::finished) return make_error(Errc::busy, "snapshot: the VM has ended");
    if (v->state() != Vcpu::State::paused)
      return make_error(Errc::busy, "snapshot: vCPU " + std::to_string(v->kvm().id()) + " is running (pause the VM first)");
  }
  // Devices first: each returns the buffers it holds to the guest's rings, which the memory
  // file then carries.
  std::vector<virtio::MmioTransport::State> devices;
  // Devices take host-side work again once the save is over, whichever way it ends.
  struct EndSave {
    std::vector<std::shared_ptr<virtio::MmioTransport>>& transports;
    size_t saved = 0;
    ~EndSave() {
      for (size_t i = 0; i < saved; ++i) transports[i]->end_save();
    }
  } end_save{virtio};
  for (size_t i = 0; i < virtio.size(); ++i) {
    end_save.saved = i + 1;  // also a device whose quiesce failed half-way
    auto st = virtio[i]->save();
    if (!st)
      return std::move(st).error().with_context("snapshot: the virtio device at " + hex(virtio_windows[i].base) +
                                                " (type " + std::to_string(virtio[i]->device().device_type()) + ")");
    devices.push_back(std::move(st).value());
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return sys_error("creating the snapshot directory " + dir, ec.value());

  // Memory first: a state file always names a complete memory file.
  const std::string mem_path = dir + "/memory";
  FLICK_TRY(write_file_atomically(mem_path, [this](int fd) { return memory.save(fd); }));
  struct stat st{};
  if (::stat(mem_path.c_str(), &st) != 0) return sys_error("reading " + mem_path, errno);

  StateWriter w;
  w.put_string(FLICK_VERSION_STRING);
  w.put_string(snapshot_key());
  w.put(file_id(st));
  FLICK_TRY_ASSIGN(VmState vm_state, save_vm_state(*vm));
  write_vm_state(w, vm_state);
  FLICK_TRY_ASSIGN(auto msr_list, kvm->msr_index_list());
  const size_t xsave_size = static_cast<size_t>(std::max(0, kvm->check_extension(KVM_CAP_XSAVE2)));
  for (auto& v : vcpus) {
    auto state = save_vcpu_state(v->kvm(), msr_list, xsave_size);
    if (!state) return std::move(state).error().with_context("snapshot of vCPU " + std::to_string(v->kvm().id()));
    write_vcpu_state(w, *state);
  }
  write_serial(w, *serial);
  if (serial2) write_serial(w, *serial2);
  for (const auto& d : devices) write_virtio(w, d);
  FLICK_TRY(write_file_atomically(dir + "/vm.state", [state = w.finish()](int fd) { return write_all_bytes(fd, state); }));
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd || ::fsync(dfd.get()) != 0) return sys_error("syncing the snapshot directory " + dir, errno);
  return {};
}

Result<void> Vm::Impl::restore(const std::string& dir) {
  using namespace vmm;
  FLICK_TRY(check_config());
  // The whole state file is read and checked before anything is built.
  const std::string state_path = dir + "/vm.state", mem_path = dir + "/memory";
  FLICK_TRY_ASSIGN(auto raw, read_file(state_path, "VM state file", 256u << 20));
  std::vector<uint8_t> bytes(raw.size());
  std::memcpy(bytes.data(), raw.data(), raw.size());
  FLICK_TRY_ASSIGN(StateReader r, StateReader::parse(std::move(bytes), state_path));
  FLICK_TRY_ASSIGN(std::string version, r.get_string());
  if (version != FLICK_VERSION_STRING)
    return make_error(Errc::unsupported, state_path + ": saved by flick " + version + ", this is flick " FLICK_VERSION_STRING);
  FLICK_TRY_ASSIGN(std::string key, r.get_string());
  if (key != snapshot_key())
    return make_error(Errc::invalid_argument, "the snapshot in " + dir + " is of another VM: it has " + key +
                                                  ", the config asks for " + snapshot_key());
  FLICK_TRY_ASSIGN(auto saved_id, r.get<MemoryFileId>());
  FLICK_TRY_ASSIGN(VmState vm_state, read_vm_state(r));
  std::vector<VcpuState> cpu_states;
  for (uint32_t i = 0; i < config.cpus; ++i) {
    FLICK_TRY_ASSIGN(auto cs, read_vcpu_state(r));
    cpu_states.push_back(std::move(cs));
  }
  Serial::State com1, com2;
  FLICK_TRY(read_serial(r, &com1));
  if (config.serial2) FLICK_TRY(read_serial(r, &com2));
  std::vector<virtio::MmioTransport::State> devices;
  for (size_t i = 0; i < virtio_count(); ++i) {
    FLICK_TRY_ASSIGN(auto d, read_virtio(r));
    devices.push_back(std::move(d));
  }
  FLICK_TRY(r.expect_end());

  UniqueFd mem_fd(::open(mem_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!mem_fd) return sys_error("opening the guest memory file " + mem_path, errno);
  struct stat st{};
  if (::fstat(mem_fd.get(), &st) != 0) return sys_error("reading " + mem_path, errno);
  if (!(file_id(st) == saved_id))
    return make_error(Errc::integrity, mem_path + " is not the memory file saved with " + state_path +
                                           " (its size, inode or modification time differ)");
  auto mem = GuestMemory::map_file_private(layout::ram_ranges(config.memory_mib << 20), mem_fd.get());
  if (!mem) return std::move(mem).error().with_context(mem_path);
  memory = std::move(mem).value();
  FLICK_TRY(open_virtio_devices());
  FLICK_TRY(open_machine());

  if (auto res = restore_vm_state(*vm, vm_state); !res) return std::move(res).error().with_context("restoring " + state_path);
  FLICK_TRY_ASSIGN(CpuidTable supported, kvm->supported_cpuid());
  add_capability_features(supported, {kvm->check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0});
  for (uint32_t i = 0; i < config.cpus; ++i) {
    FLICK_TRY_ASSIGN(KvmVcpu kv, vm->create_vcpu(i));
    if (i == 0) {
      // What a cold boot on this host would give the guest (KVM may fill in more than it
      // reports as supported) must include every feature the saved guest may be using.
      FLICK_TRY(kv.set_cpuid(cpuid_for_vcpu(supported, 0, config.cpus)));
      FLICK_TRY_ASSIGN(CpuidTable here, kv.get_cpuid());
      if (auto missing = missing_cpu_features(cpu_states[0].cpuid, here); !missing.empty())
        return make_error(Errc::unsupported, "the snapshot in " + dir +
                                                 " uses CPU features this host's KVM does not offer (CPUID " + missing + ")");
    }
    if (auto res = restore_vcpu_state(kv, cpu_states[i]); !res)
      return std::move(res).error().with_context("restoring vCPU " + std::to_string(i) + " from " + state_path);
    add_vcpu(std::move(kv));
  }
  serial->load(com1);
  if (serial2) serial2->load(com2);
  for (size_t i = 0; i < virtio.size(); ++i)
    if (auto res = virtio[i]->load(devices[i]); !res)
      return std::move(res).error().with_context("restoring the virtio device at " + hex(virtio_windows[i].base));
  return {};
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

Result<std::unique_ptr<Vm>> Vm::restore(const VmConfig& config, const std::string& dir) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  FLICK_TRY(impl->restore(dir));
  impl->dump_registration = vmm::StateDumpRegistration::add([d = impl.get()] { return d->describe(); });
  return std::unique_ptr<Vm>(new Vm(std::move(impl)));
}

Result<void> Vm::snapshot(const std::string& dir) { return impl_->save(dir); }

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
