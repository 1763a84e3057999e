#include "vmm/cpu_setup.h"

#include "vmm/layout.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

namespace flick::vmm {
namespace {

// MSR numbers (Intel SDM vol. 4).
constexpr uint32_t kMsrSysenterCs = 0x174;
constexpr uint32_t kMsrSysenterEsp = 0x175;
constexpr uint32_t kMsrSysenterEip = 0x176;
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint32_t kMsrStar = 0xc0000081;
constexpr uint32_t kMsrLstar = 0xc0000082;
constexpr uint32_t kMsrCstar = 0xc0000083;
constexpr uint32_t kMsrSyscallMask = 0xc0000084;
constexpr uint32_t kMsrKernelGsBase = 0xc0000102;

constexpr uint64_t kMiscEnableFastString = 1;
constexpr uint64_t kMtrrEnable = 1u << 11;
constexpr uint64_t kMtrrTypeWriteBack = 6;

// Segment descriptors (SDM 3.4.5). Linux's boot protocol wants __BOOT_CS = 0x10 and
// __BOOT_DS = 0x18; PVH wants a flat 32-bit code segment in CS.
constexpr uint64_t kGdtCode64 = 0x00af9b000000ffff;
constexpr uint64_t kGdtCode32 = 0x00cf9b000000ffff;
constexpr uint64_t kGdtData = 0x00cf93000000ffff;
constexpr uint64_t kGdtTss = 0x008f8b000000ffff;
constexpr uint16_t kSelCode = 0x10, kSelData = 0x18, kSelTss = 0x20;

kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector) {
  kvm_segment s{};
  s.base = ((entry >> 16) & 0xffffff) | (((entry >> 56) & 0xff) << 24);
  uint32_t limit = static_cast<uint32_t>((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
  s.g = (entry >> 55) & 1;
  s.limit = s.g ? (limit << 12) | 0xfff : limit;
  s.selector = selector;
  s.type = (entry >> 40) & 0xf;
  s.s = (entry >> 44) & 1;
  s.dpl = (entry >> 45) & 3;
  s.present = (entry >> 47) & 1;
  s.avl = (entry >> 52) & 1;
  s.l = (entry >> 53) & 1;
  s.db = (entry >> 54) & 1;
  s.unusable = s.present ? 0 : 1;
  return s;
}

uint32_t bits_for(uint32_t n) { return n <= 1 ? 0 : static_cast<uint32_t>(std::bit_width(n - 1)); }

}  // namespace

void add_capability_features(CpuidTable& supported, const KvmCpuidCaps& caps) {
  // Without TSC-deadline (CPUID.01H:ECX[24], SDM 10.5.4.1) Linux runs its LAPIC timer in
  // one-shot mode, which it must first calibrate against another timer at boot.
  if (auto* leaf1 = supported.find(0x1); leaf1 && caps.tsc_deadline_timer) leaf1->ecx |= 1u << 24;
}

CpuidTable cpuid_for_vcpu(const CpuidTable& supported, uint32_t index, uint32_t count) {
  CpuidTable t = supported;
  const uint32_t apic_id = index;
  const uint32_t core_bits = bits_for(count);
  for (auto& e : t.entries()) {
    switch (e.function) {
      case 0x1:
        e.ebx = (e.ebx & 0x0000ffff) | (apic_id << 24) | (std::min<uint32_t>(count, 255) << 16);
        e.ecx |= 1u << 31;  // hypervisor present
        if (count > 1) e.edx |= 1u << 28;  // HTT: the package has several logical processors
        break;
      case 0x4:  // deterministic cache parameters: cores per package in EAX[31:26]
        e.eax = (e.eax & 0x03ffffff) | ((count - 1) << 26);
        e.eax &= ~(0xfffu << 14);  // one logical processor per cache (no SMT siblings)
        break;
      case 0xb:
      case 0x1f:  // extended topology: level 0 SMT (1 thread), level 1 core (`count` cores)
        if (e.index == 0) {
          e.eax = 0; e.ebx = 1; e.ecx = 1u << 8;
        } else if (e.index == 1) {
          e.eax = core_bits; e.ebx = count; e.ecx = (2u << 8) | 1;
        } else {
          e.eax = 0; e.ebx = 0; e.ecx = e.index;
        }
        e.edx = apic_id;
        break;
      case 0x80000008:  // AMD: number of cores - 1 and the APIC ID size
        e.ecx = (e.ecx & ~0xf0ffu) | (count - 1) | (core_bits << 12);
        break;
      case 0x8000001e:  // AMD extended APIC ID
        e.eax = apic_id;
        e.ebx = (e.ebx & ~0xffu) | apic_id;
        break;
      default:
        break;
    }
  }
  return t;
}

std::vector<kvm_msr_entry> boot_msrs(const std::vector<uint32_t>& supported) {
  // IA32_TSC is left alone: KVM synchronises the TSCs of vCPUs it creates together, and
  // writing it per vCPU at different moments makes Linux mark the TSC unstable.
  const std::array<std::pair<uint32_t, uint64_t>, 10> wanted{{
      {kMsrSysenterCs, 0}, {kMsrSysenterEsp, 0}, {kMsrSysenterEip, 0},
      {kMsrStar, 0}, {kMsrCstar, 0}, {kMsrKernelGsBase, 0}, {kMsrSyscallMask, 0},
      {kMsrLstar, 0}, {kMsrMiscEnable, kMiscEnableFastString},
      {kMsrMtrrDefType, kMtrrEnable | kMtrrTypeWriteBack},
  }};
  std::vector<kvm_msr_entry> out;
  for (auto [index, value] : wanted) {
    if (std::find(supported.begin(), supported.end(), index) == supported.end()) continue;
    kvm_msr_entry e{};
    e.index = index;
    e.data = value;
    out.push_back(e);
  }
  return out;
}

Result<void> configure_vcpu(KvmVcpu& vcpu, const CpuidTable& supported,
                            const std::vector<uint32_t>& msr_list, uint32_t count) {
  const std::string who = "setting up vCPU " + std::to_string(vcpu.id());
  if (auto r = vcpu.set_cpuid(cpuid_for_vcpu(supported, vcpu.id(), count)); !r)
    return std::move(r).error().with_context(who);
  auto msrs = boot_msrs(msr_list);
  if (auto r = vcpu.set_msrs(msrs); !r) return std::move(r).error().with_context(who);

  kvm_fpu fpu{};
  fpu.fcw = 0x37f;      // x87 default control word (FNINIT)
  fpu.mxcsr = 0x1f80;   // SSE default: all exceptions masked
  if (auto r = vcpu.set_fpu(fpu); !r) return std::move(r).error().with_context(who);

  // LINT0 = ExtINT (the PIC's output), LINT1 = NMI, as a PC's firmware leaves them.
  auto lapic = vcpu.get_lapic();
  if (!lapic) return std::move(lapic).error().with_context(who);
  auto set_lvt = [&](size_t reg, uint32_t mode) {
    uint32_t v;
    std::memcpy(&v, &lapic->regs[reg], 4);
    v = (v & ~0x700u) | (mode << 8);
    std::memcpy(&lapic->regs[reg], &v, 4);
  };
  set_lvt(0x350, 0x7);
  set_lvt(0x360, 0x4);
  if (auto r = vcpu.set_lapic(*lapic); !r) return std::move(r).error().with_context(who);
  return {};
}

Result<void> setup_boot_vcpu(KvmVcpu& vcpu, GuestMemory& mem, const BootCpuState& state) {
  const uint64_t code = state.long_mode ? kGdtCode64 : kGdtCode32;
  const std::array<uint64_t, 5> gdt{0, 0, code, kGdtData, kGdtTss};
  FLICK_TRY(mem.write_obj(GuestAddress{layout::kGdt}, gdt));
  FLICK_TRY(mem.write_obj(GuestAddress{layout::kIdt}, uint64_t{0}));

  FLICK_TRY_ASSIGN(kvm_sregs sregs, vcpu.get_sregs());
  sregs.gdt.base = layout::kGdt;
  sregs.gdt.limit = sizeof(gdt) - 1;
  sregs.idt.base = layout::kIdt;
  sregs.idt.limit = sizeof(uint64_t) - 1;
  sregs.cs = segment_from_gdt(code, kSelCode);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment_from_gdt(kGdtData, kSelData);
  sregs.tr = segment_from_gdt(kGdtTss, kSelTss);
  sregs.cr0 = 0x11;  // PE | ET
  sregs.cr4 = 0;
  sregs.efer = 0;

  if (state.long_mode) {
    // Identity map of the first 4 GiB with 2 MiB pages (boot protocol 2.12+: 64-bit entry
    // expects the kernel, boot_params, cmdline and initrd identity mapped).
    FLICK_TRY(mem.write_obj(GuestAddress{layout::kPml4}, uint64_t{layout::kPdpt | 0x3}));
    for (uint64_t i = 0; i < 4; ++i) {
      const uint64_t pd = layout::kPd + i * 0x1000;
      FLICK_TRY(mem.write_obj(GuestAddress{layout::kPdpt + i * 8}, uint64_t{pd | 0x3}));
      std::array<uint64_t, 512> entries;
      for (uint64_t j = 0; j < 512; ++j) entries[j] = ((i << 30) | (j << 21)) | 0x83;
      FLICK_TRY(mem.write_obj(GuestAddress{pd}, entries));
    }
    sregs.cr3 = layout::kPml4;
    sregs.cr4 |= 0x20;              // PAE
    sregs.cr0 |= 0x80000000;        // PG
    sregs.efer |= 0x500;            // LME | LMA
  }
  FLICK_TRY(vcpu.set_sregs(sregs));

  kvm_regs regs{};
  regs.rflags = 0x2;
  regs.rip = state.rip;
  regs.rsi = state.rsi;
  regs.rbx = state.rbx;
  if (state.long_mode) regs.rsp = regs.rbp = layout::kBootStack;
  FLICK_TRY(vcpu.set_regs(regs));
  return {};
}

}  // namespace flick::vmm
