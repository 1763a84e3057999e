#include "vmm/loader/boot_params.h"

#include "vmm/layout.h"
#include "base/hex.h"

#include <algorithm>
#include <cstring>

namespace flick::vmm {

namespace {

constexpr uint64_t kPage = 4096;
// What Linux's own header.S declares for initrd_addr_max; used when the kernel did not say.
constexpr uint64_t kDefaultInitrdEnd = 0x80000000;
constexpr uint16_t kSynthesizedProtocol = 0x020f;
constexpr uint32_t kSynthesizedAlignment = 0x200000;

uint32_t low32(uint64_t v) { return static_cast<uint32_t>(v); }
uint32_t high32(uint64_t v) { return static_cast<uint32_t>(v >> 32); }

// The header a bzImage of an ELF kernel would carry, for the 64-bit entry of a vmlinux:
// Linux checks the magic and protocol version before trusting the other fields.
SetupHeader synthesized_header() {
  SetupHeader h;
  std::memset(&h, 0, sizeof h);
  h.boot_flag = kBootFlag;
  h.header = kHdrsMagic;
  h.version = kSynthesizedProtocol;
  h.loadflags = kLoadedHigh;
  h.kernel_alignment = kSynthesizedAlignment;  // non-zero, as in any real header
  h.cmdline_size = layout::kCmdlineMax - 1;
  return h;
}

// The highest address the initrd may end at, from what the kernel declares. Above 4 GiB
// would be allowed with XLF_CAN_BE_LOADED_ABOVE_4G, but keeping it in low RAM keeps one rule.
uint64_t initrd_ceiling(const LoadedKernel& k) {
  if (k.mode == EntryMode::Pvh32) return layout::kMmioHoleStart;
  if (!k.setup) return kDefaultInitrdEnd;
  if (k.setup->xloadflags & kXlfCanBeLoadedAbove4G) return layout::kMmioHoleStart;
  return std::min(uint64_t{k.setup->initrd_addr_max} + 1, layout::kMmioHoleStart);
}

Result<void> write_cmdline(GuestMemory& mem, const LoadedKernel& k, const std::string& cmdline) {
  if (cmdline.find('\0') != std::string::npos)
    return make_error(Errc::invalid_argument, "kernel command line contains a NUL byte");
  if (cmdline.size() + 1 > layout::kCmdlineMax)
    return make_error(Errc::limit, "kernel command line is " + std::to_string(cmdline.size()) +
                                       " bytes; flick has room for " +
                                       std::to_string(layout::kCmdlineMax - 1));
  // boot.rst: cmdline_size is the longest command line the kernel takes, without the NUL.
  if (k.setup && cmdline.size() > k.setup->cmdline_size)
    return make_error(Errc::limit, "kernel command line is " + std::to_string(cmdline.size()) +
                                       " bytes; this kernel accepts at most " +
                                       std::to_string(k.setup->cmdline_size));
  FLICK_TRY(mem.write(GuestAddress{layout::kCmdline},
                      std::as_bytes(std::span(cmdline.data(), cmdline.size() + 1))));
  return {};
}

Result<BootRegisters> write_zero_page(GuestMemory& mem, const LoadedKernel& k,
                                      const BootConfig& cfg, uint64_t initrd_addr,
                                      uint64_t initrd_size) {
  BootParams bp;
  std::memset(&bp, 0, sizeof bp);
  bp.hdr = k.setup ? *k.setup : synthesized_header();
  bp.hdr.type_of_loader = kLoaderTypeUndefined;
  bp.hdr.setup_data = 0;  // a list only the loader may build; flick builds none
  bp.hdr.cmd_line_ptr = low32(layout::kCmdline);
  bp.ext_cmd_line_ptr = high32(layout::kCmdline);
  bp.hdr.ramdisk_image = low32(initrd_addr);
  bp.ext_ramdisk_image = high32(initrd_addr);
  bp.hdr.ramdisk_size = low32(initrd_size);
  bp.ext_ramdisk_size = high32(initrd_size);
  bp.acpi_rsdp_addr = cfg.rsdp;
  auto e820 = guest_e820_map(mem);
  if (e820.size() > std::size(bp.e820_table))
    return make_error(Errc::limit, "guest memory map has " + std::to_string(e820.size()) +
                                       " entries; the zero page holds 128");
  std::copy(e820.begin(), e820.end(), bp.e820_table);
  bp.e820_entries = static_cast<uint8_t>(e820.size());
  FLICK_TRY(mem.write_obj(GuestAddress{layout::kZeroPage}, bp));
  return BootRegisters{EntryMode::Long64, k.entry.value, layout::kZeroPage, 0};
}

// hvm_start_info, then the memory map, then the module list, all in the page below the zero
// page.
Result<BootRegisters> write_start_info(GuestMemory& mem, const LoadedKernel& k,
                                       const BootConfig& cfg, uint64_t initrd_addr,
                                       uint64_t initrd_size) {
  auto e820 = guest_e820_map(mem);
  uint64_t memmap_at = layout::kPvhStartInfo + sizeof(HvmStartInfo);
  uint64_t modlist_at = memmap_at + e820.size() * sizeof(HvmMemmapEntry);
  uint64_t end = modlist_at + sizeof(HvmModlistEntry);
  if (end > layout::kZeroPage)
    return make_error(Errc::limit, "PVH start info with " + std::to_string(e820.size()) +
                                       " memory map entries does not fit below " +
                                       hex(layout::kZeroPage));
  HvmStartInfo si{};
  si.magic = kHvmStartMagic;
  si.version = 1;
  si.cmdline_paddr = layout::kCmdline;
  si.rsdp_paddr = cfg.rsdp;
  si.memmap_paddr = memmap_at;
  si.memmap_entries = static_cast<uint32_t>(e820.size());
  for (size_t i = 0; i < e820.size(); ++i) {
    HvmMemmapEntry m{e820[i].addr, e820[i].size, e820[i].type, 0};
    FLICK_TRY(mem.write_obj(GuestAddress{memmap_at + i * sizeof m}, m));
  }
  if (initrd_size) {
    si.nr_modules = 1;
    si.modlist_paddr = modlist_at;
    FLICK_TRY(mem.write_obj(GuestAddress{modlist_at},
                            HvmModlistEntry{initrd_addr, initrd_size, 0, 0}));
  }
  FLICK_TRY(mem.write_obj(GuestAddress{layout::kPvhStartInfo}, si));
  return BootRegisters{EntryMode::Pvh32, k.entry.value, 0, layout::kPvhStartInfo};
}

}  // namespace

std::vector<E820Entry> guest_e820_map(const GuestMemory& mem) {
  // The 32-bit MMIO hole gets no entry: it is not RAM, and leaving it a gap is how Linux finds
  // room for device windows (e820__setup_pci_gap picks the largest gap below 4 GiB); the
  // devices in it are described by ACPI. Firecracker and Cloud Hypervisor likewise reserve
  // only a PCI MMCONFIG window there, which flick does not have.
  std::vector<E820Entry> map;
  for (const auto& r : mem.regions()) {
    uint64_t start = r.start.value, end = r.start.value + r.size;
    if (start < layout::kEbdaStart)
      map.push_back({start, std::min(end, layout::kEbdaStart) - start, kE820Ram});
    if (end > layout::kHighMem) {
      uint64_t s = std::max(start, layout::kHighMem);
      map.push_back({s, end - s, kE820Ram});
    }
  }
  map.push_back({layout::kEbdaStart, layout::kHighMem - layout::kEbdaStart, kE820Reserved});
  std::sort(map.begin(), map.end(),
            [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
  return map;
}

Result<uint64_t> place_initrd(const GuestMemory& mem, const LoadedKernel& k, uint64_t size) {
  uint64_t ceiling = initrd_ceiling(k);
  uint64_t top = mem.end_below(ceiling);
  auto too_big = [&] {
    return make_error(Errc::no_memory,
                      "initrd of " + mib(size) + " does not fit in guest RAM between 1 MiB and " +
                          hex(top) + " next to the kernel at " + hex(k.kernel_start.value) +
                          ".." + hex(k.kernel_end.value) + ": give the machine more memory");
  };
  if (size > top) return too_big();
  uint64_t addr = (top - size) & ~(kPage - 1);
  if (addr < k.kernel_end.value && addr + size > k.kernel_start.value) {
    if (size > k.kernel_start.value) return too_big();
    addr = (k.kernel_start.value - size) & ~(kPage - 1);
  }
  if (addr < layout::kHighMem || !mem.contains(GuestAddress{addr}, size)) return too_big();
  return addr;
}

Result<BootRegisters> write_boot_params(GuestMemory& mem, const LoadedKernel& kernel,
                                        const BootConfig& config) {
  FLICK_TRY(write_cmdline(mem, kernel, config.cmdline));
  uint64_t initrd_addr = 0, initrd_size = 0;
  if (config.initrd && !config.initrd->empty()) {
    initrd_size = config.initrd->size();
    FLICK_TRY_ASSIGN(initrd_addr, place_initrd(mem, kernel, initrd_size));
    FLICK_TRY(mem.write(GuestAddress{initrd_addr}, *config.initrd));
  }
  if (kernel.mode == EntryMode::Pvh32)
    return write_start_info(mem, kernel, config, initrd_addr, initrd_size);
  return write_zero_page(mem, kernel, config, initrd_addr, initrd_size);
}

}  // namespace flick::vmm
