#include "vmm/loader/bzimage.h"

#include "images.h"

#include <gtest/gtest.h>

namespace flick::vmm {
namespace {

using namespace testing;

// Loads `image` into 64 MiB and expects a failure of class `code` whose message says `what`.
void expect_rejected(const Bytes& image, Errc code, const std::string& what,
                     uint64_t mem_size = 64 << 20) {
  auto mem = make_memory(mem_size);
  auto r = load_bzimage(mem, image);
  ASSERT_FALSE(r.ok()) << "expected a failure mentioning: " << what;
  EXPECT_EQ(r.error().code, code) << r.error().message;
  EXPECT_NE(r.error().message.find(what), std::string::npos) << r.error().message;
}

TEST(BzImage, LoadsRelocatableKernelAtPrefAddress) {
  auto mem = make_memory(64 << 20);
  Bytes image = make_bzimage(default_header(), 0x3000);
  auto k = load_bzimage(mem, image);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->mode, EntryMode::Long64);
  EXPECT_EQ(k->kernel_start.value, 0x1000000u);
  EXPECT_EQ(k->entry.value, 0x1000200u);
  EXPECT_EQ(k->kernel_end.value, 0x1000000u + 0x400000u);  // init_size beyond the payload
  ASSERT_TRUE(k->setup.has_value());
  EXPECT_EQ(k->setup->version, 0x020f);
  // The payload (after 5 sectors) is what sits at the load address.
  Bytes loaded(0x3000);
  ASSERT_TRUE(mem.read(GuestAddress{0x1000000}, loaded).ok());
  EXPECT_TRUE(std::equal(loaded.begin(), loaded.end(), image.begin() + 5 * 512));
  EXPECT_EQ(at<uint8_t>(mem, 0x1003000), 0);  // nothing written past the payload
}

TEST(BzImage, AlignsPrefAddressUpToKernelAlignment) {
  auto h = default_header();
  h.pref_address = 0x1100000;
  auto mem = make_memory(64 << 20);
  auto k = load_bzimage(mem, make_bzimage(h));
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->kernel_start.value, 0x1200000u);
  EXPECT_EQ(k->entry.value, 0x1200200u);
}

TEST(BzImage, NonRelocatableGoesAt1MiBAndReservesItsRunAddress) {
  auto h = default_header();
  h.relocatable_kernel = 0;
  h.kernel_alignment = 3;  // ignored when not relocatable
  auto mem = make_memory(64 << 20);
  auto k = load_bzimage(mem, make_bzimage(h));
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->kernel_start.value, 0x100000u);
  EXPECT_EQ(k->entry.value, 0x100200u);
  // It decompresses itself to pref_address and needs init_size from there.
  EXPECT_EQ(k->kernel_end.value, 0x1000000u + 0x400000u);
}

TEST(BzImage, SetupSectsZeroMeansFour) {
  auto h = default_header();
  h.setup_sects = 0;
  Bytes image = make_bzimage(h, 0x1000);
  auto plan = plan_bzimage(h, image.size());
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->payload_offset, 5u * 512);
  h.setup_sects = 30;
  plan = plan_bzimage(h, make_bzimage(h, 0x1000).size());
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->payload_offset, 31u * 512);
  EXPECT_EQ(plan->payload_size, 0x1000u);
}

TEST(BzImage, ZeroesFieldsPastTheDeclaredHeaderEnd) {
  auto h = default_header();
  h.jump = 0x66eb;  // header ends at 0x268: no kernel_info_offset (protocol 2.12-2.14)
  h.kernel_info_offset = 0xdeadbeef;
  auto parsed = parse_bzimage_header(make_bzimage(h));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->kernel_info_offset, 0u);
  EXPECT_EQ(parsed->init_size, 0x400000u);
}

TEST(BzImage, RejectsTruncatedFiles) {
  Bytes image = make_bzimage(default_header());
  expect_rejected(Bytes(image.begin(), image.begin() + 0x200), Errc::malformed, "truncated");
  expect_rejected(Bytes(image.begin(), image.begin() + 5 * 512), Errc::malformed,
                  "real-mode setup");
  expect_rejected(Bytes(image.begin(), image.begin() + 5 * 512 + 0x200), Errc::malformed,
                  "too short to hold the 64-bit entry");
  // syssize promises more than the file holds.
  expect_rejected(Bytes(image.begin(), image.end() - 16), Errc::malformed, "syssize");
}

TEST(BzImage, RejectsBadMagic) {
  auto h = default_header();
  h.boot_flag = 0x1234;
  expect_rejected(make_bzimage(h), Errc::malformed, "boot flag 0xaa55");
  h = default_header();
  h.header = 0x12345678;
  expect_rejected(make_bzimage(h), Errc::malformed, "HdrS");
}

TEST(BzImage, RejectsOldProtocolsAndKernelsWithout64BitEntry) {
  auto h = default_header();
  h.version = 0x020b;
  expect_rejected(make_bzimage(h), Errc::unsupported, "boot protocol 2.11 is older than 2.12");
  h = default_header();
  h.xloadflags = 0;
  expect_rejected(make_bzimage(h), Errc::unsupported, "XLF_KERNEL_64");
  h = default_header();
  h.loadflags = 0;
  expect_rejected(make_bzimage(h), Errc::unsupported, "zImage");
  h = default_header();
  h.jump = 0x50eb;  // header "ends" at 0x252, before init_size
  expect_rejected(make_bzimage(h), Errc::malformed, "init_size");
}

TEST(BzImage, RejectsBadAlignmentAndOverflowingAddresses) {
  auto h = default_header();
  h.kernel_alignment = 0x300000;
  expect_rejected(make_bzimage(h), Errc::malformed, "kernel_alignment 0x300000");
  h = default_header();
  h.pref_address = ~uint64_t{0} - 0x1000;
  expect_rejected(make_bzimage(h), Errc::malformed, "overflows");
}

TEST(BzImage, RejectsKernelThatDoesNotFitInMemory) {
  auto h = default_header();
  h.init_size = 100 << 20;
  expect_rejected(make_bzimage(h), Errc::no_memory, "0x1000000..0x7400000");
  // A pref_address in the MMIO hole is not RAM either.
  h = default_header();
  h.pref_address = 0xc0000000;
  expect_rejected(make_bzimage(h), Errc::no_memory, "give the machine more memory",
                  uint64_t{4} << 30);
}

}  // namespace
}  // namespace flick::vmm
