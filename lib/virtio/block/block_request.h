// Parsing virtio-blk requests (virtio 1.2 §5.2.6) out of a walked descriptor chain.
//
// Parse, then execute: the parser turns a chain into a BlockRequest value (or the status to
// fail it with) without doing any I/O; BlockDevice hands the value to a BlockEngine.
#pragma once

#include "virtio/descriptor_chain.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace flick::virtio {

namespace blk {
// §5.2.6 request types.
inline constexpr uint32_t kTypeIn = 0;
inline constexpr uint32_t kTypeOut = 1;
inline constexpr uint32_t kTypeFlush = 4;
inline constexpr uint32_t kTypeGetId = 8;
inline constexpr uint32_t kTypeDiscard = 11;
inline constexpr uint32_t kTypeWriteZeroes = 13;
// Status byte values.
inline constexpr uint8_t kStatusOk = 0;
inline constexpr uint8_t kStatusIoErr = 1;
inline constexpr uint8_t kStatusUnsupported = 2;
inline constexpr uint32_t kSectorSize = 512;
inline constexpr uint32_t kIdBytes = 20;
// §5.2.6: the one flag a discard / write-zeroes segment may carry.
inline constexpr uint32_t kSegmentUnmap = 1;
}  // namespace blk

struct BlockLimits {
  uint64_t capacity_sectors = 0;
  bool read_only = false;
  uint64_t max_data_bytes = 32u << 20;        // per read or write request
  uint32_t max_discard_sectors = 0xffffffff;  // per discard / write-zeroes segment
};

enum class BlockRequestKind { read, write, flush, get_id, discard, write_zeroes };

struct BlockRequest {
  BlockRequestKind kind = BlockRequestKind::read;
  uint64_t sector = 0;
  // Guest buffers: device-writable for read / get_id, device-readable for write.
  std::vector<GuestRegion> data;
  uint64_t data_len = 0;
  // discard / write_zeroes: the one segment.
  uint64_t segment_sectors = 0;
  bool unmap = false;
};

struct ParsedBlockRequest {
  // Where the status byte goes; absent when the chain has no writable byte at all.
  std::optional<GuestAddress> status_addr;
  // kStatusOk when `request` is valid; otherwise the status to fail the request with.
  uint8_t status = blk::kStatusOk;
  std::string why;  // for a failed parse
  BlockRequest request;
};

ParsedBlockRequest parse_block_request(const GuestMemory& mem, const DescriptorChain& chain,
                                       const BlockLimits& limits);

}  // namespace flick::virtio
