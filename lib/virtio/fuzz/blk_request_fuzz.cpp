// Fuzzes the virtio-blk request parser on chains walked from fuzzer-controlled memory.
#include "fuzz_memory.h"
#include "virtio/block/block_request.h"

using namespace flick;
using namespace flick::virtio;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  uint16_t head = data[0] % 16;
  BlockLimits limits;
  limits.capacity_sectors = data[1] & 0x80 ? 2048 : ~0ull;
  limits.read_only = data[1] & 1;
  limits.max_discard_sectors = 1u << (data[2] % 32);
  fuzz::load(data + 3, size - 3);
  GuestMemory& mem = fuzz::memory();
  auto chain = DescriptorChain::walk(mem, GuestAddress{0}, 16, head, true);
  if (!chain) return 0;
  ParsedBlockRequest p = parse_block_request(mem, *chain, limits);
  if (p.status == blk::kStatusOk) {
    // Whatever the parser accepted must be in range and inside guest memory.
    uint64_t total = 0;
    for (const GuestRegion& g : p.request.data) {
      if (!mem.contains(g.addr, g.len)) __builtin_trap();
      total += g.len;
    }
    if (total != p.request.data_len && p.request.kind != BlockRequestKind::flush) __builtin_trap();
    if (!p.status_addr) __builtin_trap();
  }
  return 0;
}
