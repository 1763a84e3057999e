// virtio-vsock packets (virtio 1.2 §5.10.6): the header and parsing of driver-to-device packets.
#pragma once

#include "virtio/descriptor_chain.h"

#include <flick/result.h>

#include <cstdint>
#include <vector>

namespace flick::virtio {

namespace vsock {
inline constexpr uint64_t kHostCid = 2;
inline constexpr uint16_t kTypeStream = 1;

inline constexpr uint16_t kOpRequest = 1;
inline constexpr uint16_t kOpResponse = 2;
inline constexpr uint16_t kOpRst = 3;
inline constexpr uint16_t kOpShutdown = 4;
inline constexpr uint16_t kOpRw = 5;
inline constexpr uint16_t kOpCreditUpdate = 6;
inline constexpr uint16_t kOpCreditRequest = 7;

inline constexpr uint32_t kShutdownRecv = 1;
inline constexpr uint32_t kShutdownSend = 2;

// Largest payload accepted in one packet (Linux sends at most 64 KiB).
inline constexpr uint32_t kMaxPayload = 64 * 1024;
}  // namespace vsock

#pragma pack(push, 1)
struct VsockHeader {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};
#pragma pack(pop)
static_assert(sizeof(VsockHeader) == 44);

struct VsockTxPacket {
  VsockHeader header{};
  std::vector<GuestRegion> payload;  // header.len bytes
};

// Reads the header of a driver-to-device (TX) chain and locates its payload. Fails when the
// header is short, the payload is larger than the chain or than kMaxPayload.
Result<VsockTxPacket> parse_vsock_tx(const GuestMemory& mem, const DescriptorChain& chain);

}  // namespace flick::virtio
