#include "vmm/snapshot.h"

#include "base/hex.h"

#include <zlib.h>

#include <algorithm>
#include <array>

namespace flick::vmm {
namespace {

constexpr std::array<uint8_t, 8> kMagic{'f', 'l', 'i', 'c', 'k', 'v', 'm', '\n'};
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8;  // magic, format version, reserved, payload length
constexpr size_t kChecksumSize = 4;  // CRC-32 (zlib), little-endian
constexpr uint32_t kMsrTsc = 0x10, kMsrTscDeadline = 0x6e0;
constexpr size_t kMaxMsrsPerCall = 256;  // KVM_MAX_MSR_ENTRIES

std::array<uint8_t, kChecksumSize> checksum(std::span<const uint8_t> bytes) {
  const uLong crc = crc32_z(crc32_z(0, Z_NULL, 0), bytes.data(), bytes.size());
  return {static_cast<uint8_t>(crc), static_cast<uint8_t>(crc >> 8), static_cast<uint8_t>(crc >> 16),
          static_cast<uint8_t>(crc >> 24)};
}

void put_le(std::vector<uint8_t>& out, uint64_t v, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint64_t get_le(const uint8_t* p, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

}  // namespace

void StateWriter::put_bytes(std::span<const uint8_t> bytes) {
  put_le(payload_, bytes.size(), 8);
  payload_.insert(payload_.end(), bytes.begin(), bytes.end());
}

std::vector<uint8_t> StateWriter::finish() const {
  std::vector<uint8_t> file(kMagic.begin(), kMagic.end());
  put_le(file, kStateFormatVersion, 4);
  put_le(file, 0, 4);
  put_le(file, payload_.size(), 8);
  file.insert(file.end(), payload_.begin(), payload_.end());
  const auto sum = checksum(file);
  file.insert(file.end(), sum.begin(), sum.end());
  return file;
}

Result<StateReader> StateReader::parse(std::vector<uint8_t> file, std::string what) {
  StateReader r;
  r.what_ = std::move(what);
  if (file.size() < kMagic.size() || !std::equal(kMagic.begin(), kMagic.end(), file.begin()))
    return r.malformed("not a flick VM state file");
  if (file.size() < kHeaderSize + kChecksumSize) return r.malformed("truncated (" + std::to_string(file.size()) + " bytes)");
  if (uint64_t v = get_le(file.data() + 8, 4); v != kStateFormatVersion)
    return make_error(Errc::unsupported, r.what_ + ": state format version " + std::to_string(v) +
                                             "; this flick reads version " + std::to_string(kStateFormatVersion));
  const uint64_t payload = get_le(file.data() + 16, 8);
  if (payload != file.size() - kHeaderSize - kChecksumSize)
    return r.malformed("truncated or extended: the header announces " + std::to_string(payload) +
                       " bytes of state, the file holds " + std::to_string(file.size() - kHeaderSize - kChecksumSize));
  const auto sum = checksum({file.data(), file.size() - kChecksumSize});
  if (!std::equal(sum.begin(), sum.end(), file.end() - kChecksumSize))
    return make_error(Errc::integrity, r.what_ + ": checksum mismatch (the file was changed or damaged)");
  r.pos_ = kHeaderSize;
  r.end_ = file.size() - kChecksumSize;
  r.file_ = std::move(file);
  return r;
}

Error StateReader::malformed(const std::string& why) const {
  return make_error(Errc::malformed, what_ + ": " + why);
}

Error StateReader::wrong_size(size_t got, size_t want) const {
  return malformed("record " + std::to_string(record_) + " is " + std::to_string(got) + " bytes, expected " +
                   std::to_string(want) + " (written by a flick built against other KVM headers?)");
}

Result<std::span<const uint8_t>> StateReader::get_bytes() {
  ++record_;
  if (end_ - pos_ < 8) return malformed("record " + std::to_string(record_) + " is missing");
  const uint64_t len = get_le(file_.data() + pos_, 8);
  pos_ += 8;
  if (len > end_ - pos_) return malformed("record " + std::to_string(record_) + " runs past the end");
  std::span<const uint8_t> out(file_.data() + pos_, len);
  pos_ += len;
  return out;
}

Result<std::string> StateReader::get_string() {
  FLICK_TRY_ASSIGN(auto b, get_bytes());
  return std::string(b.begin(), b.end());
}

Result<void> StateReader::expect_end() const {
  if (pos_ != end_) return malformed(std::to_string(end_ - pos_) + " bytes after the last record");
  return {};
}

Result<VmState> save_vm_state(const KvmVm& vm) {
  VmState s{};
  FLICK_TRY_ASSIGN(s.clock, vm.get_clock());
  FLICK_TRY_ASSIGN(s.pit, vm.get_pit2());
  FLICK_TRY_ASSIGN(s.pic_master, vm.get_irqchip(KVM_IRQCHIP_PIC_MASTER));
  FLICK_TRY_ASSIGN(s.pic_slave, vm.get_irqchip(KVM_IRQCHIP_PIC_SLAVE));
  FLICK_TRY_ASSIGN(s.ioapic, vm.get_irqchip(KVM_IRQCHIP_IOAPIC));
  return s;
}

Result<void> restore_vm_state(KvmVm& vm, const VmState& s) {
  FLICK_TRY(vm.set_pit2(s.pit));
  kvm_clock_data clock = s.clock;
  clock.flags = 0;  // KVM_SET_CLOCK takes only the value (and KVM_CLOCK_REALTIME, not used)
  FLICK_TRY(vm.set_clock(clock));
  FLICK_TRY(vm.set_irqchip(s.pic_master));
  FLICK_TRY(vm.set_irqchip(s.pic_slave));
  FLICK_TRY(vm.set_irqchip(s.ioapic));
  return {};
}

Result<VcpuState> save_vcpu_state(const KvmVcpu& vcpu, std::span<const uint32_t> msr_indices,
                                  size_t xsave_size) {
  VcpuState s{};
  // KVM_GET_MP_STATE may deliver pending INIT/SIPI into the LAPIC and registers: first.
  FLICK_TRY_ASSIGN(s.mp_state, vcpu.get_mp_state());
  FLICK_TRY_ASSIGN(s.regs, vcpu.get_regs());
  FLICK_TRY_ASSIGN(s.sregs, vcpu.get_sregs());
  FLICK_TRY_ASSIGN(s.xsave, vcpu.get_xsave(xsave_size));
  FLICK_TRY_ASSIGN(s.xcrs, vcpu.get_xcrs());
  FLICK_TRY_ASSIGN(s.debugregs, vcpu.get_debugregs());
  FLICK_TRY_ASSIGN(s.lapic, vcpu.get_lapic());
  FLICK_TRY_ASSIGN(s.cpuid, vcpu.get_cpuid());
  FLICK_TRY_ASSIGN(s.tsc_khz, vcpu.get_tsc_khz());

  // Read in chunks; KVM stops at an MSR it cannot read for this vCPU, which is left out.
  std::vector<kvm_msr_entry> todo;
  for (uint32_t i : msr_indices) todo.push_back({i, 0, 0});
  for (size_t pos = 0; pos < todo.size();) {
    const size_t n = std::min(kMaxMsrsPerCall, todo.size() - pos);
    std::span<kvm_msr_entry> chunk(todo.data() + pos, n);
    FLICK_TRY_ASSIGN(size_t got, vcpu.get_msrs(chunk));
    s.msrs.insert(s.msrs.end(), chunk.begin(), chunk.begin() + static_cast<ptrdiff_t>(got));
    pos += got < n ? got + 1 : n;
  }
  std::stable_partition(s.msrs.begin(), s.msrs.end(), [](const kvm_msr_entry& e) { return e.index != kMsrTscDeadline; });
  // A deadline of 0 read back while a timer interrupt was in flight would leave the restored
  // vCPU without timer interrupts; the current TSC fires at once instead.
  auto tsc = std::find_if(s.msrs.begin(), s.msrs.end(), [](const auto& e) { return e.index == kMsrTsc; });
  auto deadline = std::find_if(s.msrs.begin(), s.msrs.end(), [](const auto& e) { return e.index == kMsrTscDeadline; });
  if (tsc != s.msrs.end() && deadline != s.msrs.end() && deadline->data == 0) deadline->data = tsc->data;

  // Last: the GETs above may change what is pending.
  FLICK_TRY_ASSIGN(s.events, vcpu.get_vcpu_events());
  return s;
}

namespace {
// KVM takes a TSC written within a second of what it expects for a new VM's vCPU as an attempt
// to synchronize vCPUs, and keeps its own value instead: a guest saved less than a second
// after its VM was made would see its TSC go back. The offset is then corrected directly.
Result<void> keep_tsc(KvmVcpu& vcpu, std::span<const kvm_msr_entry> msrs) {
  auto saved = std::find_if(msrs.begin(), msrs.end(), [](const auto& e) { return e.index == kMsrTsc; });
  if (saved == msrs.end()) return {};
  kvm_msr_entry now{kMsrTsc, 0, 0};
  FLICK_TRY_ASSIGN(size_t got, vcpu.get_msrs({&now, 1}));
  if (got != 1 || now.data >= saved->data) return {};
  FLICK_TRY_ASSIGN(uint64_t offset, vcpu.get_tsc_offset());
  return vcpu.set_tsc_offset(offset + (saved->data - now.data));
}
}  // namespace

Result<void> restore_vcpu_state(KvmVcpu& vcpu, const VcpuState& s) {
  FLICK_TRY(vcpu.set_cpuid(s.cpuid));
  if (auto khz = vcpu.get_tsc_khz(); khz && s.tsc_khz && *khz != s.tsc_khz) {
    // Calibration differs a little from boot to boot; scale only beyond 250 ppm.
    const uint64_t diff = *khz > s.tsc_khz ? *khz - s.tsc_khz : s.tsc_khz - *khz;
    if (diff * 4000 > s.tsc_khz)
      if (auto r = vcpu.set_tsc_khz(s.tsc_khz); !r)
        return std::move(r).error().with_context("the snapshot's TSC runs at " + std::to_string(s.tsc_khz) +
                                                 " kHz, this host's at " + std::to_string(*khz) + " kHz");
  }
  FLICK_TRY(vcpu.set_mp_state(s.mp_state));
  FLICK_TRY(vcpu.set_regs(s.regs));
  FLICK_TRY(vcpu.set_sregs(s.sregs));
  FLICK_TRY(vcpu.set_xsave(s.xsave));
  FLICK_TRY(vcpu.set_xcrs(s.xcrs));
  FLICK_TRY(vcpu.set_debugregs(s.debugregs));
  FLICK_TRY(vcpu.set_lapic(s.lapic));
  // The TSC deadline (last in the list) only after the TSC is right.
  std::span<const kvm_msr_entry> msrs(s.msrs);
  const bool has_deadline = !msrs.empty() && msrs.back().index == kMsrTscDeadline;
  FLICK_TRY(vcpu.set_msrs(msrs.first(msrs.size() - has_deadline)));
  FLICK_TRY(keep_tsc(vcpu, s.msrs));
  if (has_deadline) FLICK_TRY(vcpu.set_msrs(msrs.last(1)));
  FLICK_TRY(vcpu.set_vcpu_events(s.events));
  return vcpu.kvmclock_ctrl();
}

void write_vm_state(StateWriter& w, const VmState& s) {
  w.put(s.clock);
  w.put(s.pit);
  w.put(s.pic_master);
  w.put(s.pic_slave);
  w.put(s.ioapic);
}

Result<VmState> read_vm_state(StateReader& r) {
  VmState s{};
  FLICK_TRY_ASSIGN(s.clock, r.get<kvm_clock_data>());
  FLICK_TRY_ASSIGN(s.pit, r.get<kvm_pit_state2>());
  FLICK_TRY_ASSIGN(s.pic_master, r.get<kvm_irqchip>());
  FLICK_TRY_ASSIGN(s.pic_slave, r.get<kvm_irqchip>());
  FLICK_TRY_ASSIGN(s.ioapic, r.get<kvm_irqchip>());
  return s;
}

namespace {
template <class T>
void put_vector(StateWriter& w, const std::vector<T>& v) {
  w.put_bytes({reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)});
}
template <class T>
Result<std::vector<T>> get_vector(StateReader& r, const char* what) {
  FLICK_TRY_ASSIGN(auto b, r.get_bytes());
  if (b.size() % sizeof(T)) return r.malformed(std::string(what) + " is not a whole number of entries");
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}
}  // namespace

void write_vcpu_state(StateWriter& w, const VcpuState& s) {
  put_vector(w, s.cpuid.entries());
  w.put(s.tsc_khz);
  w.put(s.mp_state);
  w.put(s.regs);
  w.put(s.sregs);
  w.put_bytes(s.xsave);
  w.put(s.xcrs);
  w.put(s.debugregs);
  w.put(s.lapic);
  put_vector(w, s.msrs);
  w.put(s.events);
}

Result<VcpuState> read_vcpu_state(StateReader& r) {
  VcpuState s{};
  FLICK_TRY_ASSIGN(auto cpuid, get_vector<kvm_cpuid_entry2>(r, "the CPUID table"));
  s.cpuid = CpuidTable(std::move(cpuid));
  FLICK_TRY_ASSIGN(s.tsc_khz, r.get<uint32_t>());
  FLICK_TRY_ASSIGN(s.mp_state, r.get<kvm_mp_state>());
  FLICK_TRY_ASSIGN(s.regs, r.get<kvm_regs>());
  FLICK_TRY_ASSIGN(s.sregs, r.get<kvm_sregs>());
  FLICK_TRY_ASSIGN(auto xsave, r.get_bytes());
  if (xsave.size() < 4096) return r.malformed("the XSAVE area is too small");
  s.xsave.assign(xsave.begin(), xsave.end());
  FLICK_TRY_ASSIGN(s.xcrs, r.get<kvm_xcrs>());
  FLICK_TRY_ASSIGN(s.debugregs, r.get<kvm_debugregs>());
  FLICK_TRY_ASSIGN(s.lapic, r.get<kvm_lapic_state>());
  FLICK_TRY_ASSIGN(s.msrs, get_vector<kvm_msr_entry>(r, "the MSR list"));
  FLICK_TRY_ASSIGN(s.events, r.get<kvm_vcpu_events>());
  return s;
}

}  // namespace flick::vmm
