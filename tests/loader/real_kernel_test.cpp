// Loads real kernels: $FLICK_TEST_KERNEL (a bzImage, e.g. Debian's vmlinuz-*-cloud-amd64) and
// $FLICK_TEST_VMLINUX (the ELF vmlinux decompressed from one). real_kernel_test.py fetches
// Debian's cloud kernel and runs this binary with both set.
#include "vmm/loader/boot_params.h"
#include "vmm/loader/bzimage.h"
#include "vmm/loader/elf.h"

#include "images.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

namespace flick::vmm {
namespace {

using namespace testing;

Bytes read_env_file(const char* var) {
  const char* path = std::getenv(var);
  if (!path || !*path) return {};
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  Bytes b(static_cast<size_t>(in.tellg()));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(b.size()));
  return in ? b : Bytes{};
}

TEST(RealKernel, BzImage) {
  Bytes file = read_env_file("FLICK_TEST_KERNEL");
  ASSERT_FALSE(file.empty()) << "set FLICK_TEST_KERNEL to a bzImage (real_kernel_test.py does)";
  auto hdr = parse_bzimage_header(file);
  ASSERT_TRUE(hdr.ok()) << hdr.error().message;
  EXPECT_GE(hdr->version, 0x020c);
  EXPECT_TRUE(hdr->xloadflags & kXlfKernel64);
  EXPECT_TRUE(hdr->relocatable_kernel);
  EXPECT_NE(hdr->init_size, 0u);

  auto mem = make_memory(512 << 20);
  auto k = load_kernel(mem, file);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->mode, EntryMode::Long64);
  EXPECT_EQ(k->entry.value, k->kernel_start.value + 0x200);
  EXPECT_EQ(k->kernel_start.value % hdr->kernel_alignment, 0u);
  Bytes initrd(1 << 20);
  auto regs = write_boot_params(mem, *k, {"console=ttyS0", initrd, 0});
  ASSERT_TRUE(regs.ok()) << regs.error().message;
  EXPECT_EQ(at<uint16_t>(mem, layout::kZeroPage + 0x206), hdr->version);
}

TEST(RealKernel, Vmlinux) {
  Bytes file = read_env_file("FLICK_TEST_VMLINUX");
  ASSERT_FALSE(file.empty()) << "set FLICK_TEST_VMLINUX to an ELF vmlinux (real_kernel_test.py does)";
  auto image = parse_elf(file);
  ASSERT_TRUE(image.ok()) << image.error().message;
  EXPECT_TRUE(image->is_64bit);
  auto mem = make_memory(512 << 20);
  auto pvh = load_kernel(mem, file, {EntryMode::Pvh32});
  ASSERT_TRUE(pvh.ok()) << pvh.error().message;
  auto long64 = load_kernel(mem, file, {EntryMode::Long64});
  ASSERT_TRUE(long64.ok()) << long64.error().message;
  EXPECT_EQ(long64->mode, EntryMode::Long64);
  EXPECT_EQ(long64->entry.value, *elf_physical_entry(*image));
  EXPECT_LT(long64->entry.value, long64->kernel_end.value);
  if (image->pvh_entry) {
    EXPECT_EQ(pvh->mode, EntryMode::Pvh32);
    EXPECT_EQ(pvh->entry.value, *image->pvh_entry);
  }
  ASSERT_TRUE(write_boot_params(mem, *pvh, {"console=ttyS0", std::nullopt, 0}).ok());
}

}  // namespace
}  // namespace flick::vmm
