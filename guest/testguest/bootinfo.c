// Decodes the two boot structures into one boot_info: PVH's hvm_start_info
// (xen/include/public/arch-x86/hvm/start_info.h) and Linux's boot_params
// (Documentation/x86/zero-page.rst, arch/x86/include/uapi/asm/bootparam.h).
#include "testguest.h"

#define HVM_START_MAGIC 0x336ec578u
#define CMDLINE_LIMIT 65536

struct hvm_start_info {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;  // version >= 1
  uint32_t memmap_entries;
  uint32_t reserved;
};

struct hvm_memmap_table_entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};

struct boot_e820_entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
} __attribute__((packed));

// boot_params offsets (zero-page.rst).
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_BOOT_FLAG 0x1fe
#define BP_HEADER 0x202
#define BP_CMD_LINE_PTR 0x228
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128

static const char *cmdline_at(uint64_t addr) {
  if (addr == 0) return "";
  const char *s = (const char *)(uintptr_t)addr;
  for (size_t i = 0; i < CMDLINE_LIMIT; ++i)
    if (s[i] == '\0') return s;
  fail("cmdline: no terminator within %u bytes at 0x%lx", CMDLINE_LIMIT, addr);
  return "";
}

static bool read_pvh(const struct hvm_start_info *si, struct boot_info *out) {
  if (si->magic != HVM_START_MAGIC) {
    fail("bootinfo: hvm_start_info at 0x%lx has magic 0x%x", (uint64_t)(uintptr_t)si, si->magic);
    return false;
  }
  if (si->version < 1) {
    fail("bootinfo: hvm_start_info version %u has no memory map", si->version);
    return false;
  }
  out->cmdline = cmdline_at(si->cmdline_paddr);
  out->rsdp = si->rsdp_paddr;
  const struct hvm_memmap_table_entry *map =
      (const struct hvm_memmap_table_entry *)(uintptr_t)si->memmap_paddr;
  uint32_t n = si->memmap_entries;
  if (n > MAX_MEM_RANGES) {
    fail("bootinfo: %u memmap entries (max %u)", n, MAX_MEM_RANGES);
    n = MAX_MEM_RANGES;
  }
  for (uint32_t i = 0; i < n; ++i)
    out->ranges[i] = (struct mem_range){map[i].addr, map[i].size, map[i].type};
  out->nranges = n;
  pass("bootinfo pvh v%u", si->version);
  return true;
}

static bool read_boot_params(const uint8_t *bp, struct boot_info *out) {
  uint16_t boot_flag;
  uint32_t header;
  memcpy(&boot_flag, bp + BP_BOOT_FLAG, 2);
  memcpy(&header, bp + BP_HEADER, 4);
  if (boot_flag != 0xaa55 || header != 0x53726448 /* "HdrS" */) {
    fail("bootinfo: boot_params at 0x%lx: boot_flag 0x%x header 0x%x",
         (uint64_t)(uintptr_t)bp, boot_flag, header);
    return false;
  }
  uint32_t cmd_lo, cmd_hi;
  memcpy(&cmd_lo, bp + BP_CMD_LINE_PTR, 4);
  memcpy(&cmd_hi, bp + BP_EXT_CMD_LINE_PTR, 4);
  out->cmdline = cmdline_at((uint64_t)cmd_hi << 32 | cmd_lo);
  memcpy(&out->rsdp, bp + BP_ACPI_RSDP_ADDR, 8);
  uint32_t n = bp[BP_E820_ENTRIES];
  if (n > BP_E820_MAX) {
    fail("bootinfo: e820_entries %u > %u", n, BP_E820_MAX);
    n = BP_E820_MAX;
  }
  const struct boot_e820_entry *e = (const struct boot_e820_entry *)(bp + BP_E820_TABLE);
  for (uint32_t i = 0; i < n; ++i) out->ranges[i] = (struct mem_range){e[i].addr, e[i].size, e[i].type};
  out->nranges = n;
  uint16_t version;
  memcpy(&version, bp + 0x206, 2);
  pass("bootinfo zeropage 0x%lx protocol %x", (uint64_t)(uintptr_t)bp, version);
  return true;
}

bool bootinfo_read(uint32_t entry, uint64_t info, struct boot_info *out) {
  out->cmdline = "";
  out->rsdp = 0;
  out->nranges = 0;
  switch (entry) {
    case BOOT_PVH:
      out->entry_name = "pvh";
      return read_pvh((const struct hvm_start_info *)(uintptr_t)info, out);
    case BOOT_BZIMAGE32:
    case BOOT_BZIMAGE64:
      out->entry_name = entry == BOOT_BZIMAGE64 ? "bzimage64" : "bzimage32";
      return read_boot_params((const uint8_t *)(uintptr_t)info, out);
    default:
      out->entry_name = "unknown";
      fail("bootinfo: unknown entry %u", entry);
      return false;
  }
}
