// VirtioDevice: what a virtio device implements, independent of the transport (virtio 1.2 §2).
//
// The transport (MMIO today) owns the register protocol and hands the device, on DRIVER_OK,
// the negotiated features, the validated queues with their notify eventfds, and a
// VirtioInterrupt to report used buffers and faults. Devices do their work on their own I/O
// thread (see IoThread) and never on the vCPU thread that writes the registers.
#pragma once

#include "base/guest_memory.h"
#include "virtio/queue.h"

#include <flick/result.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace flick::virtio {

// Implemented by the transport; safe to call from the device's I/O thread.
class VirtioInterrupt {
 public:
  virtual ~VirtioInterrupt() = default;
  // The device put buffers in queue `queue`'s used ring and the driver wants to know.
  virtual void used_buffer(uint32_t queue) = 0;
  // The device configuration space changed.
  virtual void config_changed() = 0;
  // The device hit an error it cannot recover from without a reset (§2.1.2): sets
  // DEVICE_NEEDS_RESET and raises a configuration change interrupt.
  virtual void device_failed() = 0;
};

// One queue handed to the device at activation.
struct ActiveQueue {
  VirtQueue queue;
  int notify_fd = -1;  // eventfd the driver's QueueNotify writes signal; owned by the transport
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual uint32_t device_type() const = 0;
  // Feature bits the device offers (VIRTIO_F_VERSION_1 is added by the transport).
  virtual uint64_t features() const = 0;
  // Largest size of each queue; the vector's length is the number of queues.
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;

  // Device configuration space (§4.2.2 offset 0x100 onwards). Out-of-range bytes read as zero
  // and writes to them are ignored.
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;
  virtual void write_config(uint64_t offset, std::span<const uint8_t> data) {
    (void)offset;
    (void)data;
  }

  // Starts the device with the driver's accepted features. On failure the transport sets
  // DEVICE_NEEDS_RESET.
  virtual Result<void> activate(GuestMemory& mem, uint64_t acked_features,
                                std::vector<ActiveQueue> queues,
                                std::shared_ptr<VirtioInterrupt> interrupt) = 0;
  // Stops the device's I/O and forgets the queues; it may be activated again. Must return only
  // once the device no longer touches guest memory.
  virtual void reset() = 0;

  // For a snapshot, with the guest's vCPUs paused: returns once every buffer the device took
  // from its queues is back in a used ring, so that the rings in guest memory hold the queues'
  // whole state (a device activated on them again starts at their used index). The device
  // keeps serving the guest, but takes no work from the host side (frames arriving on a TAP)
  // until end_quiesce(), so guest memory holds still while it is saved. Devices that cannot
  // (yet) say so refuse.
  virtual Result<void> quiesce() {
    return make_error(Errc::unsupported, "flick cannot save the state of this virtio device yet");
  }
  virtual void end_quiesce() {}
};

}  // namespace flick::virtio
