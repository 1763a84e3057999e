#include "virtio/rng_device.h"
#include "virtio_test_util.h"

namespace flick::virtio::testing {
namespace {

TEST(RngDeviceTest, FillsWritableBuffersWithRandomBytes) {
  GuestMemory mem = make_memory();
  auto dev = std::make_shared<RngDevice>(16);
  auto irq = std::make_shared<CountingInterrupt>();
  MockQueue mq(mem, GuestAddress{0x1000}, 16);
  auto t = MmioTransport::create(dev, &mem, irq);
  ASSERT_TRUE(init_device(**t, kFeatureVersion1, {&mq}) & kStatusDriverOk);
  GuestArena arena(0x100000, 0x800000);
  auto a = arena.alloc(64), b = arena.alloc(64);
  (void)mem.fill(a, 64, std::byte{0});
  (void)mem.fill(b, 64, std::byte{0});
  mq.add_chain({{a, 32, true}, {b, 64, true}});
  notify(**t, 0);
  ASSERT_TRUE(eventually([&] { return mq.used_idx() == 1; }));
  EXPECT_EQ(mq.used(0).len, 96u);
  std::vector<uint8_t> got(64);
  (void)mem.read(b, std::as_writable_bytes(std::span(got)));
  EXPECT_NE(got, std::vector<uint8_t>(64, 0));  // 2^-512 chance of a false failure
  EXPECT_TRUE(irq->wait_for(1));
}

TEST(RngDeviceTest, CapsHugeRequestsAndSkipsReadableOnes) {
  GuestMemory mem = make_memory();
  auto dev = std::make_shared<RngDevice>(16);
  auto irq = std::make_shared<CountingInterrupt>();
  MockQueue mq(mem, GuestAddress{0x1000}, 16);
  auto t = MmioTransport::create(dev, &mem, irq);
  ASSERT_TRUE(init_device(**t, kFeatureVersion1, {&mq}) & kStatusDriverOk);
  GuestArena arena(0x100000, 0x800000);
  mq.add_chain({{arena.alloc(1 << 20), 1 << 20, true}});
  mq.add_chain({{arena.alloc(64), 64, false}});  // nothing to fill
  auto bad = arena.alloc(16);
  mq.set_desc(5, bad.value, 16, kDescNext, 5);  // self loop
  mq.publish(5);
  notify(**t, 0);
  ASSERT_TRUE(eventually([&] { return mq.used_idx() == 3; }));
  EXPECT_EQ(mq.used(0).len, RngDevice::kMaxBytesPerRequest);
  EXPECT_EQ(mq.used(1).len, 0u);
  EXPECT_EQ(mq.used(2).len, 0u);
}

TEST(RngDeviceTest, ConcurrentStatusWritesFromTwoVcpus) {
  // A guest racing resets and initialisations on two vCPUs must not crash or wedge the VMM.
  GuestMemory mem = make_memory();
  auto dev = std::make_shared<RngDevice>(16);
  MockQueue mq(mem, GuestAddress{0x1000}, 16);
  auto t = MmioTransport::create(dev, &mem, std::make_shared<CountingInterrupt>()).value();
  auto vcpu = [&] {
    for (int i = 0; i < 100; i++) {
      init_device(*t, kFeatureVersion1, {&mq});
      notify(*t, 0);
      mmio_write(*t, mmio::kStatus, 0);
    }
  };
  std::thread a(vcpu), b(vcpu);
  a.join();
  b.join();
  // Still usable afterwards.
  mq = MockQueue(mem, GuestAddress{0x1000}, 16);
  ASSERT_TRUE(init_device(*t, kFeatureVersion1, {&mq}) & kStatusDriverOk);
  GuestArena arena(0x100000, 0x100000);
  mq.add_chain({{arena.alloc(16), 16, true}});
  notify(*t, 0);
  EXPECT_TRUE(eventually([&] { return mq.used_idx() == 1; }));
}

}  // namespace
}  // namespace flick::virtio::testing
