#include "virtio/mmio_transport.h"
#include "virtio_test_util.h"

#include <poll.h>

namespace flick::virtio::testing {
namespace {

using namespace mmio;

// A device that records what the transport does to it.
class RecordingDevice : public VirtioDevice {
 public:
  uint32_t device_type() const override { return 42; }
  uint64_t features() const override { return (1ull << 3) | kFeatureRingEventIdx; }
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 8}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override {
    for (size_t i = 0; i < data.size(); i++)
      data[i] = offset + i < sizeof config ? config[offset + i] : 0;
  }
  void write_config(uint64_t offset, std::span<const uint8_t> data) override {
    for (size_t i = 0; i < data.size() && offset + i < sizeof config; i++) config[offset + i] = data[i];
  }
  Result<void> activate(GuestMemory&, uint64_t acked, std::vector<ActiveQueue> queues,
                        std::shared_ptr<VirtioInterrupt> irq) override {
    if (fail_activate) return make_error(Errc::io, "refused");
    activations++;
    acked_features = acked;
    active_queues = std::move(queues);
    interrupt = std::move(irq);
    return {};
  }
  void reset() override {
    resets++;
    active_queues.clear();
    interrupt.reset();
  }

  uint8_t config[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  bool fail_activate = false;
  int activations = 0;
  int resets = 0;
  uint64_t acked_features = 0;
  std::vector<ActiveQueue> active_queues;
  std::shared_ptr<VirtioInterrupt> interrupt;
};

class TransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem = make_memory();
    dev = std::make_shared<RecordingDevice>();
    irq = std::make_shared<CountingInterrupt>();
    auto t = MmioTransport::create(dev, &mem, irq);
    ASSERT_TRUE(t.ok());
    transport = std::move(t).value();
  }
  GuestMemory mem;
  std::shared_ptr<RecordingDevice> dev;
  std::shared_ptr<CountingInterrupt> irq;
  std::unique_ptr<MmioTransport> transport;
  MockQueue q0{mem, GuestAddress{0x1000}, 16};
  MockQueue q1{mem, GuestAddress{0x3000}, 8};
};

TEST_F(TransportTest, IdentityRegisters) {
  EXPECT_EQ(mmio_read(*transport, kMagicValue), 0x74726976u);
  EXPECT_EQ(mmio_read(*transport, kVersionReg), 2u);
  EXPECT_EQ(mmio_read(*transport, kDeviceId), 42u);
  mmio_write(*transport, kDeviceFeaturesSel, 1);
  EXPECT_EQ(mmio_read(*transport, kDeviceFeatures), 1u);  // VERSION_1 is bit 32
  mmio_write(*transport, kDeviceFeaturesSel, 0);
  EXPECT_EQ(mmio_read(*transport, kDeviceFeatures), (1u << 3) | (1u << 29));
  mmio_write(*transport, kQueueSel, 1);
  EXPECT_EQ(mmio_read(*transport, kQueueNumMax), 8u);
  mmio_write(*transport, kQueueSel, 2);
  EXPECT_EQ(mmio_read(*transport, kQueueNumMax), 0u);  // no such queue
}

TEST_F(TransportTest, ConfigSpaceAnyWidth) {
  uint8_t b[2];
  transport->read(kConfig + 2, b);
  EXPECT_EQ(b[0], 3);
  EXPECT_EQ(b[1], 4);
  uint8_t w = 99;
  transport->write(kConfig + 7, std::span(&w, 1));
  EXPECT_EQ(dev->config[7], 99);
}

TEST_F(TransportTest, NarrowRegisterAccessIsIgnored) {
  uint8_t b[2] = {0xff, 0xff};
  transport->read(kMagicValue, b);
  EXPECT_EQ(b[0], 0);
  transport->write(kStatus, std::span<const uint8_t>(b, 1));
  EXPECT_EQ(transport->status(), 0u);
}

