// Fuzzes the split-queue device side: avail ring consumption, chain walking (direct and
// indirect), chain reads/writes and used ring updates, over guest memory the input controls.
#include "fuzz_memory.h"
#include "virtio/queue.h"

using namespace flick;
using namespace flick::virtio;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint16_t qsize = static_cast<uint16_t>(1u << (data[0] % 9));  // 1..256
  bool event_idx = data[1] & 1;
  bool indirect = data[1] & 2;
  fuzz::load(data + 2, size - 2);
  GuestMemory& mem = fuzz::memory();
  QueueConfig c;
  c.max_size = 256;
  c.size = qsize;
  c.ready = true;
  // Rings packed from address 0 so short inputs reach the descriptors: avail, used, table.
  uint64_t used = (6 + 2ull * qsize + 3) & ~3ull;
  uint64_t table = (used + 6 + 8ull * qsize + 15) & ~15ull;
  c.avail_ring = GuestAddress{0};
  c.used_ring = GuestAddress{used};
  c.desc_table = GuestAddress{table};
  auto q = VirtQueue::create(mem, c, event_idx, indirect);
  if (!q) return 0;
  for (int i = 0; i <= qsize; i++) {
    auto p = q->pop();
    if (!p || !p->has_value()) break;
    AvailableChain& a = **p;
    uint32_t len = 0;
    if (a.chain) {
      std::byte buf[64];
      (void)a.chain->read(mem, 3, buf);
      (void)a.chain->write(mem, a.chain->writable_len() / 2, std::span(buf, 8));
      (void)regions_of(a.chain->writable(), 1, a.chain->writable_len() > 1 ? a.chain->writable_len() - 1 : 0);
      len = static_cast<uint32_t>(a.chain->writable_len());
    }
    (void)q->add_used(a.head, len);
  }
  (void)q->needs_interrupt();
  (void)q->enable_notification();
  return 0;
}
