#include "virtio/mmio_transport.h"

#include "base/hex.h"

#include "virtio/io_thread.h"
#include "virtio/spec.h"

#include <cstring>

namespace flick::virtio {

using namespace mmio;

// The device's view of the transport. A raw pointer is enough: the transport resets the device
// (joining its thread) before it is destroyed.
class MmioTransport::Signals : public VirtioInterrupt {
 public:
  explicit Signals(MmioTransport* t) : t_(t) {}
  void used_buffer(uint32_t) override { t_->raise(kInterruptUsedBuffer); }
  void config_changed() override {
    {
      std::lock_guard lock(t_->mu_);
      t_->config_generation_++;
    }
    t_->raise(kInterruptConfigChange);
  }
  void device_failed() override { t_->set_needs_reset(); }

 private:
  MmioTransport* t_;
};

Result<std::unique_ptr<MmioTransport>> MmioTransport::create(std::shared_ptr<VirtioDevice> device,
                                                             GuestMemory* mem,
                                                             std::shared_ptr<Interrupt> irq) {
  if (!device || !mem || !irq)
    return make_error(Errc::invalid_argument, "virtio-mmio transport needs a device, memory and an interrupt");
  std::unique_ptr<MmioTransport> t(new MmioTransport());
  t->device_ = std::move(device);
  t->mem_ = mem;
  t->irq_ = std::move(irq);
  t->offered_ = t->device_->features() | kFeatureVersion1;
  for (uint16_t max : t->device_->queue_max_sizes()) {
    QueueConfig q;
    q.max_size = max;
    q.size = max;
    t->queues_.push_back(q);
    FLICK_TRY_ASSIGN(EventFd e, EventFd::create());
    t->notify_.push_back(std::move(e));
  }
  t->signals_ = std::make_shared<Signals>(t.get());
  return t;
}

MmioTransport::~MmioTransport() {
  // Stop the device thread before the eventfds and signals it uses go away.
  std::lock_guard lifecycle(lifecycle_mu_);
  if (active_) device_->reset();
}

std::vector<std::pair<uint32_t, int>> MmioTransport::queue_notifiers() const {
  std::vector<std::pair<uint32_t, int>> out;
  for (uint32_t i = 0; i < notify_.size(); i++) out.emplace_back(i, notify_[i].fd());
  return out;
}

uint32_t MmioTransport::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

std::string MmioTransport::describe() const {
  std::lock_guard lock(mu_);
  std::string s = "virtio device type " + std::to_string(device_->device_type()) + ": status " +
                  hex(status_) + " interrupt status " + hex(interrupt_status_.load()) +
                  (active_ ? ", active" : ", inactive");
  // The ring indices as the guest sees them (§2.7.6, §2.7.8): avail.idx ahead of used.idx
  // means buffers the device has not returned yet.
  auto index = [&](GuestAddress ring, const char* name) {
    auto flags = mem_->read_obj<uint16_t>(ring);
    auto idx = mem_->read_obj<uint16_t>(GuestAddress{ring.value + 2});
    if (!flags || !idx) return std::string(" ") + name + " unreadable";
    return std::string(" ") + name + ".idx " + std::to_string(*idx) + " " + name + ".flags " + hex(*flags);
  };
  for (size_t i = 0; i < queues_.size(); ++i) {
    const auto& q = queues_[i];
    s += "; queue " + std::to_string(i) + (q.ready ? "" : " not ready");
    if (!q.ready || !active_) continue;
    s += " size " + std::to_string(q.size) + index(q.avail_ring, "avail") + index(q.used_ring, "used");
  }
  return s;
}

uint64_t MmioTransport::acked_features() const {
  std::lock_guard lock(mu_);
  return acked_;
}

Result<MmioTransport::State> MmioTransport::save() {
  std::lock_guard lifecycle(lifecycle_mu_);
  if (active_) FLICK_TRY(device_->quiesce());
  std::lock_guard lock(mu_);
  return State{driver_features_, acked_, device_features_sel_, driver_features_sel_, queue_sel_, status_,
               config_generation_, interrupt_status_.load(), queues_};
}

void MmioTransport::end_save() {
  std::lock_guard lifecycle(lifecycle_mu_);
  if (active_) device_->end_quiesce();
}

Result<void> MmioTransport::load(const State& s) {
  std::lock_guard lifecycle(lifecycle_mu_);
  {
    std::lock_guard lock(mu_);
    if (active_ || status_ != 0) return make_error(Errc::busy, "virtio-mmio: load() into a transport in use");
    if (s.queues.size() != queues_.size())
      return make_error(Errc::malformed, "virtio-mmio: the saved device has " + std::to_string(s.queues.size()) +
                                             " queues, this one " + std::to_string(queues_.size()));
    for (size_t i = 0; i < queues_.size(); ++i)
      if (s.queues[i].max_size != queues_[i].max_size)
        return make_error(Errc::malformed, "virtio-mmio: queue " + std::to_string(i) + " was saved with another size");
    if ((s.driver_features | s.acked) & ~offered_)
      return make_error(Errc::malformed, "virtio-mmio: the saved features " + hex(s.acked) + " were not offered");
    driver_features_ = s.driver_features;
    acked_ = s.acked;
    device_features_sel_ = s.device_features_sel;
    driver_features_sel_ = s.driver_features_sel;
    queue_sel_ = s.queue_sel;
    status_ = s.status;
    config_generation_ = s.config_generation;
    queues_ = s.queues;
    interrupt_status_ = s.interrupt_status;
  }
  if ((s.status & kStatusDriverOk) && !(s.status & kStatusNeedsReset)) {
    activate();
    std::lock_guard lock(mu_);
    if (!active_) return make_error(Errc::malformed, "virtio-mmio: the saved device could not be activated again");
  }
  return {};
}

void MmioTransport::raise(uint32_t bits) {
  interrupt_status_.fetch_or(bits);
  irq_->trigger();
}

void MmioTransport::set_needs_reset() {
  {
    std::lock_guard lock(mu_);
    if (!(status_ & kStatusDriverOk)) return;  // §2.1.2: only meaningful on a live device
    status_ |= kStatusNeedsReset;
  }
  raise(kInterruptConfigChange);
}

void MmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (offset >= kConfig) {
    device_->read_config(offset - kConfig, data);
    return;
  }
  // §4.2.2.2: registers are 32 bits wide and read with aligned 32-bit accesses only.
  if (data.size() != 4 || offset % 4) return;
  uint32_t v = read_register(offset);
  std::memcpy(data.data(), &v, 4);
}

void MmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= kConfig) {
    device_->write_config(offset - kConfig, data);
    return;
  }
  if (data.size() != 4 || offset % 4) return;
  uint32_t v;
  std::memcpy(&v, data.data(), 4);
  write_register(offset, v);
}

QueueConfig* MmioTransport::selected_queue() {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

uint32_t MmioTransport::read_register(uint64_t offset) {
  std::lock_guard lock(mu_);
  QueueConfig* q = selected_queue();
  switch (offset) {
    case kMagicValue: return kMagic;
    case kVersionReg: return kVersion;
    case kDeviceId: return device_->device_type();
    case kVendorIdReg: return kVendorId;
    case kDeviceFeatures:
      return device_features_sel_ < 2 ? static_cast<uint32_t>(offered_ >> (32 * device_features_sel_)) : 0;
    case kQueueNumMax: return q ? q->max_size : 0;
    case kQueueReady: return q && q->ready ? 1 : 0;
    case kInterruptStatus: return interrupt_status_.load();
    case kStatus: return status_;
    case kShmLenLow:
    case kShmLenHigh: return 0xffffffff;  // §4.2.2: no shared memory regions
    case kConfigGeneration: return config_generation_;
    default: return 0;
  }
}

void MmioTransport::write_register(uint64_t offset, uint32_t v) {
  if (offset == kStatus) {
    write_status(v);
    return;
  }
  if (offset == kQueueNotify) {
    // Without an ioeventfd the notify arrives here; signal the same eventfd.
    if (v < notify_.size()) (void)notify_[v].signal();
    return;
  }
  if (offset == kInterruptAck) {
    interrupt_status_.fetch_and(~v);
    return;
  }
  std::lock_guard lock(mu_);
  // §4.2.3.1: feature and queue registers are writable only during their setup phase.
  bool feature_phase = (status_ & kStatusDriver) && !(status_ & kStatusFeaturesOk);
  bool queue_phase = (status_ & kStatusFeaturesOk) && !(status_ & kStatusDriverOk);
  QueueConfig* q = selected_queue();
  auto set_low = [](GuestAddress& a, uint32_t x) { a.value = (a.value & ~0xffffffffull) | x; };
  auto set_high = [](GuestAddress& a, uint32_t x) {
    a.value = (a.value & 0xffffffffull) | (uint64_t{x} << 32);
  };
  switch (offset) {
    case kDeviceFeaturesSel: device_features_sel_ = v; return;
    case kDriverFeaturesSel: driver_features_sel_ = v; return;
    case kDriverFeatures:
      if (!feature_phase || driver_features_sel_ >= 2) return;
      driver_features_ &= ~(0xffffffffull << (32 * driver_features_sel_));
      driver_features_ |= uint64_t{v} << (32 * driver_features_sel_);
      return;
    case kQueueSel: queue_sel_ = v; return;
    default: break;
  }
  if (!queue_phase || !q) return;
  switch (offset) {
    case kQueueNum: q->size = static_cast<uint16_t>(v > 0xffff ? 0 : v); return;
    case kQueueReady: q->ready = v == 1; return;
    case kQueueDescLow: set_low(q->desc_table, v); return;
    case kQueueDescHigh: set_high(q->desc_table, v); return;
    case kQueueDriverLow: set_low(q->avail_ring, v); return;
    case kQueueDriverHigh: set_high(q->avail_ring, v); return;
    case kQueueDeviceLow: set_low(q->used_ring, v); return;
    case kQueueDeviceHigh: set_high(q->used_ring, v); return;
    default: return;
  }
}

void MmioTransport::write_status(uint32_t v) {
  std::lock_guard lifecycle(lifecycle_mu_);
  if (v == 0) {
    reset();
    return;
  }
  bool activate_now = false;
  {
    std::lock_guard lock(mu_);
    // §2.1.1: the driver only adds bits; it never clears one except by writing 0.
    if ((v & status_) != status_) return;
    uint32_t added = v & ~status_;
    if (added & kStatusNeedsReset) return;  // device-owned bit
    if (added & kStatusFeaturesOk) {
      // §2.2.2/§6.1: accept only what was offered, and only a modern (VERSION_1) driver.
      bool ok = (status_ & kStatusDriver) && (driver_features_ & ~offered_) == 0 &&
                (driver_features_ & kFeatureVersion1);
      if (!ok) v &= ~kStatusFeaturesOk;
      else acked_ = driver_features_;
    }
    if ((added & kStatusDriverOk) && !(v & kStatusFeaturesOk)) v &= ~kStatusDriverOk;
    status_ = v;
    activate_now = (added & kStatusDriverOk) && (v & kStatusDriverOk) && !active_;
  }
  if (activate_now) activate();
}

void MmioTransport::activate() {
  std::vector<ActiveQueue> active;
  uint64_t acked;
  Result<void> r;
  {
    std::lock_guard lock(mu_);
    acked = acked_;
    for (size_t i = 0; i < queues_.size(); i++) {
      if (!queues_[i].ready) continue;
      auto q = VirtQueue::create(*mem_, queues_[i], acked & kFeatureRingEventIdx,
                                 acked & kFeatureRingIndirectDesc);
      if (!q) {
        r = std::move(q).error().with_context("queue " + std::to_string(i));
        break;
      }
      // Queue i is active[i]: every queue the device offers must be set up.
      active.push_back(ActiveQueue{std::move(*q), notify_[i].fd()});
    }
  }
  if (r) {
    if (active.size() != queues_.size())
      r = make_error(Errc::malformed, "the driver left some queues not ready");
  }
  if (r) r = device_->activate(*mem_, acked, std::move(active), signals_);
  if (!r) {
    log_line("virtio-mmio device " + std::to_string(device_->device_type()) +
             ": activation failed: " + r.error().describe());
    std::lock_guard lock(mu_);
    status_ |= kStatusNeedsReset;
  } else {
    std::lock_guard lock(mu_);
    active_ = true;
    return;
  }
  raise(kInterruptConfigChange);
}

void MmioTransport::reset() {
  // Stop the device first: its thread may be calling back into us.
  if (active_) device_->reset();
  std::lock_guard lock(mu_);
  active_ = false;
  status_ = 0;
  driver_features_ = 0;
  acked_ = 0;
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
  for (auto& q : queues_) {
    uint16_t max = q.max_size;
    q = QueueConfig{};
    q.max_size = max;
    q.size = max;
  }
  interrupt_status_ = 0;
  for (auto& e : notify_) (void)e.consume();
}

}  // namespace flick::virtio
