// Puts a vCPU into the state a Linux boot protocol expects: CPUID with this vCPU's topology,
// MSRs, FPU, LAPIC LINT pins, and (boot vCPU only) registers, GDT and identity page tables.
#pragma once

#include "base/guest_memory.h"
#include "vmm/kvm.h"

#include <flick/result.h>

#include <cstdint>
#include <vector>

namespace flick::vmm {

// What KVM gives a guest that KVM_GET_SUPPORTED_CPUID does not report: features it emulates
// only given a capability (Documentation/virt/kvm/api.rst, KVM_GET_SUPPORTED_CPUID).
struct KvmCpuidCaps {
  bool tsc_deadline_timer = false;  // KVM_CAP_TSC_DEADLINE_TIMER (in-kernel LAPIC)
};

// Sets in `supported` the CPUID bits that `caps` says KVM can back.
void add_capability_features(CpuidTable& supported, const KvmCpuidCaps& caps);

// CPUID for vCPU `index` of `count`: APIC IDs and topology (leaves 1, 4, 0xb, 0x1f,
// 0x80000008, 0x8000001e) rewritten; the hypervisor leaves 0x40000000+ left as KVM reports them.
CpuidTable cpuid_for_vcpu(const CpuidTable& supported, uint32_t index, uint32_t count);

// The boot MSRs, filtered to those KVM lists as settable.
std::vector<kvm_msr_entry> boot_msrs(const std::vector<uint32_t>& supported);

// CPUID, MSRs, FPU and LAPIC for every vCPU.
Result<void> configure_vcpu(KvmVcpu& vcpu, const CpuidTable& supported,
                            const std::vector<uint32_t>& msr_list, uint32_t count);

// The register state the boot vCPU starts in.
struct BootCpuState {
  bool long_mode;  // 64-bit boot protocol; otherwise PVH (32-bit protected mode, no paging)
  uint64_t rip;
  uint64_t rsi;    // boot_params (64-bit boot protocol)
  uint64_t rbx;    // hvm_start_info (PVH)
};

// Writes the GDT (and for long mode, identity page tables for the first 4 GiB) into guest
// memory and loads the boot vCPU's registers.
Result<void> setup_boot_vcpu(KvmVcpu& vcpu, GuestMemory& mem, const BootCpuState& state);

}  // namespace flick::vmm
