#include "virtio/descriptor_chain.h"

#include "virtio/spec.h"

#include <algorithm>
#include <string>

namespace flick::virtio {

namespace {

Error malformed(uint16_t head, const std::string& why) {
  return make_error(Errc::malformed, "descriptor chain at head " + std::to_string(head) + ": " + why);
}

}  // namespace

Result<DescriptorChain> DescriptorChain::walk(const GuestMemory& mem, GuestAddress table,
                                              uint16_t queue_size, uint16_t head,
                                              bool allow_indirect) {
  DescriptorChain chain;
  chain.head_ = head;
  if (head >= queue_size) return malformed(head, "head index out of range");

  // Budget: the whole chain, direct and indirect, may not be longer than the queue (§2.7.5.3.1).
  uint32_t budget = queue_size;
  bool writable_seen = false;

  auto accept = [&](const VirtqDesc& d) -> Result<void> {
    bool w = (d.flags & kDescWrite) != 0;
    if (!w && writable_seen) return malformed(head, "device-readable descriptor after a writable one");
    if (!mem.contains(GuestAddress{d.addr}, d.len))
      return malformed(head, "buffer is outside guest memory");
    writable_seen = writable_seen || w;
    chain.descs_.push_back({GuestAddress{d.addr}, d.len, w});
    if (w) {
      chain.writable_len_ += d.len;
    } else {
      chain.readable_len_ += d.len;
      chain.readable_count_++;
    }
    return {};
  };

  uint16_t index = head;
  for (;;) {
    if (budget == 0) return malformed(head, "chain longer than the queue (a loop?)");
    budget--;
    GuestAddress at;
    if (!table.checked_add(uint64_t{index} * sizeof(VirtqDesc), &at))
      return malformed(head, "descriptor address overflows");
    auto d = mem.read_obj<VirtqDesc>(at);
    if (!d) return malformed(head, "descriptor table is outside guest memory");

    if (d->flags & kDescIndirect) {
      if (!allow_indirect) return malformed(head, "indirect descriptor without INDIRECT_DESC");
      if (d->flags & kDescNext) return malformed(head, "indirect descriptor with NEXT set");
      if (d->len == 0 || d->len % sizeof(VirtqDesc) != 0)
        return malformed(head, "indirect table length is not a multiple of 16");
      uint64_t count = d->len / sizeof(VirtqDesc);
      if (count > budget + 1u) return malformed(head, "indirect table longer than the queue");
      std::vector<VirtqDesc> itable(count);
      if (!mem.read(GuestAddress{d->addr}, std::as_writable_bytes(std::span(itable))))
        return malformed(head, "indirect table is outside guest memory");
      // The indirect descriptor itself was charged; its table gets the remaining budget + 1.
      budget++;
      uint32_t i = 0;
      for (;;) {
        if (budget == 0) return malformed(head, "indirect chain loops");
        budget--;
        const VirtqDesc& e = itable[i];
        if (e.flags & kDescIndirect) return malformed(head, "nested indirect table");
        FLICK_TRY(accept(e));
        if (!(e.flags & kDescNext)) break;
        if (e.next >= count) return malformed(head, "indirect next index out of range");
        i = e.next;
      }
      break;  // an indirect descriptor ends the chain
    }

    FLICK_TRY(accept(*d));
    if (!(d->flags & kDescNext)) break;
    if (d->next >= queue_size) return malformed(head, "next index out of range");
    index = d->next;
  }
  return chain;
}

Result<uint64_t> DescriptorChain::read(const GuestMemory& mem, uint64_t offset,
                                       std::span<std::byte> out) const {
  uint64_t done = 0;
  for (const Descriptor& d : readable()) {
    if (done == out.size()) break;
    if (offset >= d.len) {
      offset -= d.len;
      continue;
    }
    uint64_t n = std::min<uint64_t>(d.len - offset, out.size() - done);
    FLICK_TRY(mem.read(GuestAddress{d.addr.value + offset}, out.subspan(done, n)));
    done += n;
    offset = 0;
  }
  return done;
}

Result<void> DescriptorChain::write(GuestMemory& mem, uint64_t offset,
                                    std::span<const std::byte> in) const {
  uint64_t end;
  if (__builtin_add_overflow(offset, in.size(), &end) || end > writable_len_)
    return make_error(Errc::limit, "reply does not fit in the request's writable buffers");
  uint64_t done = 0;
  for (const Descriptor& d : writable()) {
    if (done == in.size()) break;
    if (offset >= d.len) {
      offset -= d.len;
      continue;
    }
    uint64_t n = std::min<uint64_t>(d.len - offset, in.size() - done);
    FLICK_TRY(mem.write(GuestAddress{d.addr.value + offset}, in.subspan(done, n)));
    done += n;
    offset = 0;
  }
  return {};
}

Result<std::vector<GuestRegion>> regions_of(std::span<const Descriptor> descs, uint64_t offset,
                                            uint64_t len) {
  std::vector<GuestRegion> out;
  for (const Descriptor& d : descs) {
    if (len == 0) break;
    if (offset >= d.len) {
      offset -= d.len;
      continue;
    }
    uint64_t n = std::min<uint64_t>(d.len - offset, len);
    out.push_back({GuestAddress{d.addr.value + offset}, n});
    len -= n;
    offset = 0;
  }
  if (len != 0) return make_error(Errc::malformed, "request is shorter than its buffers claim");
  return out;
}

}  // namespace flick::virtio
