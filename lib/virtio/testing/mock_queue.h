// MockQueue: a split virtqueue laid out in real GuestMemory, playing the driver's part so
// tests, fuzzers and benchmarks can drive devices without a guest.
#pragma once

#include "base/guest_memory.h"
#include "virtio/queue.h"
#include "virtio/ring_access.h"
#include "virtio/spec.h"

#include <atomic>
#include <cassert>
#include <cstdint>
#include <vector>

namespace flick::virtio::testing {

// A bump allocator for guest buffers.
class GuestArena {
 public:
  GuestArena(uint64_t start, uint64_t size) : next_(start), end_(start + size) {}
  GuestAddress alloc(uint64_t len, uint64_t align = 16) {
    next_ = (next_ + align - 1) & ~(align - 1);
    GuestAddress a{next_};
    next_ += len;
    assert(next_ <= end_);
    return a;
  }

 private:
  uint64_t next_;
  uint64_t end_;
};

struct Buffer {
  GuestAddress addr;
  uint32_t len;
  bool writable;
};

class MockQueue {
 public:
  // Lays the rings out from `base`: descriptor table, avail ring, then the used ring.
  MockQueue(GuestMemory& mem, GuestAddress base, uint16_t size) : mem_(&mem), size_(size) {
    desc_ = base;
    avail_ = GuestAddress{base.value + 16ull * size};
    used_ = GuestAddress{(avail_.value + 6 + 2ull * size + 3) & ~3ull};
    end_ = used_.value + 6 + 8ull * size;
    (void)mem_->fill(base, end_ - base.value, std::byte{0});
  }
  // Bytes the rings occupy from `base`.
  uint64_t footprint() const { return end_ - desc_.value; }

  QueueConfig config() const {
    QueueConfig c;
    c.max_size = size_;
    c.size = size_;
    c.ready = true;
    c.desc_table = desc_;
    c.avail_ring = avail_;
    c.used_ring = used_;
    return c;
  }
  uint16_t size() const { return size_; }
  GuestAddress desc_table() const { return desc_; }
  GuestAddress avail_ring() const { return avail_; }
  GuestAddress used_ring() const { return used_; }

  void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    (void)mem_->write_obj(GuestAddress{desc_.value + 16ull * i}, VirtqDesc{addr, len, flags, next});
  }

  // Writes a chain of `bufs` into descriptors starting at the next free slot and makes it
  // available. Returns the head index.
  uint16_t add_chain(const std::vector<Buffer>& bufs) {
    uint16_t head = next_desc_;
    for (size_t i = 0; i < bufs.size(); i++) {
      uint16_t idx = static_cast<uint16_t>((head + i) % size_);
      uint16_t flags = bufs[i].writable ? kDescWrite : 0;
      if (i + 1 < bufs.size()) flags |= kDescNext;
      set_desc(idx, bufs[i].addr.value, bufs[i].len, flags, static_cast<uint16_t>((idx + 1) % size_));
    }
    next_desc_ = static_cast<uint16_t>((head + bufs.size()) % size_);
    publish(head);
    return head;
  }

  // Writes `bufs` as an indirect table at `table` and makes a one-descriptor chain naming it.
  uint16_t add_indirect_chain(const std::vector<Buffer>& bufs, GuestAddress table) {
    for (size_t i = 0; i < bufs.size(); i++) {
      uint16_t flags = bufs[i].writable ? kDescWrite : 0;
      if (i + 1 < bufs.size()) flags |= kDescNext;
      (void)mem_->write_obj(GuestAddress{table.value + 16 * i},
                           VirtqDesc{bufs[i].addr.value, bufs[i].len, flags, static_cast<uint16_t>(i + 1)});
    }
    uint16_t head = next_desc_;
    set_desc(head, table.value, static_cast<uint32_t>(16 * bufs.size()), kDescIndirect, 0);
    next_desc_ = static_cast<uint16_t>((head + 1) % size_);
    publish(head);
    return head;
  }

  // Puts `head` in the avail ring and bumps avail.idx.
  void publish(uint16_t head) {
    uint16_t idx = avail_idx();
    (void)mem_->write_obj(GuestAddress{avail_.value + 4 + 2ull * (idx % size_)}, head);
    set_avail_idx(static_cast<uint16_t>(idx + 1));  // release: the entry before the index
  }

  uint16_t avail_idx() const { return read16(avail_.value + 2); }
  void set_avail_idx(uint16_t v) { (void)store_u16_release(*mem_, GuestAddress{avail_.value + 2}, v); }
  void set_avail_flags(uint16_t v) { (void)store_u16_release(*mem_, avail_, v); }
  void set_used_event(uint16_t v) {
    (void)store_u16_release(*mem_, GuestAddress{avail_.value + 4 + 2ull * size_}, v);
  }
  uint16_t avail_event() const { return read16(used_.value + 4 + 8ull * size_); }
  uint16_t used_idx() const { return read16(used_.value + 2); }
  VirtqUsedElem used(uint16_t i) const {
    return *mem_->read_obj<VirtqUsedElem>(GuestAddress{used_.value + 4 + 8ull * (i % size_)});
  }

 private:
  uint16_t read16(uint64_t a) const { return *load_u16_acquire(*mem_, GuestAddress{a}); }

  GuestMemory* mem_;
  uint16_t size_;
  GuestAddress desc_, avail_, used_;
  uint64_t end_;
  uint16_t next_desc_ = 0;
};

}  // namespace flick::virtio::testing
