#include "vmm/bus.h"

#include <gtest/gtest.h>

#include <vector>

namespace flick::vmm {
namespace {

struct Recorder : BusDevice {
  std::vector<std::pair<uint64_t, size_t>> reads, writes;
  void read(uint64_t offset, std::span<uint8_t> data) override {
    reads.emplace_back(offset, data.size());
    for (auto& b : data) b = 0x5a;
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    writes.emplace_back(offset, data.size());
  }
};

TEST(Bus, DispatchesWithOffsetsRelativeToTheBase) {
  Bus bus("test");
  auto dev = std::make_shared<Recorder>();
  ASSERT_TRUE(bus.insert(dev, 0x1000, 0x10).ok());
  uint8_t buf[4]{};
  EXPECT_TRUE(bus.read(0x1004, buf));
  EXPECT_EQ(buf[3], 0x5a);
  EXPECT_TRUE(bus.write(0x100c, std::span<const uint8_t>(buf, 4)));
  ASSERT_EQ(dev->reads.size(), 1u);
  EXPECT_EQ(dev->reads[0].first, 4u);
  EXPECT_EQ(dev->writes[0].first, 0xcu);
}

TEST(Bus, RejectsAccessesOutsideOrAcrossTheRange) {
  Bus bus("test");
  auto dev = std::make_shared<Recorder>();
  ASSERT_TRUE(bus.insert(dev, 0x1000, 0x10).ok());
  uint8_t buf[4]{};
  EXPECT_FALSE(bus.read(0xfff, std::span<uint8_t>(buf, 1)));
  EXPECT_FALSE(bus.read(0x1010, std::span<uint8_t>(buf, 1)));
  EXPECT_FALSE(bus.read(0x100e, buf));  // straddles the end
  EXPECT_FALSE(bus.write(~0ull - 1, std::span<const uint8_t>(buf, 4)));
  EXPECT_TRUE(dev->reads.empty());
}

TEST(Bus, RefusesOverlappingOrWrappingRanges) {
  Bus bus("test");
  auto dev = std::make_shared<Recorder>();
  ASSERT_TRUE(bus.insert(dev, 0x1000, 0x10).ok());
  EXPECT_FALSE(bus.insert(dev, 0x100f, 1).ok());
  EXPECT_FALSE(bus.insert(dev, 0xff0, 0x11).ok());
  EXPECT_FALSE(bus.insert(dev, 0x800, 0x1000).ok());
  EXPECT_FALSE(bus.insert(dev, ~0ull, 2).ok());
  EXPECT_FALSE(bus.insert(dev, 0x2000, 0).ok());
  EXPECT_TRUE(bus.insert(dev, 0x1010, 0x10).ok());  // adjacent is fine
  EXPECT_TRUE(bus.insert(dev, 0xff0, 0x10).ok());
}

}  // namespace
}  // namespace flick::vmm
