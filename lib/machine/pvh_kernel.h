// Booting a distribution's bzImage through its PVH entry: the bzImage carries a compressed
// vmlinux (Linux boot protocol 2.08+: payload_offset/payload_length); when that vmlinux has a
// PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), flick extracts it once into the cache and boots
// it directly, so no start spends time decompressing the kernel inside the guest.
#pragma once

#include <flick/result.h>

#include <filesystem>
#include <optional>
#include <string_view>

namespace flick::machine {

// True when `elf` is a 64-bit ELF with a XEN_ELFNOTE_PHYS32_ENTRY note.
bool has_pvh_entry(std::string_view elf);

// cache_dir/vmlinux/<hash of the bzImage>: the PVH-bootable vmlinux inside `bzimage`, made on
// first use. Nothing when `bzimage` is not a bzImage, or its vmlinux has no PVH entry.
Result<std::optional<std::filesystem::path>> pvh_vmlinux(const std::filesystem::path& bzimage,
                                                        const std::filesystem::path& cache_dir);

}  // namespace flick::machine
