// What a VM snapshot holds besides guest memory: the state file's format, and the KVM state
// of the VM and of each vCPU, saved and restored in the order KVM needs.
//
// The state file is a header (magic, format version, payload length), a payload of records
// (each a 64-bit length and that many bytes, read back in the order written) and a CRC-32 of
// everything before it. A record read as a KVM structure must have that structure's size, so a
// file written against other kernel headers is refused rather than misread.
#pragma once

#include "vmm/kvm.h"

#include <flick/result.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace flick::vmm {

inline constexpr uint32_t kStateFormatVersion = 1;

class StateWriter {
 public:
  void put_bytes(std::span<const uint8_t> bytes);
  void put_string(std::string_view s) {
    put_bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  }
  template <class T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    put_bytes({reinterpret_cast<const uint8_t*>(&v), sizeof v});
  }
  // The whole file: header, payload, checksum.
  std::vector<uint8_t> finish() const;

 private:
  std::vector<uint8_t> payload_;
};

class StateReader {
 public:
  // Checks the header, the length and the checksum; `what` names the file in errors.
  static Result<StateReader> parse(std::vector<uint8_t> file, std::string what);

  Result<std::span<const uint8_t>> get_bytes();
  Result<std::string> get_string();
  template <class T>
  Result<T> get() {
    static_assert(std::is_trivially_copyable_v<T>);
    FLICK_TRY_ASSIGN(auto bytes, get_bytes());
    if (bytes.size() != sizeof(T)) return wrong_size(bytes.size(), sizeof(T));
    T v;
    std::memcpy(&v, bytes.data(), sizeof v);
    return v;
  }
  // Fails unless every record has been read.
  Result<void> expect_end() const;
  Error malformed(const std::string& why) const;

 private:
  Error wrong_size(size_t got, size_t want) const;

  std::vector<uint8_t> file_;
  std::string what_;
  size_t pos_ = 0;
  size_t end_ = 0;
  unsigned record_ = 0;
};

struct VmState {
  kvm_clock_data clock;
  kvm_pit_state2 pit;
  kvm_irqchip pic_master, pic_slave, ioapic;
};

struct VcpuState {
  CpuidTable cpuid;
  uint32_t tsc_khz = 0;
  kvm_mp_state mp_state;
  kvm_regs regs;
  kvm_sregs sregs;
  std::vector<uint8_t> xsave;
  kvm_xcrs xcrs;
  kvm_debugregs debugregs;
  kvm_lapic_state lapic;
  std::vector<kvm_msr_entry> msrs;  // IA32_TSC_DEADLINE last: it needs the TSC and the LAPIC
  kvm_vcpu_events events;
};

Result<VmState> save_vm_state(const KvmVm& vm);
// The PIT, then the clock, then the PICs and IOAPIC.
Result<void> restore_vm_state(KvmVm& vm, const VmState& state);

// The vCPU must not be running. `msr_indices` are KVM's MSR index list; those KVM cannot read
// for this vCPU are left out. `xsave_size` is KVM_CAP_XSAVE2's answer (0 without it).
Result<VcpuState> save_vcpu_state(const KvmVcpu& vcpu, std::span<const uint32_t> msr_indices,
                                  size_t xsave_size);
// CPUID, TSC frequency (when it differs), MP state, registers, XSAVE, XCRs, debug registers,
// LAPIC, MSRs, events: SET_REGS drops pending exceptions that SET_VCPU_EVENTS restores, SET_SREGS
// sets the APIC base that SET_LAPIC needs, and the TSC-deadline MSR sticks only once the LAPIC
// is set.
Result<void> restore_vcpu_state(KvmVcpu& vcpu, const VcpuState& state);

void write_vm_state(StateWriter& w, const VmState& s);
Result<VmState> read_vm_state(StateReader& r);
void write_vcpu_state(StateWriter& w, const VcpuState& s);
Result<VcpuState> read_vcpu_state(StateReader& r);

}  // namespace flick::vmm
