#include "vmm/acpi/tables.h"

#include <algorithm>
#include <cstring>
#include <span>

namespace flick::vmm::acpi {
namespace {

constexpr char kOemId[] = "FLICK ";        // 6 bytes
constexpr char kOemTableId[] = "FLICKVM ";  // 8 bytes
constexpr uint32_t kOemRevision = 1;
constexpr char kCreatorId[] = "FLCK";
constexpr uint32_t kCreatorRevision = 1;
constexpr char kHypervisorVendor[] = "FLICK   ";  // FADT Hypervisor Vendor Identity, 8 bytes

constexpr size_t kHeaderSize = 36;  // System Description Table Header (5.2.6)
constexpr size_t kRsdpSize = 36;    // ACPI 2.0+ RSDP (5.2.5.3)
constexpr size_t kFadtSize = 276;   // FADT revision 6 (5.2.9)
constexpr uint32_t kMaxCpus = 254;  // xAPIC IDs 0..254; 255 is the broadcast ID

// FADT Flags (5.2.9, table 5.10) and IA-PC boot architecture flags (5.2.9.3).
constexpr uint32_t kFadtPwrButton = 1u << 4;   // no fixed power button
constexpr uint32_t kFadtSlpButton = 1u << 5;   // no fixed sleep button
constexpr uint32_t kFadtResetRegSup = 1u << 10;
constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;
constexpr uint16_t kBootArchVgaNotPresent = 1u << 2;
constexpr uint16_t kBootArchCmosRtcNotPresent = 1u << 5;
// LEGACY_DEVICES and 8042 stay clear: there is no ISA keyboard controller to probe, only
// the reset line behind port 0x64.

// Generic Address Structure (5.2.3.2) address space IDs and access sizes.
constexpr uint8_t kGasSystemIo = 1;
constexpr uint8_t kGasByteAccess = 1;

// MADT (5.2.12) flags and interrupt controller structure types.
constexpr uint32_t kMadtPcatCompat = 1;
constexpr uint8_t kMadtLocalApic = 0;
constexpr uint8_t kMadtIoApic = 1;
constexpr uint8_t kMadtInterruptSourceOverride = 2;
constexpr uint8_t kMadtLocalApicNmi = 4;
constexpr uint16_t kMpsIntiEdgeActiveHigh = 0x0005;  // polarity 01, trigger mode 01
constexpr uint8_t kIoapicId = 0;  // what KVM's in-kernel IOAPIC reports in its ID register

// A growing little-endian byte buffer with writes at fixed offsets.
class Bytes {
 public:
  explicit Bytes(size_t size = 0) : b_(size, 0) {}
  void put(size_t off, uint64_t v, int n) {
    if (b_.size() < off + n) b_.resize(off + n, 0);
    for (int i = 0; i < n; ++i) b_[off + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  void put_text(size_t off, const char* s, size_t n) {
    if (b_.size() < off + n) b_.resize(off + n, 0);
    std::memcpy(b_.data() + off, s, n);
  }
  void append(uint64_t v, int n) { put(b_.size(), v, n); }
  void append(const std::vector<uint8_t>& v) { b_.insert(b_.end(), v.begin(), v.end()); }
  // Sets the byte at `off` so that the bytes in [from, to) sum to zero.
  void checksum(size_t off, size_t from, size_t to) {
    b_[off] = 0;
    b_[off] = static_cast<uint8_t>(-byte_sum(b_.data() + from, to - from));
  }
  size_t size() const { return b_.size(); }
  std::vector<uint8_t> take() { return std::move(b_); }

 private:
  std::vector<uint8_t> b_;
};

// A System Description Table: the 36-byte header, then the body appended by the caller;
// finish() fills Length and Checksum.
Bytes table_header(const char* signature, uint8_t revision) {
  Bytes t(kHeaderSize);
  t.put_text(0, signature, 4);
  t.put(8, revision, 1);
  t.put_text(10, kOemId, 6);
  t.put_text(16, kOemTableId, 8);
  t.put(24, kOemRevision, 4);
  t.put_text(28, kCreatorId, 4);
  t.put(32, kCreatorRevision, 4);
  return t;
}

std::vector<uint8_t> finish(Bytes t) {
  t.put(4, t.size(), 4);
  t.checksum(9, 0, t.size());
  return t.take();
}

// Generic Address Structure for an 8-bit port.
void put_io_gas(Bytes& t, size_t off, uint16_t port) {
  t.put(off + 0, kGasSystemIo, 1);
  t.put(off + 1, 8, 1);  // register bit width
  t.put(off + 2, 0, 1);  // bit offset
  t.put(off + 3, kGasByteAccess, 1);
  t.put(off + 4, port, 8);
}

std::vector<uint8_t> build_fadt(uint64_t dsdt_address) {
  Bytes t = table_header("FACP", 6);
  t.put(kFadtSize - 1, 0, 1);  // the whole table, zero where not set below
  // FIRMWARE_CTRL/X_FIRMWARE_CTRL stay 0: a hardware-reduced platform has no FACS.
  t.put(45, 0, 1);  // Preferred_PM_Profile: unspecified
  // SCI_INT, SMI_CMD, PM1/PM2/PM_TMR/GPE blocks: all 0, none exist in hardware-reduced mode.
  t.put(109, kBootArchVgaNotPresent | kBootArchCmosRtcNotPresent, 2);  // IAPC_BOOT_ARCH
  t.put(112, kFadtHwReducedAcpi | kFadtResetRegSup | kFadtPwrButton | kFadtSlpButton, 4);
  put_io_gas(t, 116, layout::kPioAcpiReset);  // RESET_REG
  t.put(128, layout::kAcpiResetValue, 1);     // RESET_VALUE
  t.put(131, 5, 1);                           // FADT minor version: ACPI 6.5
  t.put(140, dsdt_address, 8);                // X_DSDT (the 32-bit DSDT field stays 0)
  put_io_gas(t, 244, layout::kPioAcpiSleepControl);  // SLEEP_CONTROL_REG
  put_io_gas(t, 256, layout::kPioAcpiSleepStatus);   // SLEEP_STATUS_REG
  t.put_text(268, kHypervisorVendor, 8);
  return finish(std::move(t));
}

std::vector<uint8_t> build_madt(uint32_t cpus) {
  Bytes t = table_header("APIC", 5);
  t.append(layout::kLapic, 4);
  t.append(kMadtPcatCompat, 4);
  for (uint32_t i = 0; i < cpus; ++i) {  // Processor Local APIC (5.2.12.2)
    t.append(kMadtLocalApic, 1);
    t.append(8, 1);
    t.append(i, 1);  // ACPI processor UID
    t.append(i, 1);  // APIC ID
    t.append(1, 4);  // Enabled
  }
  t.append(kMadtIoApic, 1);  // I/O APIC (5.2.12.3)
  t.append(12, 1);
  t.append(kIoapicId, 1);
  t.append(0, 1);
  t.append(layout::kIoapic, 4);
  t.append(0, 4);  // GSI base
  // ISA IRQ 0 (the PIT) arrives on GSI 2, as on a PC and in KVM's default routing
  // (5.2.12.5). With SCI_INT = 0, Linux also reads this entry as the SCI's override, so its
  // flags are explicit rather than "conforms to bus".
  t.append(kMadtInterruptSourceOverride, 1);
  t.append(10, 1);
  t.append(0, 1);  // bus: ISA
  t.append(0, 1);  // source IRQ
  t.append(2, 4);  // GSI
  t.append(kMpsIntiEdgeActiveHigh, 2);
  t.append(kMadtLocalApicNmi, 1);  // Local APIC NMI (5.2.12.7): every CPU's LINT1
  t.append(6, 1);
  t.append(0xff, 1);  // all processors
  t.append(0, 2);     // conforms to the bus
  t.append(1, 1);     // LINT1
  return finish(std::move(t));
}

bool looks_like_eisa_id(const std::string& id) {
  return id.size() == 7 && std::all_of(id.begin(), id.begin() + 3, [](char c) {
           return c >= 'A' && c <= 'Z';
         });
}

Aml mmio_device_aml(size_t index, const MmioDevice& d) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string name = {'V', 'R', kHex[(index >> 4) & 0xf], kHex[index & 0xf]};
  Resource window = d.base + d.size <= (uint64_t{1} << 32)
                        ? Resource::memory32_fixed(static_cast<uint32_t>(d.base),
                                                   static_cast<uint32_t>(d.size))
                        : Resource::qword_memory(d.base, d.size);
  auto trigger = d.level_triggered ? Resource::Trigger::level : Resource::Trigger::edge;
  return Aml::device(name, {
      Aml::name("_HID", looks_like_eisa_id(d.hid) ? Aml::eisa_id(d.hid) : Aml::string(d.hid)),
      Aml::name("_UID", Aml::integer(index)),
      // DMA is cache coherent (6.2.17); x86 Linux assumes so anyway, ARM guests need it.
      Aml::name("_CCA", Aml::integer(1)),
      Aml::name("_CRS", Aml::resource_template({
          window,
          Resource::interrupt(d.gsi, trigger, Resource::Polarity::active_high),
      })),
  });
}

Result<std::vector<uint8_t>> build_dsdt(const AcpiConfig& config) {
  std::vector<Aml> devices;
  auto uart = [](const char* name, uint64_t uid, uint16_t port, uint32_t irq) {
    return Aml::device(name, {
        Aml::name("_HID", Aml::eisa_id("PNP0501")),
        Aml::name("_UID", Aml::integer(uid)),
        Aml::name("_CRS", Aml::resource_template({
            Resource::io(port, port, 1, 8),
            Resource::interrupt(irq, Resource::Trigger::edge, Resource::Polarity::active_high),
        })),
    });
  };
  if (config.com1) devices.push_back(uart("COM1", 1, layout::kPioCom1, layout::kIrqCom1));
  if (config.com2) devices.push_back(uart("COM2", 2, layout::kPioCom2, layout::kIrqCom2));
  for (size_t i = 0; i < config.mmio_devices.size(); ++i)
    devices.push_back(mmio_device_aml(i, config.mmio_devices[i]));
  for (const auto& extra : config.extra_devices) devices.push_back(extra);

  // \_S5_: SLP_TYPa and SLP_TYPb for soft-off (7.4.2); Linux writes SLP_TYPa with SLP_EN to
  // SLEEP_CONTROL_REG to power off.
  Aml body = Aml::sequence({
      Aml::name("\\_S5_", Aml::package({Aml::integer(layout::kAcpiS5SleepType),
                                        Aml::integer(layout::kAcpiS5SleepType)})),
      Aml::scope("\\_SB_", devices),
  });
  FLICK_TRY_ASSIGN(auto aml, body.encode());
  Bytes t = table_header("DSDT", 2);  // revision 2: 64-bit integers
  t.append(aml);
  return finish(std::move(t));
}

Result<void> check_config(const AcpiConfig& config) {
  auto bad = [](const std::string& why) {
    return make_error(Errc::invalid_argument, "building ACPI tables: " + why);
  };
  if (config.cpus == 0 || config.cpus > kMaxCpus)
    return bad(std::to_string(config.cpus) + " vCPUs requested; the MADT holds 1 to " +
               std::to_string(kMaxCpus) + " (x2APIC entries are not written)");
  if (config.mmio_devices.size() > 256)
    return bad("more than 256 MMIO devices (names VR00..VRFF)");
  std::vector<uint32_t> gsis;
  if (config.com1) gsis.push_back(layout::kIrqCom1);
  for (size_t i = 0; i < config.mmio_devices.size(); ++i) {
    const auto& d = config.mmio_devices[i];
    std::string what = "MMIO device " + std::to_string(i) + " (" + d.hid + ")";
    if (d.size == 0 || d.base + d.size < d.base) return bad(what + " has an empty or wrapping window");
    if (d.gsi >= layout::kIoapicPins)
      return bad(what + " uses GSI " + std::to_string(d.gsi) + ", but the IOAPIC has " +
                 std::to_string(layout::kIoapicPins) + " pins");
    if (std::find(gsis.begin(), gsis.end(), d.gsi) != gsis.end())
      return bad(what + " uses GSI " + std::to_string(d.gsi) + ", which is already taken");
    gsis.push_back(d.gsi);
    for (size_t j = 0; j < i; ++j) {
      const auto& o = config.mmio_devices[j];
      if (d.base < o.base + o.size && o.base < d.base + d.size)
        return bad(what + " overlaps the window of MMIO device " + std::to_string(j));
    }
  }
  return {};
}

uint64_t align16(uint64_t v) { return (v + 15) & ~uint64_t{15}; }

}  // namespace

uint8_t byte_sum(const uint8_t* bytes, size_t size) {
  uint8_t sum = 0;
  for (size_t i = 0; i < size; ++i) sum = static_cast<uint8_t>(sum + bytes[i]);
  return sum;
}

Result<AcpiImage> build_tables(const AcpiConfig& config, uint64_t base, uint64_t limit) {
  FLICK_TRY(check_config(config));
  FLICK_TRY_ASSIGN(auto dsdt, build_dsdt(config));
  auto madt = build_madt(config.cpus);

  // Every size is known before any address is: place, then fill in the pointers.
  const size_t xsdt_size = kHeaderSize + 2 * 8;
  uint64_t rsdp_at = align16(base);
  uint64_t xsdt_at = align16(rsdp_at + kRsdpSize);
  uint64_t fadt_at = align16(xsdt_at + xsdt_size);
  uint64_t madt_at = align16(fadt_at + kFadtSize);
  uint64_t dsdt_at = align16(madt_at + madt.size());
  uint64_t end = dsdt_at + dsdt.size();
  if (end - base > limit) {
    return make_error(Errc::limit, "building ACPI tables: they need " +
                                       std::to_string(end - base) + " bytes but only " +
                                       std::to_string(limit) + " are reserved for them");
  }

  auto fadt = build_fadt(dsdt_at);
  Bytes xsdt = table_header("XSDT", 1);
  xsdt.append(fadt_at, 8);
  xsdt.append(madt_at, 8);
  auto xsdt_bytes = finish(std::move(xsdt));

  Bytes rsdp(kRsdpSize);  // 5.2.5.3
  rsdp.put_text(0, "RSD PTR ", 8);
  rsdp.put_text(9, kOemId, 6);
  rsdp.put(15, 2, 1);  // revision: ACPI 2.0+
  rsdp.put(16, 0, 4);  // RsdtAddress: none, the XSDT is used
  rsdp.put(20, kRsdpSize, 4);
  rsdp.put(24, xsdt_at, 8);
  rsdp.checksum(8, 0, 20);          // covers the ACPI 1.0 part
  rsdp.checksum(32, 0, kRsdpSize);  // extended checksum, the whole structure
  auto rsdp_bytes = rsdp.take();

  AcpiImage image;
  image.base = base;
  image.rsdp_address = rsdp_at;
  image.bytes.assign(end - base, 0);
  auto place = [&](const char* sig, uint64_t at, const std::vector<uint8_t>& b) {
    std::copy(b.begin(), b.end(), image.bytes.begin() + static_cast<ptrdiff_t>(at - base));
    image.tables.push_back({sig, at, static_cast<uint32_t>(b.size())});
  };
  place("RSD PTR ", rsdp_at, rsdp_bytes);
  place("XSDT", xsdt_at, xsdt_bytes);
  place("FACP", fadt_at, fadt);
  place("APIC", madt_at, madt);
  place("DSDT", dsdt_at, dsdt);
  return image;
}

Result<GuestAddress> write_tables(GuestMemory& memory, const AcpiConfig& config) {
  FLICK_TRY_ASSIGN(auto image, build_tables(config));
  auto r = memory.write(GuestAddress{image.base}, std::as_bytes(std::span(image.bytes)));
  if (!r.ok()) return std::move(r).error().with_context("writing the ACPI tables");
  return GuestAddress{image.rsdp_address};
}

}  // namespace flick::vmm::acpi
