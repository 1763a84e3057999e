// MmioTransport: the virtio-over-MMIO register protocol (virtio 1.2 §4.2.2, version 2 only).
//
// It sits on the MMIO bus as a BusDevice, negotiates features (never accepting a bit the device
// did not offer), collects queue configuration, and on DRIVER_OK validates the queues and
// activates the device. Writing 0 to Status resets the device.
//
// QueueNotify: each queue has an eventfd the device's I/O thread waits on. The VMM should
// register it with KVM_IOEVENTFD at (window base + 0x50, 4 bytes, datamatch = queue index) so
// notifications never exit to userspace; a QueueNotify write that does reach write() signals
// the same eventfd, so both paths behave the same.
#pragma once

#include "base/bus_device.h"
#include "base/event_fd.h"
#include "base/guest_memory.h"
#include "base/interrupt.h"
#include "virtio/device.h"
#include "virtio/queue.h"

#include <flick/result.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace flick::virtio {

class MmioTransport : public BusDevice {
 public:
  static Result<std::unique_ptr<MmioTransport>> create(std::shared_ptr<VirtioDevice> device,
                                                       GuestMemory* mem,
                                                       std::shared_ptr<Interrupt> irq);
  ~MmioTransport() override;

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // (queue index, eventfd) for KVM_IOEVENTFD registration.
  std::vector<std::pair<uint32_t, int>> queue_notifiers() const;

  uint32_t status() const;
  uint32_t interrupt_status() const { return interrupt_status_.load(); }
  uint64_t acked_features() const;
  // One line for debugging: status, interrupt status, and each ready queue's ring indices.
  std::string describe() const;
  VirtioDevice& device() { return *device_; }

  // The registers, for snapshots. Together with guest memory (where the rings are) they are
  // the device's whole state once VirtioDevice::quiesce() has returned.
  struct State {
    uint64_t driver_features = 0;
    uint64_t acked = 0;
    uint32_t device_features_sel = 0, driver_features_sel = 0, queue_sel = 0;
    uint32_t status = 0;
    uint32_t config_generation = 0;
    uint32_t interrupt_status = 0;
    std::vector<QueueConfig> queues;
  };
  // Quiesces the device (the guest's vCPUs must be paused) and returns the registers; once
  // guest memory is saved too, end_save() lets the device take host-side work again.
  Result<State> save();
  void end_save();
  // Into a fresh transport of the same device kind over the saved guest memory: sets the
  // registers and, when the driver had set DRIVER_OK, activates the device on the saved queues.
  Result<void> load(const State& state);

 private:
  class Signals;
  MmioTransport() = default;
  uint32_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  void activate();
  void reset();
  QueueConfig* selected_queue();
  void raise(uint32_t bits);
  void set_needs_reset();

  std::shared_ptr<VirtioDevice> device_;
  GuestMemory* mem_ = nullptr;
  std::shared_ptr<Interrupt> irq_;
  std::shared_ptr<Signals> signals_;
  std::vector<EventFd> notify_;

  // Status writes (activate, reset) from any number of vCPUs run one at a time. Never taken
  // by a device thread, so holding it while a device joins its thread cannot deadlock.
  std::mutex lifecycle_mu_;
  mutable std::mutex mu_;  // registers (vCPU threads) vs device_failed (I/O thread)
  uint64_t offered_ = 0;
  uint64_t driver_features_ = 0;  // as written by the driver
  uint64_t acked_ = 0;            // accepted at FEATURES_OK
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint32_t queue_sel_ = 0;
  uint32_t status_ = 0;
  uint32_t config_generation_ = 0;
  bool active_ = false;
  std::vector<QueueConfig> queues_;
  std::atomic<uint32_t> interrupt_status_{0};
};

}  // namespace flick::virtio
