// Loading a Linux kernel image into guest memory: a bzImage or an ELF vmlinux.
//
// Loading is one step and writing the boot parameters (boot_params.h) is another: a loader
// only puts the image in memory and says where it is and how to enter it.
#pragma once

#include "base/guest_memory.h"
#include "vmm/loader/boot_abi.h"

#include <flick/result.h>

#include <cstddef>
#include <optional>
#include <span>

namespace flick::vmm {

// How the boot vCPU must be set up.
enum class EntryMode {
  Long64,  // 64-bit mode, identity-mapped paging, %rsi = zero page (boot.rst "64-bit BOOT PROTOCOL")
  Pvh32,   // 32-bit protected mode, paging off, %ebx = hvm_start_info (Xen PVH boot ABI)
};

struct LoadedKernel {
  EntryMode mode = EntryMode::Long64;
  GuestAddress entry;
  GuestAddress kernel_start;
  GuestAddress kernel_end;  // first byte past everything the kernel will use while it starts
  std::optional<SetupHeader> setup;  // the bzImage's header, to be copied into the zero page
};

struct KernelLoadOptions {
  // For an ELF kernel with both entries: which to use. The other is the fallback.
  EntryMode elf_preferred = EntryMode::Pvh32;
};

// Detects the format by its magic (ELF, or a bzImage's "HdrS") and loads it.
Result<LoadedKernel> load_kernel(GuestMemory& mem, std::span<const std::byte> file,
                                 const KernelLoadOptions& options = {});

}  // namespace flick::vmm
