#include "virtio/block/block_request.h"

#include <algorithm>
#include <cstring>

namespace flick::virtio {

namespace {

struct Header {  // struct virtio_blk_req's leading part
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(Header) == 16);

struct Segment {  // struct virtio_blk_discard_write_zeroes
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};
static_assert(sizeof(Segment) == 16);

ParsedBlockRequest& fail(ParsedBlockRequest& p, uint8_t status, std::string why) {
  p.status = status;
  p.why = std::move(why);
  return p;
}

// Whether [sector, sector + count) lies on the disk.
bool in_range(uint64_t sector, uint64_t count, uint64_t capacity) {
  return sector <= capacity && count <= capacity - sector;
}

}  // namespace

ParsedBlockRequest parse_block_request(const GuestMemory& mem, const DescriptorChain& chain,
                                       const BlockLimits& limits) {
  using namespace blk;
  ParsedBlockRequest p;
  // §5.2.6: the status is the last byte of the device-writable part.
  auto w = chain.writable();
  if (chain.writable_len() == 0) return fail(p, kStatusIoErr, "no status byte");
  for (auto it = w.rbegin(); it != w.rend(); ++it) {
    if (it->len > 0) {
      p.status_addr = GuestAddress{it->addr.value + it->len - 1};
      break;
    }
  }
  Header h;
  auto got = chain.read(mem, 0, std::as_writable_bytes(std::span(&h, 1)));
  if (!got || *got != sizeof h) return fail(p, kStatusIoErr, "request header is short");

  BlockRequest& r = p.request;
  r.sector = h.sector;
  uint64_t in_len = chain.writable_len() - 1;  // writable bytes before the status byte
  uint64_t out_len = chain.readable_len() - sizeof h;
  switch (h.type) {
    case kTypeIn:
    case kTypeOut: {
      bool is_write = h.type == kTypeOut;
      if (is_write && limits.read_only) return fail(p, kStatusIoErr, "write to a read-only disk");
      r.kind = is_write ? BlockRequestKind::write : BlockRequestKind::read;
      r.data_len = is_write ? out_len : in_len;
      if (r.data_len % kSectorSize) return fail(p, kStatusIoErr, "length is not whole sectors");
      if (r.data_len > limits.max_data_bytes) return fail(p, kStatusIoErr, "request too large");
      if (!in_range(r.sector, r.data_len / kSectorSize, limits.capacity_sectors))
        return fail(p, kStatusIoErr, "sectors beyond the end of the disk");
      auto regions = is_write ? regions_of(chain.readable(), sizeof h, r.data_len)
                              : regions_of(chain.writable(), 0, r.data_len);
      if (!regions) return fail(p, kStatusIoErr, regions.error().message);
      r.data = std::move(*regions);
      return p;
    }
    case kTypeFlush:
      r.kind = BlockRequestKind::flush;
      return p;
    case kTypeGetId: {
      r.kind = BlockRequestKind::get_id;
      r.data_len = std::min<uint64_t>(in_len, kIdBytes);
      auto regions = regions_of(chain.writable(), 0, r.data_len);
      if (!regions) return fail(p, kStatusIoErr, regions.error().message);
      r.data = std::move(*regions);
      return p;
    }
    case kTypeDiscard:
    case kTypeWriteZeroes: {
      bool zeroes = h.type == kTypeWriteZeroes;
      r.kind = zeroes ? BlockRequestKind::write_zeroes : BlockRequestKind::discard;
      if (limits.read_only) return fail(p, kStatusIoErr, "discard on a read-only disk");
      // We offer max_discard_seg = max_write_zeroes_seg = 1.
      if (out_len != sizeof(Segment)) return fail(p, kStatusUnsupported, "expected one segment");
      Segment s;
      auto n = chain.read(mem, sizeof h, std::as_writable_bytes(std::span(&s, 1)));
      if (!n || *n != sizeof s) return fail(p, kStatusIoErr, "segment is short");
      // §5.2.6.2: unknown flags, or unmap on a discard, are unsupported.
      if (s.flags & ~kSegmentUnmap || (!zeroes && s.flags))
        return fail(p, kStatusUnsupported, "unsupported segment flags");
      if (s.num_sectors > limits.max_discard_sectors)
        return fail(p, kStatusIoErr, "segment larger than advertised");
      if (!in_range(s.sector, s.num_sectors, limits.capacity_sectors))
        return fail(p, kStatusIoErr, "segment beyond the end of the disk");
      r.sector = s.sector;
      r.segment_sectors = s.num_sectors;
      r.unmap = (s.flags & kSegmentUnmap) != 0;
      return p;
    }
    default:
      return fail(p, kStatusUnsupported, "request type " + std::to_string(h.type));
  }
}

}  // namespace flick::virtio
