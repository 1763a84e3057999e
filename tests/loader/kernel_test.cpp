#include "vmm/loader/kernel.h"

#include "images.h"

#include <gtest/gtest.h>

namespace flick::vmm {
namespace {

using namespace testing;

TEST(LoadKernel, DetectsTheFormatByMagic) {
  auto mem = make_memory(64 << 20);
  auto bz = load_kernel(mem, make_bzimage(default_header()));
  ASSERT_TRUE(bz.ok()) << bz.error().message;
  EXPECT_TRUE(bz->setup.has_value());
  EXPECT_EQ(bz->entry.value, 0x1000200u);

  Bytes elf = make_elf<true>(0x200000, {{PT_LOAD, 0x200000, 0, pattern(16, 0), 16},
                                        {PT_NOTE, 0, 0, xen_note(18, le_bytes(0x200008, 4)), 0}});
  auto pvh = load_kernel(mem, elf);  // PVH is the default preference
  ASSERT_TRUE(pvh.ok()) << pvh.error().message;
  EXPECT_EQ(pvh->mode, EntryMode::Pvh32);
  EXPECT_EQ(pvh->entry.value, 0x200008u);
  EXPECT_FALSE(pvh->setup.has_value());
  auto long64 = load_kernel(mem, elf, {EntryMode::Long64});
  ASSERT_TRUE(long64.ok());
  EXPECT_EQ(long64->mode, EntryMode::Long64);
  EXPECT_EQ(long64->entry.value, 0x200000u);
}

TEST(LoadKernel, RejectsUnknownFormatsAndPassesOnLoaderErrors) {
  auto mem = make_memory(64 << 20);
  auto r = load_kernel(mem, Bytes(4096));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::malformed);
  EXPECT_NE(r.error().message.find("neither an ELF file nor a bzImage"), std::string::npos);
  EXPECT_FALSE(load_kernel(mem, Bytes(2)).ok());

  auto h = default_header();
  h.version = 0x0200;
  r = load_kernel(mem, make_bzimage(h));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("bzImage: boot protocol 2.0"), std::string::npos);
  Bytes elf = make_elf<true>(0x200000, {{PT_LOAD, 0x200000, 0, pattern(16, 0), 8}});
  r = load_kernel(mem, elf);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("ELF kernel: segment 0"), std::string::npos);
}

}  // namespace
}  // namespace flick::vmm
