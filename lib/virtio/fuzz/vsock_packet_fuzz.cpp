// Fuzzes the virtio-vsock TX packet header parser on chains from fuzzer-controlled memory.
#include "fuzz_memory.h"
#include "virtio/vsock/vsock_packet.h"

using namespace flick;
using namespace flick::virtio;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  uint16_t head = data[0] % 16;
  fuzz::load(data + 1, size - 1);
  GuestMemory& mem = fuzz::memory();
  auto chain = DescriptorChain::walk(mem, GuestAddress{0}, 16, head, true);
  if (!chain) return 0;
  auto p = parse_vsock_tx(mem, *chain);
  if (p) {
    uint64_t total = 0;
    for (const GuestRegion& g : p->payload) {
      if (!mem.contains(g.addr, g.len)) __builtin_trap();
      total += g.len;
    }
    if (total != p->header.len || total > vsock::kMaxPayload) __builtin_trap();
  }
  return 0;
}
