// The guest physical address map and the port/IRQ assignments, in one place.
//
//   0x0000_0000  low RAM: GDT, PVH start_info, zero page, boot page tables, command line
//   0x0009_fc00  reserved (EBDA, BIOS area); ACPI tables at 0xe0000
//   0x0010_0000  RAM: kernel, initrd, the rest of the guest's memory up to the hole
//   0xc000_0000  32-bit MMIO hole: boot timer, virtio-mmio windows, IOAPIC, LAPIC, TSS
//   0x1_0000_0000  RAM above 4 GiB for guests larger than the space below the hole
#pragma once

#include <cstdint>

namespace flick::vmm::layout {

inline constexpr uint64_t kGdt = 0x500;
inline constexpr uint64_t kIdt = 0x520;
inline constexpr uint64_t kPvhStartInfo = 0x6000;  // hvm_start_info + memmap follows
inline constexpr uint64_t kZeroPage = 0x7000;      // struct boot_params
inline constexpr uint64_t kBootStack = 0x8ff0;
inline constexpr uint64_t kPml4 = 0x9000;          // identity map of the first 4 GiB:
inline constexpr uint64_t kPdpt = 0xa000;          //   PML4 -> PDPT -> 4 PDs of 2 MiB pages
inline constexpr uint64_t kPd = 0xb000;            //   0xb000..0xefff
inline constexpr uint64_t kCmdline = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;
inline constexpr uint64_t kApTrampoline = 0x30000;  // free for guests to use for SIPI vectors
inline constexpr uint64_t kEbdaStart = 0x9fc00;
inline constexpr uint64_t kAcpiStart = 0xe0000;
inline constexpr uint64_t kAcpiSize = 0x1f000;       // up to 0xff000: the reset vector page follows
inline constexpr uint64_t kHighMem = 0x100000;      // 1 MiB: first address the kernel may use
inline constexpr uint64_t kDefaultKernelLoad = 0x1000000;  // 16 MiB

inline constexpr uint64_t kMmioHoleStart = 0xc0000000;
inline constexpr uint64_t kMmioHoleEnd = 0x100000000;
inline constexpr uint64_t kBootTimerMmio = 0xc0000000;  // 4 KiB; write 123 at offset 0
inline constexpr uint64_t kVirtioMmioBase = 0xc0001000;
inline constexpr uint64_t kVirtioMmioStride = 0x1000;
inline constexpr uint64_t kVirtioMmioMaxDevices = 64;
inline constexpr uint64_t kIoapic = 0xfec00000;
inline constexpr uint64_t kLapic = 0xfee00000;
inline constexpr uint64_t kIdentityMapPage = 0xfeffc000;  // KVM_SET_IDENTITY_MAP_ADDR (1 page)
inline constexpr uint64_t kTss = 0xfeffd000;               // KVM_SET_TSS_ADDR (3 pages)

// Port I/O.
inline constexpr uint16_t kPioI8042Data = 0x60;
inline constexpr uint16_t kPioI8042Command = 0x64;  // 0xfe written here resets the machine
inline constexpr uint16_t kPioCom1 = 0x3f8;
inline constexpr uint16_t kPioCom2 = 0x2f8;
inline constexpr uint16_t kPioAcpiSleepControl = 0x600;  // FADT SLEEP_CONTROL_REG
inline constexpr uint16_t kPioAcpiSleepStatus = 0x601;   // FADT SLEEP_STATUS_REG
inline constexpr uint16_t kPioAcpiReset = 0x602;         // FADT RESET_REG
inline constexpr uint8_t kAcpiResetValue = 0x01;
inline constexpr uint8_t kAcpiS5SleepType = 5;           // the DSDT's \_S5 package value
inline constexpr uint16_t kPioBootTimer = 0x604;         // write 123 (byte) to record the time

inline constexpr uint8_t kBootTimerMagic = 123;

// IOAPIC pins (GSIs).
inline constexpr uint32_t kIrqCom1 = 4;
inline constexpr uint32_t kIrqCom2 = 3;
inline constexpr uint32_t kIrqFirstDevice = 5;
inline constexpr uint32_t kIrqLastDevice = 23;
inline constexpr uint32_t kIoapicPins = 24;

}  // namespace flick::vmm::layout

#include "base/guest_memory.h"

#include <vector>

namespace flick::vmm::layout {

// Guest RAM ranges for `mem_size` bytes: below the MMIO hole, and the rest above 4 GiB.
inline std::vector<GuestMemory::Range> ram_ranges(uint64_t mem_size) {
  std::vector<GuestMemory::Range> r;
  uint64_t low = mem_size < kMmioHoleStart ? mem_size : kMmioHoleStart;
  r.push_back({0, low});
  if (mem_size > low) r.push_back({kMmioHoleEnd, mem_size - low});
  return r;
}

}  // namespace flick::vmm::layout

namespace flick::vmm::layout {
inline constexpr uint16_t kPioPvPanic = 0x505;  // QEMU's pvpanic port, found via the DSDT
inline constexpr uint16_t kPioPostCode = 0x80;   // Linux's io_delay writes here
inline constexpr uint64_t kBiosResetVector = 0xffff0;  // F000:FFF0, where a real-mode restart jumps
}  // namespace flick::vmm::layout
