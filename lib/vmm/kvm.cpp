#include "vmm/kvm.h"

#include "base/hex.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace flick::vmm {
namespace {

template <class Arg>
int xioctl(int fd, unsigned long req, Arg arg) {
  int r;
  do {
    r = ::ioctl(fd, req, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

Error ioctl_error(const char* what) { return sys_error(what, errno); }

// The variable-length KVM structures, laid out by hand: in C++ the uapi headers'
// __DECLARE_FLEX_ARRAY adds an empty struct that shifts the array and changes the struct
// size encoded in the ioctl number (kvm_cpuid2 becomes 12 bytes instead of 8).
struct CpuidHeader { uint32_t nent; uint32_t padding; };
struct MsrsHeader { uint32_t nmsrs; uint32_t pad; };
struct MsrListHeader { uint32_t nmsrs; };
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
constexpr unsigned long kGetCpuid2 = _IOWR(KVMIO, 0x91, CpuidHeader);
struct XsaveArea { uint32_t region[1024]; };  // kvm_xsave without its flexible tail
constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveArea);
constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveArea);
constexpr unsigned long kGetXsave2 = _IOR(KVMIO, 0xcf, XsaveArea);

// One KVM_GET_x / KVM_SET_x ioctl on a fixed-size structure.
template <class T>
Result<T> get_struct(int fd, unsigned long req, const char* what) {
  T v{};
  if (xioctl(fd, req, &v) < 0) return ioctl_error(what);
  return v;
}
template <class T>
Result<void> set_struct(int fd, unsigned long req, const T& v, const char* what) {
  if (xioctl(fd, req, &v) < 0) return ioctl_error(what);
  return {};
}

// A header followed by `n` entries, in one suitably aligned buffer.
template <class Header, class Entry>
struct Packed {
  explicit Packed(size_t n)
      : buf(std::make_unique<uint64_t[]>((sizeof(Header) + n * sizeof(Entry) + 7) / 8)) {}
  Header* header() { return reinterpret_cast<Header*>(buf.get()); }
  Entry* entries() { return reinterpret_cast<Entry*>(reinterpret_cast<char*>(buf.get()) + sizeof(Header)); }
  std::unique_ptr<uint64_t[]> buf;
};

}  // namespace

kvm_cpuid_entry2* CpuidTable::find(uint32_t function, uint32_t index) {
  for (auto& e : entries_) {
    if (e.function != function) continue;
    if ((e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e.index != index) continue;
    return &e;
  }
  return nullptr;
}

Result<KvmSystem> KvmSystem::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    Error e = sys_error("opening " + path, err);
    e.code = Errc::kvm_unavailable;
    if (err == ENOENT) e.message += " (is the kvm module loaded? is this a VM without nested virtualization?)";
    if (err == EACCES) e.message += " (add the user to the kvm group)";
    return e;
  }
  KvmSystem sys;
  sys.fd_.reset(fd);
  int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION)
    return make_error(Errc::kvm_unavailable, path + ": KVM API version " + std::to_string(version) +
                                                 ", expected " + std::to_string(KVM_API_VERSION));
  struct {
    int cap;
    const char* name;
  } required[] = {
      {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
      {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
      {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
      {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
      {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
      {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
      {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
  };
  for (const auto& c : required) {
    if (sys.check_extension(c.cap) <= 0)
      return make_error(Errc::kvm_unavailable, path + " lacks the required capability " + c.name);
  }
  return sys;
}

int KvmSystem::check_extension(int cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

Result<CpuidTable> KvmSystem::supported_cpuid() const {
  for (uint32_t n = 128; n <= 4096; n *= 2) {
    Packed<CpuidHeader, kvm_cpuid_entry2> c(n);
    c.header()->nent = n;
    if (xioctl(fd_.get(), kGetSupportedCpuid, c.header()) == 0)
      return CpuidTable({c.entries(), c.entries() + c.header()->nent});
    if (errno != E2BIG) return ioctl_error("KVM_GET_SUPPORTED_CPUID");
  }
  return make_error(Errc::unsupported, "KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

Result<std::vector<uint32_t>> KvmSystem::msr_index_list() const {
  MsrListHeader probe{};
  if (xioctl(fd_.get(), kGetMsrIndexList, &probe) < 0 && errno != E2BIG)
    return ioctl_error("KVM_GET_MSR_INDEX_LIST");
  Packed<MsrListHeader, uint32_t> l(probe.nmsrs);
  l.header()->nmsrs = probe.nmsrs;
  if (xioctl(fd_.get(), kGetMsrIndexList, l.header()) < 0) return ioctl_error("KVM_GET_MSR_INDEX_LIST");
  return std::vector<uint32_t>(l.entries(), l.entries() + l.header()->nmsrs);
}

Result<size_t> KvmSystem::vcpu_mmap_size() const {
  int r = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (r < 0) return ioctl_error("KVM_GET_VCPU_MMAP_SIZE");
  return static_cast<size_t>(r);
}

Result<KvmVm> KvmSystem::create_vm() const {
  FLICK_TRY_ASSIGN(size_t run_size, vcpu_mmap_size());
  int fd = xioctl(fd_.get(), KVM_CREATE_VM, 0);
  if (fd < 0) return ioctl_error("KVM_CREATE_VM");
  return KvmVm(UniqueFd(fd), run_size);
}

Result<void> KvmVm::set_user_memory_region(uint32_t slot, uint64_t guest_addr, uint64_t size,
                                           void* host, uint32_t flags) {
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = guest_addr;
  r.memory_size = size;
  r.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (xioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0)
    return ioctl_error("KVM_SET_USER_MEMORY_REGION");
  return {};
}

Result<void> KvmVm::set_tss_addr(uint64_t addr) {
  if (xioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0)
    return ioctl_error("KVM_SET_TSS_ADDR");
  return {};
}

Result<void> KvmVm::set_identity_map_addr(uint64_t addr) {
  if (xioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0)
    return ioctl_error("KVM_SET_IDENTITY_MAP_ADDR");
  return {};
}

Result<void> KvmVm::create_irqchip() {
  if (xioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) return ioctl_error("KVM_CREATE_IRQCHIP");
  return {};
}

Result<void> KvmVm::create_pit2() {
  kvm_pit_config cfg{};
  cfg.flags = KVM_PIT_SPEAKER_DUMMY;
  if (xioctl(fd_.get(), KVM_CREATE_PIT2, &cfg) < 0) return ioctl_error("KVM_CREATE_PIT2");
  return {};
}

Result<void> KvmVm::irqfd(int event_fd, uint32_t gsi) {
  kvm_irqfd f{};
  f.fd = static_cast<uint32_t>(event_fd);
  f.gsi = gsi;
  if (xioctl(fd_.get(), KVM_IRQFD, &f) < 0) return ioctl_error("KVM_IRQFD");
  return {};
}

Result<void> KvmVm::irq_line(uint32_t gsi, bool level) {
  kvm_irq_level l{};
  l.irq = gsi;
  l.level = level ? 1 : 0;
  if (xioctl(fd_.get(), KVM_IRQ_LINE, &l) < 0) return ioctl_error("KVM_IRQ_LINE");
  return {};
}

Result<void> KvmVm::ioeventfd(int event_fd, const IoEventSpec& spec, bool deassign) {
  kvm_ioeventfd e{};
  e.datamatch = spec.datamatch;
  e.addr = spec.addr;
  e.len = spec.len;
  e.fd = event_fd;
  if (spec.pio) e.flags |= KVM_IOEVENTFD_FLAG_PIO;
  if (spec.has_datamatch) e.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
  if (deassign) e.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  if (xioctl(fd_.get(), KVM_IOEVENTFD, &e) < 0) return ioctl_error("KVM_IOEVENTFD");
  return {};
}

Result<kvm_clock_data> KvmVm::get_clock() const {
  return get_struct<kvm_clock_data>(fd_.get(), KVM_GET_CLOCK, "KVM_GET_CLOCK");
}
Result<void> KvmVm::set_clock(const kvm_clock_data& clock) {
  return set_struct(fd_.get(), KVM_SET_CLOCK, clock, "KVM_SET_CLOCK");
}
Result<kvm_pit_state2> KvmVm::get_pit2() const {
  return get_struct<kvm_pit_state2>(fd_.get(), KVM_GET_PIT2, "KVM_GET_PIT2");
}
Result<void> KvmVm::set_pit2(const kvm_pit_state2& pit) {
  return set_struct(fd_.get(), KVM_SET_PIT2, pit, "KVM_SET_PIT2");
}
Result<kvm_irqchip> KvmVm::get_irqchip(uint32_t chip_id) const {
  kvm_irqchip c{};
  c.chip_id = chip_id;
  if (xioctl(fd_.get(), KVM_GET_IRQCHIP, &c) < 0) return ioctl_error("KVM_GET_IRQCHIP");
  return c;
}
Result<void> KvmVm::set_irqchip(const kvm_irqchip& chip) {
  return set_struct(fd_.get(), KVM_SET_IRQCHIP, chip, "KVM_SET_IRQCHIP");
}

Result<KvmVcpu> KvmVm::create_vcpu(uint32_t id) {
  int fd = xioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) return ioctl_error("KVM_CREATE_VCPU");
  UniqueFd owned(fd);
  void* p = ::mmap(nullptr, run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return sys_error("mapping the kvm_run area of vCPU " + std::to_string(id), errno);
  return KvmVcpu(std::move(owned), static_cast<kvm_run*>(p), run_size_, id);
}

KvmVcpu::KvmVcpu(UniqueFd fd, kvm_run* run, size_t run_size, uint32_t id)
    : fd_(std::move(fd)), run_(run), run_size_(run_size), id_(id) {}

KvmVcpu::KvmVcpu(KvmVcpu&& o) noexcept
    : fd_(std::move(o.fd_)), run_(std::exchange(o.run_, nullptr)), run_size_(o.run_size_), id_(o.id_) {}

KvmVcpu::~KvmVcpu() {
  if (run_) ::munmap(run_, run_size_);
}

int KvmVcpu::run() { return ::ioctl(fd_.get(), KVM_RUN, 0) < 0 ? errno : 0; }

Result<kvm_regs> KvmVcpu::get_regs() const {
  kvm_regs r{};
  if (xioctl(fd_.get(), KVM_GET_REGS, &r) < 0) return ioctl_error("KVM_GET_REGS");
  return r;
}

Result<void> KvmVcpu::set_regs(const kvm_regs& regs) {
  if (xioctl(fd_.get(), KVM_SET_REGS, &regs) < 0) return ioctl_error("KVM_SET_REGS");
  return {};
}

Result<kvm_sregs> KvmVcpu::get_sregs() const {
  kvm_sregs r{};
  if (xioctl(fd_.get(), KVM_GET_SREGS, &r) < 0) return ioctl_error("KVM_GET_SREGS");
  return r;
}

Result<void> KvmVcpu::set_sregs(const kvm_sregs& sregs) {
  if (xioctl(fd_.get(), KVM_SET_SREGS, &sregs) < 0) return ioctl_error("KVM_SET_SREGS");
  return {};
}

Result<void> KvmVcpu::set_fpu(const kvm_fpu& fpu) {
  if (xioctl(fd_.get(), KVM_SET_FPU, &fpu) < 0) return ioctl_error("KVM_SET_FPU");
  return {};
}

Result<void> KvmVcpu::set_cpuid(const CpuidTable& cpuid) {
  const auto& e = cpuid.entries();
  Packed<CpuidHeader, kvm_cpuid_entry2> c(e.size());
  c.header()->nent = static_cast<uint32_t>(e.size());
  std::memcpy(c.entries(), e.data(), e.size() * sizeof(kvm_cpuid_entry2));
  if (xioctl(fd_.get(), kSetCpuid2, c.header()) < 0) return ioctl_error("KVM_SET_CPUID2");
  return {};
}

Result<void> KvmVcpu::set_msrs(std::span<const kvm_msr_entry> msrs) {
  Packed<MsrsHeader, kvm_msr_entry> m(msrs.size());
  m.header()->nmsrs = static_cast<uint32_t>(msrs.size());
  std::memcpy(m.entries(), msrs.data(), msrs.size_bytes());
  int r = xioctl(fd_.get(), kSetMsrs, m.header());
  if (r < 0) return ioctl_error("KVM_SET_MSRS");
  if (static_cast<size_t>(r) != msrs.size())
    return make_error(Errc::unsupported,
                      "KVM_SET_MSRS: KVM rejected MSR " + hex(msrs[static_cast<size_t>(r)].index));
  return {};
}

Result<kvm_lapic_state> KvmVcpu::get_lapic() const {
  kvm_lapic_state s{};
  if (xioctl(fd_.get(), KVM_GET_LAPIC, &s) < 0) return ioctl_error("KVM_GET_LAPIC");
  return s;
}

Result<void> KvmVcpu::set_lapic(const kvm_lapic_state& lapic) {
  if (xioctl(fd_.get(), KVM_SET_LAPIC, &lapic) < 0) return ioctl_error("KVM_SET_LAPIC");
  return {};
}

Result<kvm_mp_state> KvmVcpu::get_mp_state() const {
  kvm_mp_state s{};
  if (xioctl(fd_.get(), KVM_GET_MP_STATE, &s) < 0) return ioctl_error("KVM_GET_MP_STATE");
  return s;
}

Result<kvm_vcpu_events> KvmVcpu::get_vcpu_events() const {
  kvm_vcpu_events e{};
  if (xioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &e) < 0) return ioctl_error("KVM_GET_VCPU_EVENTS");
  return e;
}

Result<void> KvmVcpu::set_mp_state(const kvm_mp_state& state) {
  return set_struct(fd_.get(), KVM_SET_MP_STATE, state, "KVM_SET_MP_STATE");
}

Result<void> KvmVcpu::set_vcpu_events(const kvm_vcpu_events& events) {
  return set_struct(fd_.get(), KVM_SET_VCPU_EVENTS, events, "KVM_SET_VCPU_EVENTS");
}

Result<CpuidTable> KvmVcpu::get_cpuid() const {
  for (uint32_t n = 128;; n *= 2) {
    Packed<CpuidHeader, kvm_cpuid_entry2> c(n);
    c.header()->nent = n;
    if (xioctl(fd_.get(), kGetCpuid2, c.header()) == 0)
      return CpuidTable({c.entries(), c.entries() + c.header()->nent});
    if (errno != E2BIG || n > 4096) return ioctl_error("KVM_GET_CPUID2");
  }
}

Result<size_t> KvmVcpu::get_msrs(std::span<kvm_msr_entry> msrs) const {
  Packed<MsrsHeader, kvm_msr_entry> m(msrs.size());
  m.header()->nmsrs = static_cast<uint32_t>(msrs.size());
  std::memcpy(m.entries(), msrs.data(), msrs.size_bytes());
  int r = xioctl(fd_.get(), kGetMsrs, m.header());
  if (r < 0) return ioctl_error("KVM_GET_MSRS");
  std::memcpy(msrs.data(), m.entries(), msrs.size_bytes());
  return static_cast<size_t>(r);
}

Result<std::vector<uint8_t>> KvmVcpu::get_xsave(size_t size) const {
  std::vector<uint8_t> x(std::max(size, sizeof(XsaveArea)));
  const bool v2 = x.size() > sizeof(XsaveArea);
  if (xioctl(fd_.get(), v2 ? kGetXsave2 : kGetXsave, x.data()) < 0)
    return ioctl_error(v2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE");
  return x;
}

Result<void> KvmVcpu::set_xsave(std::span<const uint8_t> xsave) {
  if (xsave.size() < sizeof(XsaveArea))
    return make_error(Errc::invalid_argument, "KVM_SET_XSAVE: the XSAVE area is " +
                                                  std::to_string(xsave.size()) + " bytes, less than kvm_xsave");
  if (xioctl(fd_.get(), kSetXsave, xsave.data()) < 0) return ioctl_error("KVM_SET_XSAVE");
  return {};
}

Result<kvm_xcrs> KvmVcpu::get_xcrs() const {
  return get_struct<kvm_xcrs>(fd_.get(), KVM_GET_XCRS, "KVM_GET_XCRS");
}
Result<void> KvmVcpu::set_xcrs(const kvm_xcrs& xcrs) {
  return set_struct(fd_.get(), KVM_SET_XCRS, xcrs, "KVM_SET_XCRS");
}
Result<kvm_debugregs> KvmVcpu::get_debugregs() const {
  return get_struct<kvm_debugregs>(fd_.get(), KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS");
}
Result<void> KvmVcpu::set_debugregs(const kvm_debugregs& regs) {
  return set_struct(fd_.get(), KVM_SET_DEBUGREGS, regs, "KVM_SET_DEBUGREGS");
}

Result<uint32_t> KvmVcpu::get_tsc_khz() const {
  int r = xioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  if (r < 0) return ioctl_error("KVM_GET_TSC_KHZ");
  return static_cast<uint32_t>(r);
}

Result<void> KvmVcpu::set_tsc_khz(uint32_t khz) {
  if (xioctl(fd_.get(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz)) < 0)
    return ioctl_error("KVM_SET_TSC_KHZ");
  return {};
}

Result<uint64_t> KvmVcpu::get_tsc_offset() const {
  uint64_t offset = 0;
  kvm_device_attr a{0, KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET, reinterpret_cast<uint64_t>(&offset)};
  if (xioctl(fd_.get(), KVM_GET_DEVICE_ATTR, &a) < 0) return ioctl_error("KVM_GET_DEVICE_ATTR (TSC offset)");
  return offset;
}

Result<void> KvmVcpu::set_tsc_offset(uint64_t offset) {
  kvm_device_attr a{0, KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET, reinterpret_cast<uint64_t>(&offset)};
  if (xioctl(fd_.get(), KVM_SET_DEVICE_ATTR, &a) < 0) return ioctl_error("KVM_SET_DEVICE_ATTR (TSC offset)");
  return {};
}

Result<void> KvmVcpu::kvmclock_ctrl() {
  if (xioctl(fd_.get(), KVM_KVMCLOCK_CTRL, 0) < 0 && errno != EINVAL) return ioctl_error("KVM_KVMCLOCK_CTRL");
  return {};
}

}  // namespace flick::vmm
