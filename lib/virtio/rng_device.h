// RngDevice: virtio-rng / entropy device (virtio 1.2 §5.4), fed by the host's getrandom(2).
#pragma once

#include "virtio/device.h"
#include "virtio/io_thread.h"

#include <memory>

namespace flick::virtio {

class RngDevice : public VirtioDevice {
 public:
  // At most this many bytes go into one request, however large its buffers.
  static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;

  explicit RngDevice(uint16_t queue_size = 256) : queue_size_(queue_size) {}
  ~RngDevice() override { reset(); }

  uint32_t device_type() const override;
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {queue_size_}; }
  void read_config(uint64_t, std::span<uint8_t> data) const override {
    std::fill(data.begin(), data.end(), uint8_t{0});  // no configuration space
  }
  Result<void> activate(GuestMemory& mem, uint64_t acked_features, std::vector<ActiveQueue> queues,
                        std::shared_ptr<VirtioInterrupt> interrupt) override;
  void reset() override;
  // Every request is answered as it is popped: once the I/O thread has drained the queue,
  // nothing is in flight.
  Result<void> quiesce() override;

 private:
  void process_queue();
  uint32_t fill(const DescriptorChain& chain);

  uint16_t queue_size_;
  GuestMemory* mem_ = nullptr;
  std::unique_ptr<ActiveQueue> queue_;
  std::shared_ptr<VirtioInterrupt> interrupt_;
  std::unique_ptr<IoThread> thread_;
};

}  // namespace flick::virtio
