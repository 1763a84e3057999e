#include "vmm/loader/elf.h"

#include "images.h"

#include <gtest/gtest.h>

namespace flick::vmm {
namespace {

using namespace testing;

constexpr uint64_t kMem = 64 << 20;

Segment load_seg(uint64_t paddr, Bytes data, uint64_t mem_size, uint64_t vaddr = 0) {
  Segment s;
  s.paddr = paddr;
  s.vaddr = vaddr;
  s.data = std::move(data);
  s.mem_size = mem_size;
  return s;
}

Segment note_seg(Bytes data) {
  Segment s;
  s.type = PT_NOTE;
  s.data = std::move(data);
  return s;
}

void expect_rejected(const Bytes& image, Errc code, const std::string& what) {
  auto mem = make_memory(kMem);
  auto r = load_elf(mem, image, EntryMode::Pvh32);
  ASSERT_FALSE(r.ok()) << "expected a failure mentioning: " << what;
  EXPECT_EQ(r.error().code, code) << r.error().message;
  EXPECT_NE(r.error().message.find(what), std::string::npos) << r.error().message;
}

TEST(Elf, LoadsSegmentsAtPhysicalAddressesAndZeroesBss) {
  auto mem = make_memory(kMem);
  ASSERT_TRUE(mem.fill(GuestAddress{0x200000}, 0x200000, std::byte{0xaa}).ok());
  Bytes text = pattern(0x1800, 3), data = pattern(0x100, 9);
  Bytes image = make_elf<true>(0x200010, {load_seg(0x200000, text, 0x1800),
                                          load_seg(0x300000, data, 0x2000)});
  auto k = load_elf(mem, image, EntryMode::Long64);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->mode, EntryMode::Long64);
  EXPECT_EQ(k->entry.value, 0x200010u);
  EXPECT_EQ(k->kernel_start.value, 0x200000u);
  EXPECT_EQ(k->kernel_end.value, 0x302000u);
  EXPECT_FALSE(k->setup.has_value());
  Bytes got(0x1800);
  ASSERT_TRUE(mem.read(GuestAddress{0x200000}, got).ok());
  EXPECT_EQ(got, text);
  EXPECT_EQ(at<uint8_t>(mem, 0x300000 + 0xff), static_cast<uint8_t>(0xff + 9));
  EXPECT_EQ(at<uint8_t>(mem, 0x300100), 0);    // bss zeroed...
  EXPECT_EQ(at<uint8_t>(mem, 0x301fff), 0);
  EXPECT_EQ(at<uint8_t>(mem, 0x201800), 0xaa);  // ...but nothing else touched
}

TEST(Elf, TranslatesAVirtualEntryThroughItsSegment) {
  auto mem = make_memory(kMem);
  Bytes image = make_elf<true>(
      0xffffffff81000100, {load_seg(0x1000000, pattern(0x1000, 0), 0x1000, 0xffffffff81000000)});
  auto k = load_elf(mem, image, EntryMode::Long64);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->entry.value, 0x1000100u);
}

TEST(Elf, UsesThePvhNoteWhenPreferredAnd64BitEntryOtherwise) {
  for (size_t width : {4, 8}) {
    Bytes image = make_elf<true>(0x1000000, {load_seg(0x1000000, pattern(0x1000, 0), 0x1000),
                                             note_seg(xen_note(6, le_bytes(0x78756e696c, 6))),
                                             note_seg(xen_note(18, le_bytes(0x1000850, width)))});
    auto mem = make_memory(kMem);
    auto pvh = load_elf(mem, image, EntryMode::Pvh32);
    ASSERT_TRUE(pvh.ok()) << pvh.error().message;
    EXPECT_EQ(pvh->mode, EntryMode::Pvh32);
    EXPECT_EQ(pvh->entry.value, 0x1000850u);
    auto long64 = load_elf(mem, image, EntryMode::Long64);
    ASSERT_TRUE(long64.ok());
    EXPECT_EQ(long64->mode, EntryMode::Long64);
    EXPECT_EQ(long64->entry.value, 0x1000000u);
  }
  // Without the note, PVH is not available and the 64-bit entry is used.
  Bytes plain = make_elf<true>(0x1000000, {load_seg(0x1000000, pattern(0x10, 0), 0x10)});
  auto mem = make_memory(kMem);
  auto k = load_elf(mem, plain, EntryMode::Pvh32);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->mode, EntryMode::Long64);
}

