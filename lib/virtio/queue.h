// VirtQueue: the device side of one split virtqueue (virtio 1.2 §2.7).
//
// The driver's ring addresses are validated once, at activation. After that, pop() hands out
// available chains and add_used() returns them. A ring-level inconsistency (the avail index
// running ahead by more than the queue size, a head index out of range) makes the queue
// broken: pop() reports it, the device sets DEVICE_NEEDS_RESET and stops using the queue.
#pragma once

#include "base/guest_memory.h"
#include "virtio/descriptor_chain.h"

#include <flick/result.h>

#include <cstdint>
#include <optional>

namespace flick::virtio {

// What the driver wrote into the transport's queue registers.
struct QueueConfig {
  uint16_t max_size = 0;  // offered by the device
  uint16_t size = 0;      // chosen by the driver
  bool ready = false;
  GuestAddress desc_table;
  GuestAddress avail_ring;
  GuestAddress used_ring;
};

// A chain taken from the avail ring. `chain` holds the walked descriptors or, when the chain
// broke a rule, the reason; either way `head` must be returned with add_used().
struct AvailableChain {
  uint16_t head = 0;
  Result<DescriptorChain> chain;
};

class VirtQueue {
 public:
  // Checks size (power of two, <= max), alignment (§2.7: desc 16, avail 2, used 4) and that
  // the three areas lie in guest memory.
  static Result<VirtQueue> create(GuestMemory& mem, const QueueConfig& config, bool event_idx,
                                  bool indirect);

  uint16_t size() const { return size_; }
  bool broken() const { return broken_; }

  // The next available chain, nothing when the ring is empty, or an Error when the ring
  // itself is inconsistent (the queue is then broken and stays so).
  Result<std::optional<AvailableChain>> pop();
  // Undoes the last pop() so the chain is seen again (a device that ran out of room).
  void undo_pop() { next_avail_--; }
  // Places (head, len) in the used ring and publishes the new used index.
  Result<void> add_used(uint16_t head, uint32_t len);
  // Whether the driver wants an interrupt for the buffers used since the last call
  // (§2.7.10: used_event with EVENT_IDX, otherwise the NO_INTERRUPT flag).
  bool needs_interrupt();
  // Asks the driver to notify for the next available buffer; returns true when buffers
  // arrived meanwhile (the caller must pop again, or it would miss them).
  Result<bool> enable_notification();
  // pop(), and when the ring is empty, enable_notification() and look once more: the loop
  // every device runs. Nothing means "empty, and the driver will notify".
  Result<std::optional<AvailableChain>> pop_or_enable_notification();
  // Number of available chains not yet popped.
  Result<uint16_t> pending();

 private:
  Result<uint16_t> avail_idx() const;
  Error fail(std::string why);

  GuestMemory* mem_ = nullptr;
  uint16_t size_ = 0;
  GuestAddress desc_;
  GuestAddress avail_;
  GuestAddress used_;
  bool event_idx_ = false;
  bool indirect_ = false;
  bool broken_ = false;
  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  uint16_t signalled_used_ = 0;
  bool signalled_valid_ = false;
};

}  // namespace flick::virtio
