// Shared pieces of the virtio tests: guest memory, a counting interrupt, a driver that walks
// the MMIO transport through initialisation.
#pragma once

#include "base/guest_memory.h"
#include "base/interrupt.h"
#include "virtio/mmio_transport.h"
#include "virtio/spec.h"
#include "virtio/testing/mock_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

namespace flick::virtio::testing {

inline GuestMemory make_memory(uint64_t size = 16 << 20) {
  GuestMemory::Range r{0, size};
  auto m = GuestMemory::create(std::span(&r, 1));
  EXPECT_TRUE(m.ok());
  return std::move(m).value();
}

class CountingInterrupt : public Interrupt {
 public:
  void trigger() override {
    std::lock_guard lock(mu_);
    count_++;
    cv_.notify_all();
  }
  int count() {
    std::lock_guard lock(mu_);
    return count_;
  }
  // Waits until at least `n` triggers happened.
  bool wait_for(int n, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return count_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
};

// Polls `cond` until true or the timeout passes.
inline bool eventually(const std::function<bool()>& cond,
                       std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return cond();
}

inline uint32_t mmio_read(BusDevice& d, uint64_t off) {
  uint8_t b[4];
  d.read(off, b);
  uint32_t v;
  std::memcpy(&v, b, 4);
  return v;
}
inline void mmio_write(BusDevice& d, uint64_t off, uint32_t v) {
  uint8_t b[4];
  std::memcpy(b, &v, 4);
  d.write(off, b);
}

// The driver's side of §3.1.1 for a virtio-mmio device: reset, ACK, DRIVER, features,
// FEATURES_OK, queues, DRIVER_OK. Returns the final status register.
inline uint32_t init_device(MmioTransport& t, uint64_t features, std::vector<MockQueue*> queues) {
  using namespace mmio;
  mmio_write(t, kStatus, 0);
  mmio_write(t, kStatus, kStatusAcknowledge);
  mmio_write(t, kStatus, kStatusAcknowledge | kStatusDriver);
  for (uint32_t sel = 0; sel < 2; sel++) {
    mmio_write(t, kDriverFeaturesSel, sel);
    mmio_write(t, kDriverFeatures, static_cast<uint32_t>(features >> (32 * sel)));
  }
  uint32_t s = kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk;
  mmio_write(t, kStatus, s);
  if (!(mmio_read(t, kStatus) & kStatusFeaturesOk)) return mmio_read(t, kStatus);
  for (uint32_t i = 0; i < queues.size(); i++) {
    QueueConfig c = queues[i]->config();
    mmio_write(t, kQueueSel, i);
    mmio_write(t, kQueueNum, c.size);
    mmio_write(t, kQueueDescLow, static_cast<uint32_t>(c.desc_table.value));
    mmio_write(t, kQueueDescHigh, static_cast<uint32_t>(c.desc_table.value >> 32));
    mmio_write(t, kQueueDriverLow, static_cast<uint32_t>(c.avail_ring.value));
    mmio_write(t, kQueueDriverHigh, static_cast<uint32_t>(c.avail_ring.value >> 32));
    mmio_write(t, kQueueDeviceLow, static_cast<uint32_t>(c.used_ring.value));
    mmio_write(t, kQueueDeviceHigh, static_cast<uint32_t>(c.used_ring.value >> 32));
    mmio_write(t, kQueueReady, 1);
  }
  mmio_write(t, kStatus, s | kStatusDriverOk);
  return mmio_read(t, kStatus);
}

inline void notify(MmioTransport& t, uint32_t queue) { mmio_write(t, mmio::kQueueNotify, queue); }

}  // namespace flick::virtio::testing
