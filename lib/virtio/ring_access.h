// Single-copy-atomic access to the 16-bit ring indices and event fields (virtio 1.2 §2.7.13.3:
// the driver and device update them concurrently). GuestMemory::read/write copy with memcpy,
// which may move a 2-byte field one byte at a time and let the other side see a torn value.
// The range is checked through GuestMemory::slice like every other access.
#pragma once

#include "base/guest_memory.h"

#include <flick/result.h>

#include <atomic>
#include <cstdint>

namespace flick::virtio {

inline Result<uint16_t> load_u16_acquire(const GuestMemory& mem, GuestAddress addr) {
  if (addr.value % alignof(uint16_t))
    return make_error(Errc::invalid_argument, "misaligned ring index");
  FLICK_TRY_ASSIGN(std::span<std::byte> s, mem.slice(addr, sizeof(uint16_t)));
  return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(s.data()))
      .load(std::memory_order_acquire);
}

inline Result<void> store_u16_release(const GuestMemory& mem, GuestAddress addr, uint16_t v) {
  if (addr.value % alignof(uint16_t))
    return make_error(Errc::invalid_argument, "misaligned ring index");
  FLICK_TRY_ASSIGN(std::span<std::byte> s, mem.slice(addr, sizeof(uint16_t)));
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(s.data())).store(v, std::memory_order_release);
  return {};
}

}  // namespace flick::virtio
