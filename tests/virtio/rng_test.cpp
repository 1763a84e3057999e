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

// A snapshot of a live device: save() drains what the driver queued, and a fresh transport
// loaded with the registers goes on from the same ring positions.
TEST(RngDeviceTest, SavedAndLoadedIntoAFreshTransportItGoesOn) {
  GuestMemory mem = make_memory();
  auto irq = std::make_shared<CountingInterrupt>();
  MockQueue mq(mem, GuestAddress{0x1000}, 16);
  auto t = MmioTransport::create(std::make_shared<RngDevice>(16), &mem, irq).value();
  ASSERT_TRUE(init_device(*t, kFeatureVersion1 | kFeatureRingEventIdx, {&mq}) & kStatusDriverOk);
  GuestArena arena(0x100000, 0x800000);
  mq.add_chain({{arena.alloc(32), 32, true}});
  notify(*t, 0);
  ASSERT_TRUE(eventually([&] { return mq.used_idx() == 1; }));
  mq.add_chain({{arena.alloc(48), 48, true}});  // queued, not yet notified
  auto saved = t->save();
  ASSERT_TRUE(saved.ok()) << saved.error().describe();
  EXPECT_EQ(mq.used_idx(), 2);  // drained before the registers were taken
  EXPECT_EQ(saved->acked, kFeatureVersion1 | kFeatureRingEventIdx);
  t.reset();

  auto again = MmioTransport::create(std::make_shared<RngDevice>(16), &mem, irq).value();
  auto loaded = again->load(*saved);
  ASSERT_TRUE(loaded.ok()) << loaded.error().describe();
  EXPECT_EQ(mmio_read(*again, mmio::kStatus), saved->status);
  EXPECT_TRUE(saved->status & kStatusDriverOk);
  mq.add_chain({{arena.alloc(64), 64, true}});
  notify(*again, 0);
  ASSERT_TRUE(eventually([&] { return mq.used_idx() == 3; }));
  EXPECT_EQ(mq.used(2).len, 64u);
}

TEST(RngDeviceTest, ALoadOfAnotherDevicesStateIsRefused) {
  GuestMemory mem = make_memory();
  auto t = MmioTransport::create(std::make_shared<RngDevice>(16), &mem, std::make_shared<CountingInterrupt>()).value();
  MmioTransport::State two_queues;
  two_queues.queues.resize(2);
  auto r = t->load(two_queues);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("2 queues"), std::string::npos) << r.error().message;
  MmioTransport::State other_size;
  other_size.queues.resize(1);
  other_size.queues[0].max_size = 256;
  r = t->load(other_size);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("another size"), std::string::npos) << r.error().message;
  EXPECT_EQ(mmio_read(*t, mmio::kStatus), 0u);
}

}  // namespace
}  // namespace flick::virtio::testing
