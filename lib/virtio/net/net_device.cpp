#include "virtio/net/net_device.h"

#include "virtio/spec.h"

#include <linux/if_tun.h>
#include <liburing.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace flick::virtio {

namespace {
// §5.1.3 feature bits.
constexpr uint64_t kCsum = 1ull << 0;
constexpr uint64_t kGuestCsum = 1ull << 1;
constexpr uint64_t kMac = 1ull << 5;
constexpr uint64_t kGuestTso4 = 1ull << 7;
constexpr uint64_t kGuestTso6 = 1ull << 8;
constexpr uint64_t kGuestEcn = 1ull << 9;
constexpr uint64_t kHostTso4 = 1ull << 11;
constexpr uint64_t kHostTso6 = 1ull << 12;
constexpr uint64_t kHostEcn = 1ull << 13;
constexpr uint64_t kNumBuffersOffset = 10;  // in struct virtio_net_hdr (VERSION_1 layout)
enum Queue { kRx = 0, kTx = 1 };
}  // namespace

std::shared_ptr<NetDevice> NetDevice::create(Tap tap, NetDeviceOptions options) {
  return std::shared_ptr<NetDevice>(new NetDevice(std::move(tap), options));
}

uint32_t NetDevice::device_type() const { return kDeviceNet; }

uint64_t NetDevice::features() const {
  return kCsum | kGuestCsum | kMac | kGuestTso4 | kGuestTso6 | kGuestEcn | kHostTso4 | kHostTso6 |
         kHostEcn | kFeatureRingIndirectDesc | kFeatureRingEventIdx;
}

void NetDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  // §5.1.4: mac[6] first; nothing else is offered.
  for (size_t i = 0; i < data.size(); i++)
    data[i] = offset + i < options_.mac.size() ? options_.mac[offset + i] : 0;
}

Result<void> NetDevice::activate(GuestMemory& mem, uint64_t acked, std::vector<ActiveQueue> queues,
                                 std::shared_ptr<VirtioInterrupt> interrupt) {
  if (queues.size() != 2) return make_error(Errc::invalid_argument, "virtio-net has two queues");
  reset();
  // Offloads the guest accepts on receive are the ones the TAP may hand us.
  unsigned offloads = 0;
  if (acked & kGuestCsum) {
    offloads |= TUN_F_CSUM;
    if (acked & kGuestTso4) offloads |= TUN_F_TSO4;
    if (acked & kGuestTso6) offloads |= TUN_F_TSO6;
    if (acked & kGuestEcn) offloads |= TUN_F_TSO_ECN;
  }
  FLICK_TRY(tap_.set_offloads(offloads));
  FLICK_TRY_ASSIGN(thread_, IoThread::create("virtio-net"));
  mem_ = &mem;
  queues_ = std::move(queues);
  interrupt_ = std::move(interrupt);
  for (int q : {kRx, kTx}) {
    int fd = queues_[q].notify_fd;
    FLICK_TRY(thread_->watch(fd, [this, fd, q] {
      uint64_t n;
      (void)!::read(fd, &n, sizeof n);
      if (q == kRx) {
        watch_tap(false);  // new receive buffers: read the TAP again
      } else {
        process_tx();
      }
    }));
  }
  thread_->post([this] {
    watch_tap(false);
    process_tx();
  });
  return thread_->start();
}

void NetDevice::reset() {
  if (thread_) thread_->stop();
  quiesced_ = false;
  thread_.reset();
  tap_read_watch_ = tap_write_watch_ = 0;
  tx_in_flight_.clear();
  queues_.clear();
  interrupt_.reset();
  mem_ = nullptr;
}

Result<void> NetDevice::quiesce() {
  if (!thread_) return {};
  return thread_->run_until_idle(
      [this] {
        quiesced_ = true;
        if (tap_read_watch_) thread_->unwatch(tap_read_watch_);
        tap_read_watch_ = 0;
        process_tx();
        return tx_in_flight_.size();
      },
      "virtio-net " + tap_.name() + ": waiting for frames in flight");
}

void NetDevice::end_quiesce() {
  if (!thread_) return;
  thread_->post([this] {
    quiesced_ = false;
    watch_tap(false);
  });
}

void NetDevice::watch_tap(bool writable) {
  uint64_t& id = writable ? tap_write_watch_ : tap_read_watch_;
  if (id || (!writable && quiesced_)) return;
  auto r = thread_->watch(
      tap_.fd(), [this, writable] {
        uint64_t& w = writable ? tap_write_watch_ : tap_read_watch_;
        thread_->unwatch(w);
        w = 0;
        if (writable) {
          process_tx();
        } else {
          process_rx();
        }
      },
      writable);
  if (r) id = *r;
}

