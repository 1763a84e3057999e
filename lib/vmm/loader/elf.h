// ELF kernels: an uncompressed vmlinux (ELF64, x86-64) or a small PVH guest (ELF32 or ELF64).
// Segments are loaded at their physical addresses (p_paddr). The PVH entry comes from the
// "Xen" note XEN_ELFNOTE_PHYS32_ENTRY; the 64-bit entry is e_entry.
#pragma once

#include "vmm/loader/kernel.h"

#include <vector>

namespace flick::vmm {

inline constexpr uint32_t kXenElfnotePhys32Entry = 18;  // xen/include/public/elfnote.h

struct ElfSegment {
  uint64_t file_offset = 0;
  uint64_t file_size = 0;
  uint64_t paddr = 0;
  uint64_t vaddr = 0;
  uint64_t mem_size = 0;
};

// What parse_elf found; every segment's file range and address range are already checked
// against the file and for overflow, and PT_LOAD segments do not overlap.
struct ElfImage {
  bool is_64bit = false;
  uint64_t e_entry = 0;
  std::vector<ElfSegment> segments;  // PT_LOAD with p_memsz > 0, sorted by paddr
  std::optional<uint64_t> pvh_entry;
};

Result<ElfImage> parse_elf(std::span<const std::byte> file);

// The physical 64-bit entry: e_entry itself when a segment's physical range holds it, else
// e_entry translated through the segment whose virtual range holds it.
Result<uint64_t> elf_physical_entry(const ElfImage& image);

Result<LoadedKernel> load_elf(GuestMemory& mem, std::span<const std::byte> file,
                              EntryMode preferred);

}  // namespace flick::vmm