TEST_F(TransportTest, ActivatesWithNegotiatedFeatures) {
  uint64_t want = kFeatureVersion1 | kFeatureRingEventIdx;
  uint32_t s = init_device(*transport, want, {&q0, &q1});
  EXPECT_EQ(s, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_EQ(dev->activations, 1);
  EXPECT_EQ(dev->acked_features, want);
  ASSERT_EQ(dev->active_queues.size(), 2u);
  EXPECT_EQ(dev->active_queues[1].queue.size(), 8);
}

TEST_F(TransportTest, RefusesFeaturesNotOffered) {
  uint32_t s = init_device(*transport, kFeatureVersion1 | (1ull << 7), {&q0, &q1});
  EXPECT_FALSE(s & kStatusFeaturesOk);
  EXPECT_EQ(dev->activations, 0);
  EXPECT_EQ(transport->acked_features(), 0u);
}

TEST_F(TransportTest, RefusesLegacyDriver) {
  uint32_t s = init_device(*transport, 1ull << 3, {&q0, &q1});
  EXPECT_FALSE(s & kStatusFeaturesOk);
  EXPECT_EQ(dev->activations, 0);
}

TEST_F(TransportTest, DriverOkWithoutFeaturesOkDoesNotActivate) {
  mmio_write(*transport, kStatus, kStatusAcknowledge);
  mmio_write(*transport, kStatus, kStatusAcknowledge | kStatusDriver);
  mmio_write(*transport, kStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
  EXPECT_EQ(dev->activations, 0);
  EXPECT_FALSE(transport->status() & kStatusDriverOk);
}

TEST_F(TransportTest, DriverCannotClearBitsOrSetNeedsReset) {
  mmio_write(*transport, kStatus, kStatusAcknowledge | kStatusDriver);
  mmio_write(*transport, kStatus, kStatusAcknowledge);
  EXPECT_EQ(transport->status(), kStatusAcknowledge | kStatusDriver);
  mmio_write(*transport, kStatus, kStatusAcknowledge | kStatusDriver | kStatusNeedsReset);
  EXPECT_EQ(transport->status(), kStatusAcknowledge | kStatusDriver);
}

TEST_F(TransportTest, BadRingSetsNeedsResetAndRaisesConfigInterrupt) {
  // Misaligned descriptor table for queue 1.
  MockQueue bad(mem, GuestAddress{0x5008}, 8);
  uint32_t s = init_device(*transport, kFeatureVersion1, {&q0, &bad});
  EXPECT_TRUE(s & kStatusNeedsReset);
  EXPECT_EQ(dev->activations, 0);
  EXPECT_EQ(irq->count(), 1);
  EXPECT_EQ(transport->interrupt_status() & kInterruptConfigChange, kInterruptConfigChange);
}

TEST_F(TransportTest, DeviceFailureSetsNeedsReset) {
  init_device(*transport, kFeatureVersion1, {&q0, &q1});
  ASSERT_TRUE(dev->interrupt);
  dev->interrupt->device_failed();
  EXPECT_TRUE(transport->status() & kStatusNeedsReset);
  EXPECT_EQ(mmio_read(*transport, kInterruptStatus), kInterruptConfigChange);
  mmio_write(*transport, kInterruptAck, kInterruptConfigChange);
  EXPECT_EQ(mmio_read(*transport, kInterruptStatus), 0u);
}

TEST_F(TransportTest, UsedBufferInterruptAndConfigGeneration) {
  init_device(*transport, kFeatureVersion1, {&q0, &q1});
  dev->interrupt->used_buffer(0);
  EXPECT_EQ(irq->count(), 1);
  EXPECT_EQ(mmio_read(*transport, kInterruptStatus), kInterruptUsedBuffer);
  uint32_t gen = mmio_read(*transport, kConfigGeneration);
  dev->interrupt->config_changed();
  EXPECT_EQ(mmio_read(*transport, kConfigGeneration), gen + 1);
  EXPECT_EQ(mmio_read(*transport, kInterruptStatus), kInterruptUsedBuffer | kInterruptConfigChange);
}

TEST_F(TransportTest, QueueNotifyWriteSignalsTheIoeventfd) {
  auto notifiers = transport->queue_notifiers();
  ASSERT_EQ(notifiers.size(), 2u);
  EXPECT_EQ(notifiers[1].first, 1u);
  init_device(*transport, kFeatureVersion1, {&q0, &q1});
  EXPECT_EQ(dev->active_queues[1].notify_fd, notifiers[1].second);
  notify(*transport, 1);
  notify(*transport, 7);  // no such queue: ignored
  pollfd p{notifiers[1].second, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 1);
  pollfd p0{notifiers[0].second, POLLIN, 0};
  EXPECT_EQ(::poll(&p0, 1, 0), 0);
}

TEST_F(TransportTest, WriteZeroResetsDeviceAndRegisters) {
  init_device(*transport, kFeatureVersion1, {&q0, &q1});
  mmio_write(*transport, kStatus, 0);
  EXPECT_EQ(dev->resets, 1);
  EXPECT_EQ(transport->status(), 0u);
  mmio_write(*transport, kQueueSel, 0);
  EXPECT_EQ(mmio_read(*transport, kQueueReady), 0u);
  // And it can be brought up again.
  init_device(*transport, kFeatureVersion1, {&q0, &q1});
  EXPECT_EQ(dev->activations, 2);
}

TEST_F(TransportTest, QueueRegistersLockedAfterDriverOk) {
  init_device(*transport, kFeatureVersion1, {&q0, &q1});
  mmio_write(*transport, kQueueSel, 0);
  mmio_write(*transport, kQueueReady, 0);
  EXPECT_EQ(mmio_read(*transport, kQueueReady), 1u);
}

TEST_F(TransportTest, ActivationFailureSetsNeedsReset) {
  dev->fail_activate = true;
  uint32_t s = init_device(*transport, kFeatureVersion1, {&q0, &q1});
  EXPECT_TRUE(s & kStatusNeedsReset);
}

}  // namespace
}  // namespace flick::virtio::testing