TEST(Elf, Loads32BitPvhGuestsAndRejectsThemWithoutTheNote) {
  Bytes image = make_elf<false>(0x100000, {load_seg(0x100000, pattern(0x200, 1), 0x400),
                                           note_seg(xen_note(18, le_bytes(0x100004, 4)))});
  auto mem = make_memory(kMem);
  auto k = load_elf(mem, image, EntryMode::Long64);  // the only way in is PVH
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->mode, EntryMode::Pvh32);
  EXPECT_EQ(k->entry.value, 0x100004u);
  EXPECT_EQ(at<uint8_t>(mem, 0x100001), 2);
  expect_rejected(make_elf<false>(0x100000, {load_seg(0x100000, pattern(0x200, 1), 0x400)}),
                  Errc::unsupported, "XEN_ELFNOTE_PHYS32_ENTRY");
}

TEST(Elf, RejectsSegmentsOutsideRamOrOverBootData) {
  expect_rejected(make_elf<true>(0x4000000, {load_seg(0x4000000 - 0x800, pattern(0x1000, 0),
                                                      0x1000)}),
                  Errc::no_memory, "segment 0x3fff800..0x4000800");
  expect_rejected(make_elf<true>(0x8000, {load_seg(0x8000, pattern(0x100, 0), 0x100)}),
                  Errc::no_memory, "above 1 MiB");
  // A failed load writes nothing, not even the segments that would have fitted.
  auto mem = make_memory(kMem);
  Bytes two = make_elf<true>(0x200000, {load_seg(0x200000, pattern(0x100, 5), 0x100),
                                        load_seg(0x8000000, pattern(0x100, 0), 0x100)});
  EXPECT_FALSE(load_elf(mem, two, EntryMode::Long64).ok());
  EXPECT_EQ(at<uint8_t>(mem, 0x200000), 0);
}

TEST(Elf, RejectsInconsistentSegments) {
  expect_rejected(make_elf<true>(0x200000, {load_seg(0x200000, pattern(0x200, 0), 0x100)}),
                  Errc::malformed, "p_filesz 0x200 is larger than p_memsz 0x100");
  Segment past_end = load_seg(0x200000, pattern(0x100, 0), 0x100);
  past_end.override_filesz = true;
  past_end.filesz = 0x10000;
  expect_rejected(make_elf<true>(0x200000, {past_end}), Errc::malformed, "outside the");
  Segment wraps = load_seg(0x200000, pattern(0x100, 0), 0x100);
  wraps.override_offset = true;
  wraps.offset = ~uint64_t{0} - 0x10;
  expect_rejected(make_elf<true>(0x200000, {wraps}), Errc::malformed, "file range");
  expect_rejected(make_elf<true>(0x200000, {load_seg(~uint64_t{0} - 0x10, {}, 0x100)}),
                  Errc::malformed, "overflows");
  expect_rejected(make_elf<true>(0x200000, {load_seg(0x200000, pattern(0x100, 0), 0x1000),
                                            load_seg(0x200800, pattern(0x100, 0), 0x100)}),
                  Errc::malformed, "overlap");
  expect_rejected(make_elf<true>(0x900000, {load_seg(0x200000, pattern(0x100, 0), 0x100)}),
                  Errc::malformed, "entry point 0x900000 is in no PT_LOAD segment");
}

TEST(Elf, RejectsBadHeadersAndNotes) {
  Bytes good = make_elf<true>(0x200000, {load_seg(0x200000, pattern(0x100, 0), 0x100)});
  expect_rejected(Bytes(good.begin(), good.begin() + 40), Errc::malformed, "truncated");
  Bytes bad_machine = good;
  bad_machine[18] = std::byte{EM_AARCH64};
  expect_rejected(bad_machine, Errc::unsupported, "not x86-64");
  Bytes bad_phoff = good;
  bad_phoff[32] = std::byte{0xff};  // e_phoff low byte: table now starts past the file
  bad_phoff[33] = std::byte{0xff};
  expect_rejected(bad_phoff, Errc::malformed, "program header table");
  Bytes no_phdrs = good;
  no_phdrs[56] = no_phdrs[57] = std::byte{0};  // e_phnum
  expect_rejected(no_phdrs, Errc::malformed, "no program headers");
  expect_rejected(make_elf<true>(0x200000, {load_seg(0x200000, pattern(0x100, 0), 0x100),
                                            note_seg(xen_note(18, le_bytes(0x200000, 2)))}),
                  Errc::malformed, "2-byte descriptor");
  Bytes cut = xen_note(18, le_bytes(0x200000, 8));
  cut.resize(cut.size() - 4);
  expect_rejected(make_elf<true>(0x200000, {load_seg(0x200000, pattern(0x100, 0), 0x100),
                                            note_seg(cut)}),
                  Errc::malformed, "runs past the end of its PT_NOTE segment");
  expect_rejected(make_elf<true>(0x200000, {load_seg(0x200000, pattern(0x100, 0), 0x100),
                                            note_seg(xen_note(18, le_bytes(0x5000000, 4)))}),
                  Errc::malformed, "PVH entry 0x5000000");
}

}  // namespace
}  // namespace flick::vmm
