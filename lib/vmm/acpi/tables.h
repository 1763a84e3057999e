// The ACPI tables of a flick microVM, built in memory and written into guest RAM.
//
// A hardware-reduced ACPI platform (ACPI 6.5 section 4.1): no PM1/GPE blocks, no SCI, no
// FACS. What the guest kernel learns from them:
//   RSDP -> XSDT -> FADT (HW_REDUCED_ACPI, sleep control/status and reset registers in
//                         port I/O, no VGA, no CMOS RTC, no i8042 keyboard) -> DSDT
//                -> MADT (one Local APIC per vCPU, the IOAPIC, IRQ0 -> GSI 2, LINT1 = NMI)
//   DSDT: \_S5_ (power off through the sleep control register), COM1, one device per
//         virtio-mmio window (_HID "LNRO0005", _CRS = the window and its GSI).
// Linux needs these: Debian's cloud kernel finds its CPUs only in the MADT and its
// virtio-mmio devices only in the DSDT.
#pragma once

#include "base/guest_memory.h"
#include "vmm/acpi/aml.h"
#include "vmm/layout.h"

#include <flick/result.h>

#include <cstdint>
#include <string>
#include <vector>

namespace flick::vmm::acpi {

// A memory-mapped device described in the DSDT under \_SB_, named VR00, VR01, ...
struct MmioDevice {
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t gsi = 0;                 // IOAPIC pin, < layout::kIoapicPins
  std::string hid = "LNRO0005";     // virtio-mmio; a 7-character EISA id is encoded as one
  bool level_triggered = false;     // edge suits irqfd-injected interrupts
};

struct AcpiConfig {
  uint32_t cpus = 1;                     // 1..254; APIC IDs are 0..cpus-1
  std::vector<MmioDevice> mmio_devices;  // _UID = index in this list
  bool com1 = true;                      // 16550 at 0x3f8, IRQ 4
  bool com2 = false;                     // 16550 at 0x2f8, IRQ 3
  // More devices to declare in Scope(\_SB_), e.g. Aml::device("PCI0", {...}).
  std::vector<Aml> extra_devices;
};

struct AcpiTable {
  std::string signature;  // "RSD PTR ", "XSDT", "FACP", "APIC", "DSDT"
  uint64_t address = 0;
  uint32_t size = 0;
};

// All tables laid out for guest physical address `base`: bytes[i] goes to base + i.
struct AcpiImage {
  uint64_t base = 0;
  std::vector<uint8_t> bytes;
  uint64_t rsdp_address = 0;  // for boot_params.acpi_rsdp_addr / hvm_start_info.rsdp_paddr
  std::vector<AcpiTable> tables;
};

// Builds the tables for placement at [base, base + limit). The RSDP comes first, at `base`
// rounded up to 16 bytes: with the default base it lies in 0xe0000..0xfffff, where Linux
// also finds it by scanning when the boot protocol does not pass its address.
Result<AcpiImage> build_tables(const AcpiConfig& config, uint64_t base = layout::kAcpiStart,
                               uint64_t limit = layout::kAcpiSize);

// Builds the tables for layout::kAcpiStart and writes them into guest memory (which must
// hold that range). Returns the RSDP's guest address.
Result<GuestAddress> write_tables(GuestMemory& memory, const AcpiConfig& config);

// Sum of `bytes` modulo 256: zero for a table with a correct checksum.
uint8_t byte_sum(const uint8_t* bytes, size_t size);

}  // namespace flick::vmm::acpi
