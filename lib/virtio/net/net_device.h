// NetDevice: virtio-net (virtio 1.2 §5.1) on a TAP interface.
//
// Frames move between the rings and the TAP fd straight from guest memory: transmit as a
// batch of io_uring writev operations (one system call per batch; plain writev on the epoll
// fallback), receive with readv when the io_uring poll says the TAP is readable. The
// virtio_net_hdr passes through unchanged since the TAP speaks the same header, which is
// how checksum and TSO offloads work both ways. The device reads from the TAP only when the
// guest has posted receive buffers: a guest that stops reading leaves frames in the kernel's
// bounded TAP queue (which drops when full), never in VMM memory.
#pragma once

#include "virtio/device.h"
#include "virtio/io_thread.h"
#include "virtio/net/tap.h"

#include <sys/uio.h>

#include <array>
#include <map>
#include <memory>

namespace flick::virtio {

struct NetDeviceOptions {
  std::array<uint8_t, 6> mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  uint16_t queue_size = 256;
};

class NetDevice : public VirtioDevice {
 public:
  // Largest frame the guest may send: a 64 KiB TSO segment plus Ethernet and VLAN headers.
  static constexpr uint32_t kMaxFrame = 65550;

  static std::shared_ptr<NetDevice> create(Tap tap, NetDeviceOptions options = {});
  ~NetDevice() override { reset(); }

  uint32_t device_type() const override;
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override {
    return {options_.queue_size, options_.queue_size};
  }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  Result<void> activate(GuestMemory& mem, uint64_t acked_features, std::vector<ActiveQueue> queues,
                        std::shared_ptr<VirtioInterrupt> interrupt) override;
  void reset() override;
  // Stops reading the TAP, sends what the guest queued and waits for frames in flight;
  // end_quiesce() reads the TAP again (frames that arrived meanwhile wait in its queue).
  Result<void> quiesce() override;
  void end_quiesce() override;

  const Tap& tap() const { return tap_; }

 private:
  NetDevice(Tap tap, NetDeviceOptions options) : tap_(std::move(tap)), options_(options) {}
  void process_tx();
  void complete_tx(uint16_t head);
  void process_rx();
  void watch_tap(bool writable);
  bool fail_on_ring_error(const Error& e);

  Tap tap_;
  NetDeviceOptions options_;

  GuestMemory* mem_ = nullptr;
  std::vector<ActiveQueue> queues_;
  std::shared_ptr<VirtioInterrupt> interrupt_;
  std::unique_ptr<IoThread> thread_;
  uint64_t tap_read_watch_ = 0;
  uint64_t tap_write_watch_ = 0;
  // io_uring transmit: iovecs of frames in flight, by head.
  std::map<uint16_t, std::vector<iovec>> tx_in_flight_;
  bool quiesced_ = false;  // on the I/O thread: the TAP is not read
};

}  // namespace flick::virtio
