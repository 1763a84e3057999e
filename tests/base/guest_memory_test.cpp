#include "base/guest_memory.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <cstdint>
#include <fstream>
#include <string>

namespace flick {
namespace {

GuestMemory two_regions() {
  std::array<GuestMemory::Range, 2> r{{{0, 0x10000}, {0x100000, 0x2000}}};
  auto m = GuestMemory::create(r);
  EXPECT_TRUE(m.ok());
  return std::move(m).value();
}

TEST(GuestMemory, ReadsBackWhatWasWritten) {
  auto mem = two_regions();
  ASSERT_TRUE(mem.write_obj(GuestAddress{0x1000}, uint64_t{0x1122334455667788}).ok());
  auto v = mem.read_obj<uint64_t>(GuestAddress{0x1000});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0x1122334455667788u);
  EXPECT_EQ(mem.total_size(), 0x12000u);
}

TEST(GuestMemory, RejectsRangesOutsideOrAcrossRegions) {
  auto mem = two_regions();
  EXPECT_FALSE(mem.read_obj<uint32_t>(GuestAddress{0xfffe}).ok());    // straddles the end
  EXPECT_FALSE(mem.read_obj<uint32_t>(GuestAddress{0x50000}).ok());   // in the gap
  EXPECT_FALSE(mem.read_obj<uint8_t>(GuestAddress{0x102000}).ok());   // one past the end
  EXPECT_FALSE(mem.slice(GuestAddress{~0ull - 2}, 8).ok());            // wraps around
  EXPECT_FALSE(mem.slice(GuestAddress{0}, ~0ull).ok());
  EXPECT_TRUE(mem.read_obj<uint8_t>(GuestAddress{0x101fff}).ok());
  auto e = mem.read_obj<uint32_t>(GuestAddress{0x50000});
  EXPECT_NE(e.error().message.find("0x50000"), std::string::npos);
}

TEST(GuestMemory, MemfdBackingIsOneFileInRegionOrder) {
  std::array<GuestMemory::Range, 2> r{{{0, 0x10000}, {0x100000, 0x2000}}};
  auto mem = GuestMemory::create(r, GuestMemory::Backing::memfd);
  ASSERT_TRUE(mem.ok());
  ASSERT_GE(mem->fd(), 0);
  ASSERT_TRUE(mem->write_obj(GuestAddress{0x100008}, uint32_t{0xfeedf00d}).ok());
  uint32_t v = 0;
  ASSERT_EQ(::pread(mem->fd(), &v, 4, 0x10008), 4);  // second region follows the first
  EXPECT_EQ(v, 0xfeedf00du);
  auto anon = GuestMemory::create(r);
  ASSERT_TRUE(anon.ok());
  EXPECT_EQ(anon->fd(), -1);
}

size_t mapping_count() {
  std::ifstream maps("/proc/self/maps");
  size_t n = 0;
  for (std::string line; std::getline(maps, line);) ++n;
  return n;
}

TEST(GuestMemory, RegionsStart2MiBAlignedInTheHostAndLeaveNoSlackMapped) {
  // KVM backs guest memory with huge pages only where guest and host addresses agree
  // modulo 2 MiB; every region here starts at a 2 MiB-aligned guest address.
  constexpr uint64_t k2M = 2 << 20;
  std::array<GuestMemory::Range, 2> r{{{0, 6 * k2M + 0x3000}, {16 * k2M, 0x1000}}};
  const size_t before = mapping_count();
  for (auto backing : {GuestMemory::Backing::anonymous, GuestMemory::Backing::memfd}) {
    for (int i = 0; i < 50; ++i) {
      auto mem = GuestMemory::create(r, backing);
      ASSERT_TRUE(mem.ok());
      for (const auto& region : mem->regions())
        EXPECT_EQ(reinterpret_cast<uintptr_t>(region.host) % k2M, 0u);
      ASSERT_TRUE(mem->write_obj(GuestAddress{6 * k2M + 0x2ff8}, uint64_t{7}).ok());
      ASSERT_TRUE(mem->write_obj(GuestAddress{16 * k2M + 0xff8}, uint64_t{8}).ok());
    }
  }
  // 100 creations that each left a reserved remainder behind would show here.
  EXPECT_LT(mapping_count(), before + 20);
}

TEST(GuestMemory, RejectsBadLayouts) {
  std::array<GuestMemory::Range, 2> overlap{{{0, 0x2000}, {0x1000, 0x1000}}};
  EXPECT_FALSE(GuestMemory::create(overlap).ok());
  std::array<GuestMemory::Range, 1> unaligned{{{0x10, 0x1000}}};
  EXPECT_FALSE(GuestMemory::create(unaligned).ok());
}

TEST(GuestMemory, SliceIsAViewOfTheSameBytes) {
  auto mem = two_regions();
  auto s = mem.slice(GuestAddress{0x100010}, 16);
  ASSERT_TRUE(s.ok());
  (*s)[3] = std::byte{0xab};
  EXPECT_EQ(*mem.read_obj<uint8_t>(GuestAddress{0x100013}), 0xab);
}

}  // namespace
}  // namespace flick
