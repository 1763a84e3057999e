#include "vmm/acpi/tables.h"

#include "vmm/layout.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

namespace flick::vmm::acpi {
namespace {

namespace L = flick::vmm::layout;

AcpiConfig two_cpus_two_devices() {
  AcpiConfig c;
  c.cpus = 2;
  c.mmio_devices.push_back({L::kVirtioMmioBase, 0x1000, L::kIrqFirstDevice});
  c.mmio_devices.push_back({L::kVirtioMmioBase + L::kVirtioMmioStride, 0x1000,
                            L::kIrqFirstDevice + 1});
  return c;
}

// Reads little-endian fields of the image by guest physical address.
struct View {
  const AcpiImage& img;
  const uint8_t* at(uint64_t gpa) const { return img.bytes.data() + (gpa - img.base); }
  uint64_t le(uint64_t gpa, int n) const {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = v << 8 | at(gpa)[i];
    return v;
  }
  std::string text(uint64_t gpa, size_t n) const {
    return std::string(reinterpret_cast<const char*>(at(gpa)), n);
  }
};

const AcpiTable& table(const AcpiImage& img, const std::string& sig) {
  for (const auto& t : img.tables)
    if (t.signature == sig) return t;
  ADD_FAILURE() << "no table " << sig;
  return img.tables.front();
}

TEST(AcpiTables, RsdpSitsAlignedInTheBiosAreaWithBothChecksums) {
  auto img = build_tables(two_cpus_two_devices());
  ASSERT_TRUE(img.ok()) << img.error().message;
  View v{*img};
  uint64_t rsdp = img->rsdp_address;
  EXPECT_EQ(rsdp % 16, 0u);
  EXPECT_GE(rsdp, 0xe0000u);
  EXPECT_LE(rsdp + 36, 0x100000u);
  EXPECT_EQ(v.text(rsdp, 8), "RSD PTR ");
  EXPECT_EQ(byte_sum(v.at(rsdp), 20), 0);
  EXPECT_EQ(byte_sum(v.at(rsdp), 36), 0);
  EXPECT_EQ(v.text(rsdp + 9, 6), "FLICK ");
  EXPECT_EQ(v.le(rsdp + 15, 1), 2u);   // revision
  EXPECT_EQ(v.le(rsdp + 20, 4), 36u);  // length
  EXPECT_EQ(v.le(rsdp + 24, 8), table(*img, "XSDT").address);
}

TEST(AcpiTables, EveryTableHasAValidHeaderAndChecksum) {
  auto img = build_tables(two_cpus_two_devices());
  ASSERT_TRUE(img.ok()) << img.error().message;
  View v{*img};
  ASSERT_EQ(img->tables.size(), 5u);
  for (const auto& t : img->tables) {
    if (t.signature == "RSD PTR ") continue;
    SCOPED_TRACE(t.signature);
    EXPECT_EQ(t.address % 8, 0u);
    EXPECT_EQ(v.text(t.address, 4), t.signature);
    EXPECT_EQ(v.le(t.address + 4, 4), t.size);
    EXPECT_EQ(byte_sum(v.at(t.address), t.size), 0);
    EXPECT_EQ(v.text(t.address + 10, 6), "FLICK ");
  }
}

TEST(AcpiTables, PointersLeadFromXsdtToFadtMadtAndDsdt) {
  auto img = build_tables(two_cpus_two_devices());
  ASSERT_TRUE(img.ok());
  View v{*img};
  const auto& xsdt = table(*img, "XSDT");
  ASSERT_EQ(xsdt.size, 36u + 16u);
  uint64_t fadt = v.le(xsdt.address + 36, 8);
  uint64_t madt = v.le(xsdt.address + 44, 8);
  EXPECT_EQ(v.text(fadt, 4), "FACP");
  EXPECT_EQ(v.text(madt, 4), "APIC");
  EXPECT_EQ(v.le(fadt + 40, 4), 0u);  // 32-bit DSDT unused
  EXPECT_EQ(v.text(v.le(fadt + 140, 8), 4), "DSDT");
}

TEST(AcpiTables, FadtFieldsSayHardwareReducedWithPortRegisters) {
  auto img = build_tables(AcpiConfig{});
  ASSERT_TRUE(img.ok());
  View v{*img};
  uint64_t f = table(*img, "FACP").address;
  EXPECT_EQ(v.le(f + 4, 4), 276u);
  EXPECT_EQ(v.le(f + 8, 1), 6u);     // revision
  EXPECT_EQ(v.le(f + 131, 1), 5u);   // minor version
  EXPECT_EQ(v.le(f + 36, 4), 0u);    // no FACS
  EXPECT_EQ(v.le(f + 132, 8), 0u);
  uint32_t flags = static_cast<uint32_t>(v.le(f + 112, 4));
  EXPECT_TRUE(flags & (1u << 20));   // HW_REDUCED_ACPI
  EXPECT_TRUE(flags & (1u << 10));   // RESET_REG_SUP
  uint16_t boot = static_cast<uint16_t>(v.le(f + 109, 2));
  EXPECT_EQ(boot & 0x3, 0);          // no legacy devices, no 8042
  EXPECT_TRUE(boot & (1u << 2));     // VGA not present
  EXPECT_TRUE(boot & (1u << 5));     // CMOS RTC not present
  for (uint64_t pm_block = 56; pm_block < 88; pm_block += 4) EXPECT_EQ(v.le(f + pm_block, 4), 0u);
  // RESET_REG, SLEEP_CONTROL_REG, SLEEP_STATUS_REG: System I/O, 8 bits, byte access.
  struct Gas { uint64_t off; uint16_t port; };
  for (Gas g : {Gas{116, L::kPioAcpiReset}, Gas{244, L::kPioAcpiSleepControl},
                Gas{256, L::kPioAcpiSleepStatus}}) {
    SCOPED_TRACE(g.off);
    EXPECT_EQ(v.le(f + g.off, 1), 1u);
    EXPECT_EQ(v.le(f + g.off + 1, 1), 8u);
    EXPECT_EQ(v.le(f + g.off + 2, 1), 0u);
    EXPECT_EQ(v.le(f + g.off + 3, 1), 1u);
    EXPECT_EQ(v.le(f + g.off + 4, 8), g.port);
  }
  EXPECT_EQ(v.le(f + 128, 1), L::kAcpiResetValue);
  EXPECT_EQ(v.text(f + 268, 5), "FLICK");
}

TEST(AcpiTables, MadtHasOneEnabledLocalApicPerCpuAndTheIoapic) {
  AcpiConfig c;
  c.cpus = 4;
  auto img = build_tables(c);
  ASSERT_TRUE(img.ok());
  View v{*img};
  const auto& m = table(*img, "APIC");
  EXPECT_EQ(v.le(m.address + 36, 4), L::kLapic);
  EXPECT_EQ(v.le(m.address + 40, 4), 1u);  // PCAT_COMPAT
  std::array<int, 16> count{};
  std::vector<uint64_t> apic_ids;
  for (uint64_t p = m.address + 44; p < m.address + m.size;) {
    uint8_t type = v.at(p)[0], len = v.at(p)[1];
    ASSERT_GE(len, 2);
    ++count[type & 0xf];
    if (type == 0) {
      EXPECT_EQ(len, 8);
      apic_ids.push_back(v.le(p + 3, 1));
      EXPECT_EQ(v.le(p + 4, 4), 1u);  // enabled
    } else if (type == 1) {
      EXPECT_EQ(len, 12);
      EXPECT_EQ(v.le(p + 4, 4), L::kIoapic);
      EXPECT_EQ(v.le(p + 8, 4), 0u);  // GSI base
    } else if (type == 2) {
      EXPECT_EQ(len, 10);
      EXPECT_EQ(v.le(p + 3, 1), 0u);  // ISA IRQ 0
      EXPECT_EQ(v.le(p + 4, 4), 2u);  // -> GSI 2
    } else if (type == 4) {
      EXPECT_EQ(len, 6);
      EXPECT_EQ(v.le(p + 2, 1), 0xffu);
      EXPECT_EQ(v.le(p + 5, 1), 1u);  // LINT1
    }
    p += len;
  }
  EXPECT_EQ(apic_ids, (std::vector<uint64_t>{0, 1, 2, 3}));
  EXPECT_EQ(count[1], 1);
  EXPECT_EQ(count[2], 1);
  EXPECT_EQ(count[4], 1);
}

TEST(AcpiTables, RejectsConfigurationsTheTablesCannotDescribe) {
  AcpiConfig zero;
  zero.cpus = 0;
  EXPECT_FALSE(build_tables(zero).ok());
  AcpiConfig many;
  many.cpus = 255;
  EXPECT_FALSE(build_tables(many).ok());
  many.cpus = 254;
  EXPECT_TRUE(build_tables(many).ok());

  auto c = two_cpus_two_devices();
  c.mmio_devices[1].gsi = L::kIoapicPins;
  EXPECT_FALSE(build_tables(c).ok());
  c = two_cpus_two_devices();
  c.mmio_devices[1].gsi = c.mmio_devices[0].gsi;  // shared edge interrupt
  EXPECT_FALSE(build_tables(c).ok());
  c = two_cpus_two_devices();
  c.mmio_devices[1].gsi = L::kIrqCom1;
  EXPECT_FALSE(build_tables(c).ok());
  c.com1 = false;
  EXPECT_TRUE(build_tables(c).ok());
  c = two_cpus_two_devices();
  c.mmio_devices[1].base = c.mmio_devices[0].base + 0x800;  // overlapping windows
  auto r = build_tables(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("overlaps"), std::string::npos) << r.error().message;
  c = two_cpus_two_devices();
  c.mmio_devices[0].size = 0;
  EXPECT_FALSE(build_tables(c).ok());
}

TEST(AcpiTables, FailsWhenTheTablesDoNotFit) {
  auto c = two_cpus_two_devices();
  auto img = build_tables(c);
  ASSERT_TRUE(img.ok());
  uint64_t needed = img->bytes.size();
  EXPECT_TRUE(build_tables(c, L::kAcpiStart, needed).ok());
  auto r = build_tables(c, L::kAcpiStart, needed - 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::limit);
}

TEST(AcpiTables, TheLargestConfigurationFitsInTheReservedArea) {
  // Every xAPIC CPU and a device on every GSI the layout leaves for devices.
  AcpiConfig c;
  c.cpus = 254;
  for (uint32_t gsi = L::kIrqFirstDevice; gsi <= L::kIrqLastDevice; ++gsi) {
    uint64_t index = gsi - L::kIrqFirstDevice;
    c.mmio_devices.push_back(
        {L::kVirtioMmioBase + index * L::kVirtioMmioStride, L::kVirtioMmioStride, gsi});
  }
  auto img = build_tables(c);
  ASSERT_TRUE(img.ok()) << img.error().message;
  EXPECT_LE(img->bytes.size(), L::kAcpiSize);
}

TEST(AcpiTables, WriteTablesPutsThemInGuestMemory) {
  std::array<GuestMemory::Range, 1> ram{{{0, 0x200000}}};
  auto mem = GuestMemory::create(ram);
  ASSERT_TRUE(mem.ok());
  auto c = two_cpus_two_devices();
  auto rsdp = write_tables(*mem, c);
  ASSERT_TRUE(rsdp.ok()) << rsdp.error().message;
  auto img = build_tables(c);
  ASSERT_TRUE(img.ok());
  EXPECT_EQ(rsdp->value, img->rsdp_address);
  std::vector<std::byte> back(img->bytes.size());
  ASSERT_TRUE(mem->read(GuestAddress{img->base}, back).ok());
  EXPECT_EQ(0, std::memcmp(back.data(), img->bytes.data(), back.size()));

  std::array<GuestMemory::Range, 1> tiny{{{0, 0x10000}}};  // no RAM at 0xe0000
  auto small = GuestMemory::create(tiny);
  ASSERT_TRUE(small.ok());
  EXPECT_FALSE(write_tables(*small, c).ok());
}

}  // namespace
}  // namespace flick::vmm::acpi
