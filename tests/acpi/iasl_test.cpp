// Decompiles the generated tables with ACPICA's iasl (acpica-tools) and checks what an
// independent ACPI implementation reads in them.
#include "vmm/acpi/tables.h"

#include "vmm/layout.h"

#include "support/command.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace flick::vmm::acpi {
namespace {

namespace fs = std::filesystem;
namespace L = flick::vmm::layout;

using flick::testing::CommandResult;
CommandResult run(const std::string& command) { return flick::testing::run_command(command); }

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

class Iasl : public ::testing::Test {
 protected:
  void SetUp() override {
    if (run("command -v iasl").status != 0) GTEST_SKIP() << "iasl (acpica-tools) is not installed";
    char tmpl[] = "/tmp/flick-acpi-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Writes every table of `image` except the RSDP as <signature>.dat (e.g. facp.dat, the
  // names acpidump/acpixtract give them) and returns the file names.
  std::string write_dat_files(const AcpiImage& image) {
    std::string files;
    for (const auto& t : image.tables) {
      if (t.signature == "RSD PTR ") continue;
      std::string name = lower(t.signature) + ".dat";
      std::ofstream out(dir_ / name, std::ios::binary);
      out.write(reinterpret_cast<const char*>(image.bytes.data() + (t.address - image.base)),
                t.size);
      files += " " + name;
    }
    return files;
  }

  // Decompiles every table of `image` and returns the .dsl text of the table `signature`.
  std::string decompile(const AcpiImage& image, const std::string& signature) {
    auto r = run("cd " + dir_.string() + " && iasl -d" + write_dat_files(image));
    EXPECT_EQ(r.status, 0) << r.output;
    return slurp(dir_ / (lower(signature) + ".dsl"));
  }

  static std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  fs::path dir_;
};

AcpiConfig three_devices() {
  AcpiConfig c;
  c.cpus = 3;
  for (uint32_t i = 0; i < 3; ++i)
    c.mmio_devices.push_back({L::kVirtioMmioBase + i * L::kVirtioMmioStride,
                              L::kVirtioMmioStride, L::kIrqFirstDevice + i});
  return c;
}

TEST_F(Iasl, DsdtDeclaresVirtioMmioDevicesCom1AndS5) {
  auto img = build_tables(three_devices());
  ASSERT_TRUE(img.ok()) << img.error().message;
  std::string dsl = decompile(*img, "DSDT");
  ASSERT_FALSE(dsl.empty());
  EXPECT_EQ(count(dsl, "Name (_HID, \"LNRO0005\")"), 3u) << dsl;
  for (const char* needle : {
           "Device (VR00)", "Device (VR01)", "Device (VR02)",
           "Memory32Fixed (ReadWrite,\n                    0xC0001000,         // Address Base\n"
           "                    0x00001000,         // Address Length",
           "0xC0002000,         // Address Base", "0xC0003000,         // Address Base",
           "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )\n"
           "                {\n                    0x00000005,",
           "0x00000006,", "0x00000007,",
           "Name (_CCA, One)",
           "Name (\\_S5, Package (0x02)", "{\n        0x05, \n        0x05\n    })",
           "Device (COM1)", "Name (_HID, EisaId (\"PNP0501\")",
           "IO (Decode16,\n                    0x03F8,             // Range Minimum",
           "0x00000004,", "Scope (\\_SB)"}) {
    EXPECT_NE(dsl.find(needle), std::string::npos) << "missing: " << needle << "\n" << dsl;
  }
}

TEST_F(Iasl, DecompiledDsdtRecompilesWithoutErrors) {
  auto c = three_devices();
  // Also exercise what the DSDT itself does not use yet.
  c.extra_devices.push_back(Aml::device("TST0", {
      Aml::name("_HID", Aml::string("FLCK0001")),
      Aml::method("_STA", 0, false, {Aml::return_value(Aml::integer(0x0f))}),
      Aml::name("_CRS", Aml::resource_template({Resource::qword_memory(0x100000000, 0x2000)})),
      Aml::name("BIG_", Aml::integer(0x123456789)),
  }));
  auto img = build_tables(c);
  ASSERT_TRUE(img.ok()) << img.error().message;
  std::string dsl = decompile(*img, "DSDT");
  EXPECT_NE(dsl.find("Method (_STA, 0, NotSerialized)"), std::string::npos) << dsl;
  EXPECT_NE(dsl.find("Return (0x0F)"), std::string::npos) << dsl;
  EXPECT_NE(dsl.find("QWordMemory (ResourceConsumer, PosDecode, MinFixed, MaxFixed, "
                     "NonCacheable, ReadWrite"), std::string::npos) << dsl;
  EXPECT_NE(dsl.find("0x0000000100000000, // Range Minimum"), std::string::npos) << dsl;
  EXPECT_NE(dsl.find("0x0000000123456789"), std::string::npos) << dsl;
  // -oa: no optimizations, so iasl keeps our encoding choices (root prefixes, integer forms).
  auto r = run("cd " + dir_.string() + " && iasl -oa -p recompiled dsdt.dsl");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(" 0 Errors"), std::string::npos) << r.output;
  std::string aml = flick::testing::read_file(dir_ / "recompiled.aml");
  std::vector<uint8_t> theirs(aml.begin(), aml.end());
  auto ours_table = std::find_if(img->tables.begin(), img->tables.end(),
                                 [](const AcpiTable& t) { return t.signature == "DSDT"; });
  const uint8_t* ours = img->bytes.data() + (ours_table->address - img->base);
  ASSERT_EQ(theirs.size(), ours_table->size);
  // Same AML after the header, except that iasl leaves End Tag checksums 0 (6.4.2.9 allows it).
  for (size_t i = 36; i < theirs.size(); ++i) {
    if (ours[i] == theirs[i]) continue;
    EXPECT_TRUE(ours[i - 1] == 0x79 && theirs[i - 1] == 0x79 && theirs[i] == 0)
        << "AML differs at offset " << i;
  }
}

TEST_F(Iasl, FadtIsHardwareReducedWithSleepAndResetRegistersInPortSpace) {
  auto img = build_tables(three_devices());
  ASSERT_TRUE(img.ok());
  std::string dsl = decompile(*img, "FACP");
  ASSERT_FALSE(dsl.empty());
  auto has = [&](const std::string& pattern) {
    return std::regex_search(dsl, std::regex(pattern));
  };
  EXPECT_TRUE(has(R"(Hardware Reduced \(V5\) : 1)")) << dsl;
  EXPECT_TRUE(has(R"(Reset Register Supported \(V2\) : 1)")) << dsl;
  EXPECT_TRUE(has(R"(Sleep Control Register : \[Generic Address Structure\]\s*\n.*Space ID : 01 \[SystemIO\]\s*\n.*Bit Width : 08\s*\n.*Bit Offset : 00\s*\n.*Encoded Access Width : 01 \[Byte Access:8\]\s*\n.*Address : 0000000000000600)")) << dsl;
  EXPECT_TRUE(has(R"(Sleep Status Register : \[Generic Address Structure\]\s*\n.*Space ID : 01 \[SystemIO\](.*\n){4}.*Address : 0000000000000601)")) << dsl;
  EXPECT_TRUE(has(R"(Reset Register : \[Generic Address Structure\]\s*\n.*Space ID : 01 \[SystemIO\](.*\n){4}.*Address : 0000000000000602)")) << dsl;
  EXPECT_TRUE(has(R"(Value to cause reset : 01)")) << dsl;
  EXPECT_TRUE(has(R"(VGA Not Present \(V4\) : 1)")) << dsl;
  EXPECT_TRUE(has(R"(CMOS RTC Not Present \(V5\) : 1)")) << dsl;
  EXPECT_TRUE(has(R"(8042 Present on ports 60/64 \(V2\) : 0)")) << dsl;
  EXPECT_TRUE(has(R"(Hypervisor ID : 2020204B43494C46)")) << dsl;  // "FLICK   "
  EXPECT_EQ(dsl.find("**** "), std::string::npos) << "iasl reported a problem:\n" << dsl;
}

TEST_F(Iasl, MadtListsOneLocalApicPerCpu) {
  for (uint32_t cpus : {1u, 3u, 16u}) {
    auto c = three_devices();
    c.cpus = cpus;
    auto img = build_tables(c);
    ASSERT_TRUE(img.ok());
    std::string dsl = decompile(*img, "APIC");
    EXPECT_EQ(count(dsl, "Subtable Type : 00 [Processor Local APIC]"), cpus) << dsl;
    EXPECT_EQ(count(dsl, "Processor Enabled : 1"), cpus) << dsl;
    EXPECT_EQ(count(dsl, "Subtable Type : 01 [I/O APIC]"), 1u) << dsl;
    EXPECT_NE(dsl.find("Address : FEC00000"), std::string::npos) << dsl;
    EXPECT_NE(dsl.find("Local Apic Address : FEE00000"), std::string::npos) << dsl;
    EXPECT_EQ(count(dsl, "Subtable Type : 02 [Interrupt Source Override]"), 1u) << dsl;
    EXPECT_EQ(count(dsl, "Subtable Type : 04 [Local APIC NMI]"), 1u) << dsl;
    EXPECT_EQ(dsl.find("**** "), std::string::npos) << "iasl reported a problem:\n" << dsl;
  }
}

// acpiexec runs ACPICA, the interpreter inside Linux, on the tables: it loads the namespace,
// converts each _CRS into resources as Linux's ACPI core does, and evaluates \_S5.
TEST_F(Iasl, AcpicaInterpreterReadsTheResourcesAndSleepState) {
  if (run("command -v acpiexec").status != 0) GTEST_SKIP() << "acpiexec is not installed";
  auto img = build_tables(three_devices());
  ASSERT_TRUE(img.ok());
  std::string files = write_dat_files(*img);
  auto r = run("cd " + dir_.string() + " && timeout 60 acpiexec -b "
               "'resources \\_SB.VR02; resources \\_SB.COM1; evaluate \\_S5' " + files);
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string& out = r.output;
  EXPECT_NE(out.find("Objects with   4 Devices"),  // COM1, VR00..VR02
            std::string::npos) << out;
  auto has = [&](const std::string& pattern) { return std::regex_search(out, std::regex(pattern)); };
  EXPECT_TRUE(has(R"(32-Bit Fixed Memory Range Resource\s*\n.*ReadWrite\s*\n.*Address : C0003000\s*\n.*Address Length : 00001000)")) << out;
  EXPECT_TRUE(has(R"(Extended IRQ Resource\s*\n.*ResourceConsumer\s*\n.*Triggering : Edge\s*\n.*Polarity : ActiveHigh\s*\n.*Sharing : Exclusive(.*\n){4}.*Dword00 : 00000007)")) << out;
  EXPECT_TRUE(has(R"(I/O Resource\s*\n.*Decode16\s*\n.*Address Minimum : 03F8\s*\n.*Address Maximum : 03F8)")) << out;
  EXPECT_TRUE(has(R"(Dword00 : 00000004)")) << out;
  EXPECT_TRUE(has(R"(\[Package\] Contains 2 Elements:\s*\n.*\[Integer\] = 0000000000000005)")) << out;
  EXPECT_EQ(out.find("AE_AML"), std::string::npos) << out;
}

}  // namespace
}  // namespace flick::vmm::acpi
