#include "vmm/loader/boot_params.h"

#include "images.h"
#include "vmm/loader/bzimage.h"
#include "vmm/loader/elf.h"

#include <gtest/gtest.h>

namespace flick::vmm {
namespace {

using namespace testing;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kZp = layout::kZeroPage;

LoadedKernel load_bz(GuestMemory& mem, SetupHeader h = default_header()) {
  auto k = load_bzimage(mem, make_bzimage(h));
  if (!k.ok()) abort();
  return *k;
}

std::vector<E820Entry> zero_page_e820(const GuestMemory& mem) {
  std::vector<E820Entry> v(at<uint8_t>(mem, kZp + 0x1e8));
  for (size_t i = 0; i < v.size(); ++i) v[i] = at<E820Entry>(mem, kZp + 0x2d0 + i * 20);
  return v;
}

void expect_entry(const E820Entry& e, uint64_t addr, uint64_t size, uint32_t type) {
  EXPECT_EQ(e.addr, addr);
  EXPECT_EQ(e.size, size);
  EXPECT_EQ(e.type, type);
}

TEST(E820, SmallMachine) {
  auto mem = make_memory(64 * kMiB);
  auto map = guest_e820_map(mem);
  ASSERT_EQ(map.size(), 3u);
  expect_entry(map[0], 0, 0x9fc00, kE820Ram);
  expect_entry(map[1], 0x9fc00, 0x100000 - 0x9fc00, kE820Reserved);
  expect_entry(map[2], 0x100000, 63 * kMiB, kE820Ram);
}

TEST(E820, LargeMachineSkipsTheMmioHole) {
  auto mem = make_memory(5 * kGiB);
  auto map = guest_e820_map(mem);
  ASSERT_EQ(map.size(), 4u);
  expect_entry(map[2], 0x100000, 3 * kGiB - kMiB, kE820Ram);
  expect_entry(map[3], 4 * kGiB, 2 * kGiB, kE820Ram);
}

TEST(BootParams, ZeroPageForABzImage) {
  auto mem = make_memory(64 * kMiB);
  LoadedKernel k = load_bz(mem);
  Bytes initrd = pattern(0x3000, 4);
  BootConfig cfg{"console=ttyS0 quiet", initrd, 0xe0000};
  auto regs = write_boot_params(mem, k, cfg);
  ASSERT_TRUE(regs.ok()) << regs.error().message;
  EXPECT_EQ(regs->mode, EntryMode::Long64);
  EXPECT_EQ(regs->rip, 0x1000200u);
  EXPECT_EQ(regs->rsi, kZp);
  EXPECT_EQ(regs->rbx, 0u);

  EXPECT_EQ(at<uint16_t>(mem, kZp + 0x1fe), 0xaa55);
  EXPECT_EQ(at<uint32_t>(mem, kZp + 0x202), 0x53726448u);
  EXPECT_EQ(at<uint16_t>(mem, kZp + 0x206), 0x020f);  // copied from the image
  EXPECT_EQ(at<uint32_t>(mem, kZp + 0x260), 0x400000u);
  EXPECT_EQ(at<uint8_t>(mem, kZp + 0x210), 0xff);     // type_of_loader
  EXPECT_EQ(at<uint32_t>(mem, kZp + 0x228), 0x20000u);  // cmd_line_ptr
  EXPECT_EQ(at<uint32_t>(mem, kZp + 0x0c8), 0u);        // ext_cmd_line_ptr
  EXPECT_EQ(at<uint64_t>(mem, kZp + 0x070), 0xe0000u);  // acpi_rsdp_addr
  EXPECT_EQ(at<uint8_t>(mem, kZp + 0x1ef), 0);          // sentinel
  // Initrd at the top of RAM, page aligned.
  uint32_t rd = at<uint32_t>(mem, kZp + 0x218);
  EXPECT_EQ(rd, 64 * kMiB - 0x3000);
  EXPECT_EQ(at<uint32_t>(mem, kZp + 0x21c), 0x3000u);
  EXPECT_EQ(at<uint32_t>(mem, kZp + 0x0c0), 0u);
  EXPECT_EQ(at<uint32_t>(mem, kZp + 0x0c4), 0u);
  Bytes got(0x3000);
  ASSERT_TRUE(mem.read(GuestAddress{rd}, got).ok());
  EXPECT_EQ(got, initrd);

  auto e820 = zero_page_e820(mem);
  ASSERT_EQ(e820.size(), 3u);
  expect_entry(e820[2], 0x100000, 63 * kMiB, kE820Ram);

  char line[21] = {};
  ASSERT_TRUE(mem.read(GuestAddress{0x20000}, std::as_writable_bytes(std::span(line))).ok());
  EXPECT_STREQ(line, "console=ttyS0 quiet");
}

TEST(BootParams, SynthesizesAHeaderForAnElfKernel) {
  auto mem = make_memory(64 * kMiB);
  auto k = load_elf(mem, make_elf<true>(0x1000000, {{PT_LOAD, 0x1000000, 0, pattern(16, 0), 16}}),
                    EntryMode::Long64);
  ASSERT_TRUE(k.ok()) << k.error().message;
  auto regs = write_boot_params(mem, *k, {"init=/bin/sh", std::nullopt, 0});
  ASSERT_TRUE(regs.ok()) << regs.error().message;
  EXPECT_EQ(regs->rip, 0x1000000u);
  EXPECT_EQ(regs->rsi, kZp);
  EXPECT_EQ(at<uint16_t>(mem, kZp + 0x1fe), 0xaa55);
  EXPECT_EQ(at<uint32_t>(mem, kZp + 0x202), 0x53726448u);
  EXPECT_GE(at<uint16_t>(mem, kZp + 0x206), 0x020c);
  EXPECT_EQ(at<uint8_t>(mem, kZp + 0x210), 0xff);
  EXPECT_EQ(at<uint8_t>(mem, kZp + 0x211) & kLoadedHigh, kLoadedHigh);
  EXPECT_EQ(at<uint32_t>(mem, kZp + 0x218), 0u);  // no initrd
  EXPECT_EQ(at<uint32_t>(mem, kZp + 0x21c), 0u);
  EXPECT_EQ(at<uint8_t>(mem, kZp + 0x1e8), 3);
}

TEST(BootParams, PvhStartInfo) {
  auto mem = make_memory(5 * kGiB);
  auto k = load_elf(mem,
                    make_elf<false>(0x100000, {{PT_LOAD, 0x100000, 0, pattern(16, 0), 16},
                                               {PT_NOTE, 0, 0, xen_note(18, le_bytes(0x100000, 4)),
                                                0}}),
                    EntryMode::Pvh32);
  ASSERT_TRUE(k.ok()) << k.error().message;
  Bytes initrd = pattern(0x1800, 1);
  auto regs = write_boot_params(mem, *k, {"console=hvc0", initrd, 0xe0000});
  ASSERT_TRUE(regs.ok()) << regs.error().message;
  EXPECT_EQ(regs->mode, EntryMode::Pvh32);
  EXPECT_EQ(regs->rip, 0x100000u);
  EXPECT_EQ(regs->rbx, layout::kPvhStartInfo);

  auto si = at<HvmStartInfo>(mem, layout::kPvhStartInfo);
  EXPECT_EQ(si.magic, 0x336ec578u);
  EXPECT_EQ(si.version, 1u);
  EXPECT_EQ(si.cmdline_paddr, 0x20000u);
  EXPECT_EQ(si.rsdp_paddr, 0xe0000u);
  EXPECT_EQ(si.memmap_paddr, layout::kPvhStartInfo + 56);
  ASSERT_EQ(si.memmap_entries, 4u);
  auto last = at<HvmMemmapEntry>(mem, si.memmap_paddr + 3 * 24);
  EXPECT_EQ(last.addr, 4 * kGiB);
  EXPECT_EQ(last.size, 2 * kGiB);
  EXPECT_EQ(last.type, 1u);
  ASSERT_EQ(si.nr_modules, 1u);
  EXPECT_GE(si.modlist_paddr, si.memmap_paddr + 4 * 24);
  auto mod = at<HvmModlistEntry>(mem, si.modlist_paddr);
  // Top of RAM below the MMIO hole.
  EXPECT_EQ(mod.paddr, 3 * kGiB - 0x2000);
  EXPECT_EQ(mod.size, 0x1800u);
  EXPECT_EQ(at<uint8_t>(mem, mod.paddr + 1), 2);
}

TEST(Initrd, RespectsTheKernelsCeiling) {
  auto mem = make_memory(5 * kGiB);
  auto h = default_header();
  LoadedKernel k = load_bz(mem, h);
  // XLF_CAN_BE_LOADED_ABOVE_4G: anywhere in low RAM, so just below the MMIO hole.
  EXPECT_EQ(*place_initrd(mem, k, 0x1000), 3 * kGiB - 0x1000);
  k.setup->xloadflags = kXlfKernel64;
  EXPECT_EQ(*place_initrd(mem, k, 0x1000), 2 * kGiB - 0x1000);  // initrd_addr_max 0x7fffffff
  k.setup->initrd_addr_max = 0x37ffffff;
  EXPECT_EQ(*place_initrd(mem, k, 0x1001), 0x38000000u - 0x2000);
}

TEST(Initrd, GoesBelowTheKernelWhenItWouldOverlapIt) {
  auto mem = make_memory(64 * kMiB);
  auto h = default_header();
  h.init_size = 44 * kMiB;  // kernel occupies 16..60 MiB
  LoadedKernel k = load_bz(mem, h);
  EXPECT_EQ(*place_initrd(mem, k, 8 * kMiB), 8 * kMiB);
  auto r = place_initrd(mem, k, 16 * kMiB);  // neither above (4 MiB) nor below (15 MiB) fits
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::no_memory);
  EXPECT_NE(r.error().message.find("initrd of 16.0 MiB does not fit"), std::string::npos)
      << r.error().message;
}

TEST(BootParams, RejectsTooBigInitrd) {
  auto mem = make_memory(64 * kMiB);
  LoadedKernel k = load_bz(mem);
  Bytes initrd(100 * kMiB);
  auto r = write_boot_params(mem, k, {"", initrd, 0});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::no_memory);
  EXPECT_NE(r.error().message.find("initrd of 100.0 MiB"), std::string::npos);
}

TEST(BootParams, RejectsBadCommandLines) {
  auto mem = make_memory(64 * kMiB);
  auto h = default_header();
  h.cmdline_size = 10;
  LoadedKernel k = load_bz(mem, h);
  EXPECT_TRUE(write_boot_params(mem, k, {std::string(10, 'a'), std::nullopt, 0}).ok());
  auto r = write_boot_params(mem, k, {std::string(11, 'a'), std::nullopt, 0});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::limit);
  EXPECT_NE(r.error().message.find("this kernel accepts at most 10"), std::string::npos);

  k.setup->cmdline_size = 0xffffffff;
  r = write_boot_params(mem, k, {std::string(layout::kCmdlineMax, 'a'), std::nullopt, 0});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("flick has room for"), std::string::npos);
  r = write_boot_params(mem, k, {std::string("a\0b", 3), std::nullopt, 0});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("NUL"), std::string::npos);
}

}  // namespace
}  // namespace flick::vmm
