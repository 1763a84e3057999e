#include "virtio/vsock/vsock_packet.h"

#include <string>

namespace flick::virtio {

Result<VsockTxPacket> parse_vsock_tx(const GuestMemory& mem, const DescriptorChain& chain) {
  VsockTxPacket p;
  FLICK_TRY_ASSIGN(uint64_t got, chain.read(mem, 0, std::as_writable_bytes(std::span(&p.header, 1))));
  if (got != sizeof p.header) return make_error(Errc::malformed, "vsock packet header is short");
  uint32_t len = p.header.len;
  if (len > vsock::kMaxPayload)
    return make_error(Errc::limit, "vsock payload of " + std::to_string(len) + " bytes is too large");
  if (len > chain.readable_len() - sizeof p.header)
    return make_error(Errc::malformed, "vsock payload is longer than its buffers");
  if (len) {
    FLICK_TRY_ASSIGN(p.payload, regions_of(chain.readable(), sizeof p.header, len));
  }
  return p;
}

}  // namespace flick::virtio