bool NetDevice::fail_on_ring_error(const Error& e) {
  log_line("virtio-net " + tap_.name() + ": " + e.describe() + "; device needs reset");
  interrupt_->device_failed();
  return false;
}

void NetDevice::process_tx() {
  VirtQueue& q = queues_[kTx].queue;
  if (q.broken()) return;
  bool used = false;
  std::vector<iovec> iov;
  for (;;) {
    auto popped = q.pop_or_enable_notification();
    if (!popped) {
      fail_on_ring_error(popped.error());
      return;
    }
    if (!popped->has_value()) break;
    AvailableChain& a = **popped;
    // A frame is the readable part: virtio_net_hdr then the Ethernet frame. Bad ones are
    // dropped (returned as used), like a NIC drops a bad frame.
    bool sane = a.chain && a.chain->readable_len() > Tap::kVnetHdrSize &&
                a.chain->readable_len() <= Tap::kVnetHdrSize + kMaxFrame;
    if (sane) {
      iov.clear();
      for (const Descriptor& d : a.chain->readable()) {
        auto s = mem_->slice(d.addr, d.len);
        if (s && d.len) iov.push_back({s->data(), s->size()});
      }
      if (thread_->backend() == IoThread::Backend::io_uring && !tx_in_flight_.count(a.head)) {
        auto& held = tx_in_flight_[a.head] = iov;
        uint16_t head = a.head;
        int fd = tap_.fd();
        auto r = thread_->submit(
            [&](io_uring_sqe* sqe) {
              io_uring_prep_writev(sqe, fd, held.data(), static_cast<unsigned>(held.size()), 0);
            },
            [this, head](int) { complete_tx(head); });  // a failed frame is a dropped frame
        if (r) continue;
        tx_in_flight_.erase(a.head);
      }
      ssize_t n = ::writev(tap_.fd(), iov.data(), static_cast<int>(iov.size()));
      if (n < 0 && errno == EAGAIN) {
        q.undo_pop();  // the TAP is full: retry when it drains
        watch_tap(true);
        break;
      }
    }
    (void)q.add_used(a.head, 0);
    used = true;
  }
  if (used && q.needs_interrupt()) interrupt_->used_buffer(kTx);
}

void NetDevice::complete_tx(uint16_t head) {
  tx_in_flight_.erase(head);
  VirtQueue& q = queues_[kTx].queue;
  if (q.broken()) return;
  (void)q.add_used(head, 0);
  if (q.needs_interrupt()) interrupt_->used_buffer(kTx);  // EVENT_IDX keeps this rare
}

void NetDevice::process_rx() {
  VirtQueue& q = queues_[kRx].queue;
  if (q.broken()) return;
  bool used = false;
  std::vector<iovec> iov;
  for (;;) {
    auto popped = q.pop_or_enable_notification();
    if (!popped) {
      fail_on_ring_error(popped.error());
      return;
    }
    // No buffers: stop reading the TAP until the guest posts more (the RX notify).
    if (!popped->has_value()) break;
    AvailableChain& a = **popped;
    if (!a.chain || a.chain->writable_len() <= Tap::kVnetHdrSize) {
      (void)q.add_used(a.head, 0);
      used = true;
      continue;
    }
    iov.clear();
    for (const Descriptor& d : a.chain->writable()) {
      auto s = mem_->slice(d.addr, d.len);
      if (s && d.len) iov.push_back({s->data(), s->size()});
    }
    ssize_t n = ::readv(tap_.fd(), iov.data(), static_cast<int>(iov.size()));
    if (n < 0) {
      q.undo_pop();
      if (errno == EAGAIN) watch_tap(false);
      break;
    }
    // §5.1.6.3.1: without MRG_RXBUF num_buffers is 1; the TAP leaves those bytes alone.
    uint16_t one = 1;
    (void)a.chain->write(*mem_, kNumBuffersOffset, std::as_bytes(std::span(&one, 1)));
    uint64_t len = std::min<uint64_t>(static_cast<uint64_t>(n), a.chain->writable_len());
    (void)q.add_used(a.head, static_cast<uint32_t>(len));
    used = true;
  }
  if (used && q.needs_interrupt()) interrupt_->used_buffer(kRx);
}

}  // namespace flick::virtio
