// RAII wrappers for the KVM system, VM and vCPU file descriptors.
//
// Each wrapper method is one ioctl; failures come back as an Error naming the ioctl and its
// errno. This is the only file family that casts for ioctl arguments.
#pragma once

#include "base/fd.h"

#include <flick/result.h>

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace flick::vmm {

// A CPUID table in the layout KVM_GET/SET_CPUID2 use.
class CpuidTable {
 public:
  CpuidTable() = default;
  explicit CpuidTable(std::vector<kvm_cpuid_entry2> entries) : entries_(std::move(entries)) {}
  std::vector<kvm_cpuid_entry2>& entries() { return entries_; }
  const std::vector<kvm_cpuid_entry2>& entries() const { return entries_; }
  kvm_cpuid_entry2* find(uint32_t function, uint32_t index = 0);

 private:
  std::vector<kvm_cpuid_entry2> entries_;
};

class KvmVm;
class KvmVcpu;

// /dev/kvm.
class KvmSystem {
 public:
  // Opens `path` (default /dev/kvm) and checks the API version and required capabilities.
  static Result<KvmSystem> open(const std::string& path = "/dev/kvm");

  int fd() const { return fd_.get(); }
  // KVM_CHECK_EXTENSION: the capability's value, 0 when absent.
  int check_extension(int cap) const;
  Result<CpuidTable> supported_cpuid() const;
  Result<std::vector<uint32_t>> msr_index_list() const;
  Result<size_t> vcpu_mmap_size() const;
  Result<KvmVm> create_vm() const;

 private:
  UniqueFd fd_;
};

struct IoEventSpec {
  uint64_t addr;
  uint32_t len;         // 0 (any), 1, 2, 4 or 8
  bool pio;
  bool has_datamatch;
  uint64_t datamatch;
};

class KvmVm {
 public:
  KvmVm(UniqueFd fd, size_t run_size) : fd_(std::move(fd)), run_size_(run_size) {}
  int fd() const { return fd_.get(); }

  Result<void> set_user_memory_region(uint32_t slot, uint64_t guest_addr, uint64_t size,
                                      void* host, uint32_t flags = 0);
  Result<void> set_tss_addr(uint64_t addr);
  Result<void> set_identity_map_addr(uint64_t addr);
  Result<void> create_irqchip();
  Result<void> create_pit2();
  Result<void> irqfd(int event_fd, uint32_t gsi);
  Result<void> irq_line(uint32_t gsi, bool level);
  Result<void> ioeventfd(int event_fd, const IoEventSpec& spec, bool deassign = false);
  Result<KvmVcpu> create_vcpu(uint32_t id);

  // Saved and restored with a snapshot: the kvmclock, the PIT and the PICs/IOAPIC.
  Result<kvm_clock_data> get_clock() const;
  Result<void> set_clock(const kvm_clock_data& clock);
  Result<kvm_pit_state2> get_pit2() const;
  Result<void> set_pit2(const kvm_pit_state2& pit);
  Result<kvm_irqchip> get_irqchip(uint32_t chip_id) const;  // KVM_IRQCHIP_PIC_MASTER, ...
  Result<void> set_irqchip(const kvm_irqchip& chip);

 private:
  UniqueFd fd_;
  size_t run_size_;
};

class KvmVcpu {
 public:
  KvmVcpu(UniqueFd fd, kvm_run* run, size_t run_size, uint32_t id);
  KvmVcpu(KvmVcpu&&) noexcept;
  KvmVcpu& operator=(KvmVcpu&&) = delete;
  KvmVcpu(const KvmVcpu&) = delete;
  ~KvmVcpu();

  int fd() const { return fd_.get(); }
  uint32_t id() const { return id_; }
  kvm_run* run_state() const { return run_; }

  // KVM_RUN. Returns the errno on failure (EINTR/EAGAIN are normal after a kick).
  int run();

  Result<kvm_regs> get_regs() const;
  Result<void> set_regs(const kvm_regs& regs);
  Result<kvm_sregs> get_sregs() const;
  Result<void> set_sregs(const kvm_sregs& sregs);
  Result<void> set_fpu(const kvm_fpu& fpu);
  Result<void> set_cpuid(const CpuidTable& cpuid);
  // Sets each (index, value); fails if KVM did not accept all of them.
  Result<void> set_msrs(std::span<const kvm_msr_entry> msrs);
  Result<kvm_lapic_state> get_lapic() const;
  Result<void> set_lapic(const kvm_lapic_state& lapic);
  Result<kvm_mp_state> get_mp_state() const;
  Result<kvm_vcpu_events> get_vcpu_events() const;

  // Saved and restored with a snapshot.
  Result<void> set_mp_state(const kvm_mp_state& state);
  Result<void> set_vcpu_events(const kvm_vcpu_events& events);
  Result<CpuidTable> get_cpuid() const;
  // KVM_GET_MSRS: fills in each entry's data; returns how many were read (KVM stops at the
  // first MSR it cannot read).
  Result<size_t> get_msrs(std::span<kvm_msr_entry> msrs) const;
  // The XSAVE area: `size` bytes (KVM_CAP_XSAVE2's answer when larger than kvm_xsave, read
  // with KVM_GET_XSAVE2), else a kvm_xsave.
  Result<std::vector<uint8_t>> get_xsave(size_t size) const;
  Result<void> set_xsave(std::span<const uint8_t> xsave);
  Result<kvm_xcrs> get_xcrs() const;
  Result<void> set_xcrs(const kvm_xcrs& xcrs);
  Result<kvm_debugregs> get_debugregs() const;
  Result<void> set_debugregs(const kvm_debugregs& regs);
  // The guest TSC's frequency in kHz (KVM_GET_TSC_KHZ / KVM_SET_TSC_KHZ).
  Result<uint32_t> get_tsc_khz() const;
  Result<void> set_tsc_khz(uint32_t khz);
  // The offset KVM adds to the host's TSC to make this vCPU's (KVM_VCPU_TSC_OFFSET).
  Result<uint64_t> get_tsc_offset() const;
  Result<void> set_tsc_offset(uint64_t offset);
  // Tells a guest using kvmclock that it was paused (no soft lockup warnings after a long
  // pause); EINVAL (the guest does not use kvmclock) is no error.
  Result<void> kvmclock_ctrl();

 private:
  UniqueFd fd_;
  kvm_run* run_;
  size_t run_size_;
  uint32_t id_;
};

}  // namespace flick::vmm
