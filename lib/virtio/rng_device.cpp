#include "virtio/rng_device.h"

#include "virtio/spec.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace flick::virtio {

uint32_t RngDevice::device_type() const { return kDeviceRng; }

uint64_t RngDevice::features() const { return kFeatureRingIndirectDesc | kFeatureRingEventIdx; }

Result<void> RngDevice::activate(GuestMemory& mem, uint64_t, std::vector<ActiveQueue> queues,
                                 std::shared_ptr<VirtioInterrupt> interrupt) {
  if (queues.size() != 1) return make_error(Errc::invalid_argument, "virtio-rng has one queue");
  reset();
  FLICK_TRY_ASSIGN(thread_, IoThread::create("virtio-rng"));
  mem_ = &mem;
  queue_ = std::make_unique<ActiveQueue>(std::move(queues[0]));
  interrupt_ = std::move(interrupt);
  int fd = queue_->notify_fd;
  FLICK_TRY(thread_->watch(fd, [this, fd] {
    uint64_t n;
    (void)!::read(fd, &n, sizeof n);
    process_queue();
  }));
  thread_->post([this] { process_queue(); });
  return thread_->start();
}

void RngDevice::reset() {
  if (thread_) thread_->stop();
  thread_.reset();
  queue_.reset();
  interrupt_.reset();
  mem_ = nullptr;
}

Result<void> RngDevice::quiesce() {
  if (!thread_) return {};
  return thread_->run_until_idle(
      [this] {
        process_queue();
        return size_t{0};
      },
      "virtio-rng: draining its queue");
}

uint32_t RngDevice::fill(const DescriptorChain& chain) {
  uint32_t total = 0;
  for (const Descriptor& d : chain.writable()) {
    uint32_t want = std::min(d.len, kMaxBytesPerRequest - total);
    if (want == 0) break;
    auto s = mem_->slice(d.addr, want);
    if (!s) break;
    size_t done = 0;
    while (done < want) {
      ssize_t n = ::getrandom(s->data() + done, want - done, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return total + static_cast<uint32_t>(done);
      }
      done += static_cast<size_t>(n);
    }
    total += want;
  }
  return total;
}

void RngDevice::process_queue() {
  VirtQueue& q = queue_->queue;
  if (q.broken()) return;
  bool used = false;
  for (;;) {
    auto popped = q.pop_or_enable_notification();
    if (!popped) {
      log_line("virtio-rng: " + popped.error().describe() + "; device needs reset");
      interrupt_->device_failed();
      return;
    }
    if (!popped->has_value()) break;
    AvailableChain& a = **popped;
    uint32_t len = a.chain ? fill(*a.chain) : 0;
    (void)q.add_used(a.head, len);
    used = true;
  }
  if (used && q.needs_interrupt()) interrupt_->used_buffer(0);
}

}  // namespace flick::virtio
