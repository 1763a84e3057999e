#include "virtio/queue.h"

#include "virtio/ring_access.h"
#include "virtio/spec.h"

#include <atomic>
#include <string>

namespace flick::virtio {

namespace {
// Offsets inside the rings (§2.7.6, §2.7.8).
constexpr uint64_t kAvailIdx = 2;
constexpr uint64_t kAvailRing = 4;
constexpr uint64_t kUsedIdx = 2;
constexpr uint64_t kUsedRing = 4;
}  // namespace

Result<VirtQueue> VirtQueue::create(GuestMemory& mem, const QueueConfig& c, bool event_idx,
                                    bool indirect) {
  auto bad = [](const std::string& why) {
    return make_error(Errc::malformed, "virtqueue setup: " + why);
  };
  if (c.size == 0 || (c.size & (c.size - 1)) != 0 || c.size > c.max_size)
    return bad("size " + std::to_string(c.size) + " is not a power of two up to " +
               std::to_string(c.max_size));
  if (c.desc_table.value % 16 || c.avail_ring.value % 2 || c.used_ring.value % 4)
    return bad("ring addresses are misaligned");
  uint64_t n = c.size;
  if (!mem.contains(c.desc_table, n * sizeof(VirtqDesc)))
    return bad("descriptor table is outside guest memory");
  if (!mem.contains(c.avail_ring, 6 + 2 * n)) return bad("avail ring is outside guest memory");
  if (!mem.contains(c.used_ring, 6 + 8 * n)) return bad("used ring is outside guest memory");
  VirtQueue q;
  q.mem_ = &mem;
  q.size_ = c.size;
  q.desc_ = c.desc_table;
  q.avail_ = c.avail_ring;
  q.used_ = c.used_ring;
  q.event_idx_ = event_idx;
  q.indirect_ = indirect;
  // The used index may be non-zero only after a reset the driver did not see; start from
  // what the ring holds so both sides agree.
  auto used = load_u16_acquire(mem, GuestAddress{c.used_ring.value + kUsedIdx});
  if (!used) return std::move(used).error();
  q.next_used_ = *used;
  q.next_avail_ = *used;
  return q;
}

Error VirtQueue::fail(std::string why) {
  broken_ = true;
  return make_error(Errc::malformed, "virtqueue: " + why);
}

Result<uint16_t> VirtQueue::avail_idx() const {
  // Acquire: the ring entries the index covers are read after the index itself.
  return load_u16_acquire(*mem_, GuestAddress{avail_.value + kAvailIdx});
}

Result<uint16_t> VirtQueue::pending() {
  if (broken_) return fail("queue is broken");
  FLICK_TRY_ASSIGN(uint16_t idx, avail_idx());
  uint16_t n = static_cast<uint16_t>(idx - next_avail_);
  if (n > size_) return fail("avail index ran " + std::to_string(n) + " ahead on a queue of " +
                             std::to_string(size_));
  return n;
}

Result<std::optional<AvailableChain>> VirtQueue::pop() {
  FLICK_TRY_ASSIGN(uint16_t n, pending());
  if (n == 0) return std::optional<AvailableChain>{};
  uint64_t slot = next_avail_ % size_;
  auto head = mem_->read_obj<uint16_t>(GuestAddress{avail_.value + kAvailRing + 2 * slot});
  if (!head) return fail("avail ring unreadable");
  if (*head >= size_) return fail("avail ring names descriptor " + std::to_string(*head) +
                                  " on a queue of " + std::to_string(size_));
  next_avail_++;
  return std::optional<AvailableChain>(
      AvailableChain{*head, DescriptorChain::walk(*mem_, desc_, size_, *head, indirect_)});
}

Result<void> VirtQueue::add_used(uint16_t head, uint32_t len) {
  uint64_t slot = next_used_ % size_;
  FLICK_TRY(mem_->write_obj(GuestAddress{used_.value + kUsedRing + 8 * slot},
                            VirtqUsedElem{head, len}));
  next_used_++;
  // Release: the element is visible before the index that publishes it.
  return store_u16_release(*mem_, GuestAddress{used_.value + kUsedIdx}, next_used_);
}

bool VirtQueue::needs_interrupt() {
  // Pairs with the driver's barrier between publishing avail and reading used_event/flags.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint16_t old = signalled_used_;
  bool valid = signalled_valid_;
  signalled_used_ = next_used_;
  signalled_valid_ = true;
  if (!event_idx_) {
    auto flags = load_u16_acquire(*mem_, avail_);
    return !flags || !(*flags & kAvailNoInterrupt);
  }
  auto used_event = load_u16_acquire(*mem_, GuestAddress{avail_.value + kAvailRing + 2ull * size_});
  if (!used_event || !valid) return true;
  // vring_need_event (§2.7.10): did new_idx pass used_event since old?
  return static_cast<uint16_t>(next_used_ - *used_event - 1) <
         static_cast<uint16_t>(next_used_ - old);
}

Result<bool> VirtQueue::enable_notification() {
  if (event_idx_) {
    FLICK_TRY(store_u16_release(*mem_, GuestAddress{used_.value + kUsedRing + 8ull * size_}, next_avail_));
  }
  // The avail_event write must be visible before re-reading the avail index.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  FLICK_TRY_ASSIGN(uint16_t n, pending());
  return n != 0;
}

Result<std::optional<AvailableChain>> VirtQueue::pop_or_enable_notification() {
  for (;;) {
    auto popped = pop();
    if (!popped || popped->has_value()) return popped;
    FLICK_TRY_ASSIGN(bool more, enable_notification());
    if (!more) return std::optional<AvailableChain>{};
  }
}

}  // namespace flick::virtio
