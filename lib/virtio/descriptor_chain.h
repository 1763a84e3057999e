// DescriptorChain: one request the driver made available, walked and checked once.
//
// The walk follows §2.7.5: `next` links bounded by the queue size, at most one indirect table
// (§2.7.5.3) ending the chain, no nested indirect tables, device-writable descriptors only after
// device-readable ones (§2.7.4.2), and every buffer inside guest memory. A chain that breaks a
// rule is refused as a whole; the caller fails that one request.
#pragma once

#include "base/guest_memory.h"

#include <flick/result.h>

#include <cstdint>
#include <span>
#include <vector>

namespace flick::virtio {

struct Descriptor {
  GuestAddress addr;
  uint32_t len = 0;
  bool device_writable = false;
};

class DescriptorChain {
 public:
  uint16_t head() const { return head_; }
  const std::vector<Descriptor>& descriptors() const { return descs_; }
  std::span<const Descriptor> readable() const { return {descs_.data(), readable_count_}; }
  std::span<const Descriptor> writable() const {
    return {descs_.data() + readable_count_, descs_.size() - readable_count_};
  }
  uint64_t readable_len() const { return readable_len_; }
  uint64_t writable_len() const { return writable_len_; }

  // Walks the chain starting at descriptor `head` of the table at `table` (queue_size
  // entries). `allow_indirect` is whether VIRTIO_F_INDIRECT_DESC was negotiated.
  static Result<DescriptorChain> walk(const GuestMemory& mem, GuestAddress table,
                                      uint16_t queue_size, uint16_t head, bool allow_indirect);

  // Copies up to out.size() bytes of the device-readable part, starting `offset` bytes in.
  // Returns how many bytes were copied.
  Result<uint64_t> read(const GuestMemory& mem, uint64_t offset, std::span<std::byte> out) const;
  // Copies `in` into the device-writable part starting `offset` bytes in; fails if it does
  // not fit.
  Result<void> write(GuestMemory& mem, uint64_t offset, std::span<const std::byte> in) const;

 private:
  uint16_t head_ = 0;
  std::vector<Descriptor> descs_;
  size_t readable_count_ = 0;
  uint64_t readable_len_ = 0;
  uint64_t writable_len_ = 0;
};

// A guest range picked out of a chain: part of one descriptor.
struct GuestRegion {
  GuestAddress addr;
  uint64_t len = 0;
};

// The regions covering bytes [offset, offset+len) of the given descriptors, or an error when
// the descriptors hold fewer bytes.
Result<std::vector<GuestRegion>> regions_of(std::span<const Descriptor> descs, uint64_t offset,
                                            uint64_t len);

}  // namespace flick::virtio
