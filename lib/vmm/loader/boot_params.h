// Boot parameters: what the kernel is told about the machine when it starts.
//
// After a loader (kernel.h) has put the kernel in memory, write_boot_params writes the
// command line, the initrd, the memory map and either the zero page (64-bit boot protocol)
// or the PVH hvm_start_info, and returns the registers the boot vCPU must start with.
// Page tables, GDT and segment state are the vCPU's business, not this step's.
#pragma once

#include "base/guest_memory.h"
#include "vmm/loader/boot_abi.h"
#include "vmm/loader/kernel.h"

#include <flick/result.h>

#include <optional>
#include <span>
#include <string>
#include <vector>

namespace flick::vmm {

struct BootConfig {
  std::string cmdline;
  std::optional<std::span<const std::byte>> initrd;
  uint64_t rsdp = 0;  // guest address of the ACPI RSDP, 0 when there is none
};

struct BootRegisters {
  EntryMode mode = EntryMode::Long64;
  uint64_t rip = 0;
  uint64_t rsi = 0;  // Long64: the zero page
  uint64_t rbx = 0;  // Pvh32: hvm_start_info
};

Result<BootRegisters> write_boot_params(GuestMemory& mem, const LoadedKernel& kernel,
                                        const BootConfig& config);

// The memory map given to the guest: RAM regions, minus the legacy BIOS area which is one
// reserved entry. Sorted by address.
std::vector<E820Entry> guest_e820_map(const GuestMemory& mem);

// Where an initrd of `size` bytes goes: page aligned, as high as the kernel allows, in RAM
// above 1 MiB and clear of the kernel.
Result<uint64_t> place_initrd(const GuestMemory& mem, const LoadedKernel& kernel,
                              uint64_t size);

}  // namespace flick::vmm
