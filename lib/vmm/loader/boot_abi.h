// Byte layouts the guest kernel reads: the x86 setup header and zero page
// (Documentation/x86/boot.rst, Documentation/x86/zero-page.rst,
// arch/x86/include/uapi/asm/bootparam.h) and the PVH start_info
// (xen/include/public/arch-x86/hvm/start_info.h). Offsets are checked at compile time so the
// structs can be copied into guest memory as they are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace flick::vmm {

// The setup header as it sits at offset 0x1f1 of a bzImage and of struct boot_params.
struct __attribute__((packed)) SetupHeader {
  uint8_t setup_sects;
  uint16_t root_flags;
  uint32_t syssize;  // protected-mode code size in 16-byte units (2.04+)
  uint16_t ram_size;
  uint16_t vid_mode;
  uint16_t root_dev;
  uint16_t boot_flag;  // 0xaa55
  uint16_t jump;       // the second byte + 0x202 is where the header ends
  uint32_t header;     // "HdrS"
  uint16_t version;
  uint32_t realmode_swtch;
  uint16_t start_sys_seg;
  uint16_t kernel_version;
  uint8_t type_of_loader;
  uint8_t loadflags;
  uint16_t setup_move_size;
  uint32_t code32_start;
  uint32_t ramdisk_image;
  uint32_t ramdisk_size;
  uint32_t bootsect_kludge;
  uint16_t heap_end_ptr;
  uint8_t ext_loader_ver;
  uint8_t ext_loader_type;
  uint32_t cmd_line_ptr;
  uint32_t initrd_addr_max;     // 2.03+
  uint32_t kernel_alignment;    // 2.05+
  uint8_t relocatable_kernel;   // 2.05+
  uint8_t min_alignment;        // 2.10+
  uint16_t xloadflags;          // 2.12+
  uint32_t cmdline_size;        // 2.06+, without the terminating NUL
  uint32_t hardware_subarch;
  uint64_t hardware_subarch_data;
  uint32_t payload_offset;      // 2.08+
  uint32_t payload_length;
  uint64_t setup_data;
  uint64_t pref_address;        // 2.10+
  uint32_t init_size;           // 2.10+
  uint32_t handover_offset;     // 2.11+
  uint32_t kernel_info_offset;  // 2.15+
};
static_assert(sizeof(SetupHeader) == 0x26c - 0x1f1);
static_assert(offsetof(SetupHeader, boot_flag) == 0x1fe - 0x1f1);
static_assert(offsetof(SetupHeader, version) == 0x206 - 0x1f1);
static_assert(offsetof(SetupHeader, type_of_loader) == 0x210 - 0x1f1);
static_assert(offsetof(SetupHeader, cmd_line_ptr) == 0x228 - 0x1f1);
static_assert(offsetof(SetupHeader, xloadflags) == 0x236 - 0x1f1);
static_assert(offsetof(SetupHeader, pref_address) == 0x258 - 0x1f1);
static_assert(offsetof(SetupHeader, kernel_info_offset) == 0x268 - 0x1f1);
static_assert(std::is_trivially_copyable_v<SetupHeader>);

inline constexpr uint64_t kSetupHeaderOffset = 0x1f1;
inline constexpr uint16_t kBootFlag = 0xaa55;
inline constexpr uint32_t kHdrsMagic = 0x53726448;  // "HdrS" little-endian
inline constexpr uint8_t kLoaderTypeUndefined = 0xff;
inline constexpr uint8_t kLoadedHigh = 0x01;            // loadflags: protected-mode code at 1 MiB+
inline constexpr uint16_t kXlfKernel64 = 0x01;          // xloadflags: has the 64-bit entry
inline constexpr uint16_t kXlfCanBeLoadedAbove4G = 0x02;
inline constexpr uint64_t kEntry64Offset = 0x200;       // 64-bit entry = load address + 0x200

enum E820Type : uint32_t { kE820Ram = 1, kE820Reserved = 2 };

struct __attribute__((packed)) E820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};
static_assert(sizeof(E820Entry) == 20);

// struct boot_params, "the zero page". Only the fields flick writes are named.
struct __attribute__((packed)) BootParams {
  uint8_t pad0[0x070];
  uint64_t acpi_rsdp_addr;      // 0x070
  uint8_t pad1[0x0c0 - 0x078];
  uint32_t ext_ramdisk_image;   // 0x0c0: high 32 bits of the initrd address
  uint32_t ext_ramdisk_size;    // 0x0c4
  uint32_t ext_cmd_line_ptr;    // 0x0c8
  uint8_t pad2[0x1e8 - 0x0cc];
  uint8_t e820_entries;         // 0x1e8
  uint8_t pad3[0x1f1 - 0x1e9];  // includes the sentinel at 0x1ef, which must stay 0
  SetupHeader hdr;              // 0x1f1
  uint8_t pad4[0x2d0 - 0x26c];
  E820Entry e820_table[128];    // 0x2d0
  uint8_t pad5[0x1000 - 0xcd0];
};
static_assert(sizeof(BootParams) == 0x1000);
static_assert(offsetof(BootParams, acpi_rsdp_addr) == 0x070);
static_assert(offsetof(BootParams, ext_ramdisk_image) == 0x0c0);
static_assert(offsetof(BootParams, ext_cmd_line_ptr) == 0x0c8);
static_assert(offsetof(BootParams, e820_entries) == 0x1e8);
static_assert(offsetof(BootParams, hdr) == 0x1f1);
static_assert(offsetof(BootParams, e820_table) == 0x2d0);
static_assert(std::is_trivially_copyable_v<BootParams>);

// PVH boot: the vCPU starts in 32-bit protected mode with %ebx pointing at this.
inline constexpr uint32_t kHvmStartMagic = 0x336ec578;

struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;  // 1: has the memory map fields
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;
  uint32_t memmap_entries;
  uint32_t reserved;
};
static_assert(sizeof(HvmStartInfo) == 56);

struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
static_assert(sizeof(HvmModlistEntry) == 32);

struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;  // E820 types
  uint32_t reserved;
};
static_assert(sizeof(HvmMemmapEntry) == 24);

}  // namespace flick::vmm
