// Shared setup of the virtio fuzz targets: one 64 KiB guest memory reused across inputs, with
// the input copied to its start (descriptor table, rings, indirect tables, buffers all come
// from the fuzzer's bytes) and the rest zeroed, so every run starts from the same state.
#pragma once

#include "base/guest_memory.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace flick::virtio::fuzz {

inline constexpr uint64_t kMemSize = 64 << 10;
inline constexpr uint64_t kInputMax = kMemSize;

inline GuestMemory& memory() {
  static GuestMemory mem = [] {
    GuestMemory::Range r{0, kMemSize};
    auto m = GuestMemory::create(std::span(&r, 1));
    if (!m) std::abort();
    return std::move(m).value();
  }();
  return mem;
}

// Copies `data` to address 0 and zeroes the rest of guest memory.
inline void load(const uint8_t* data, size_t size) {
  GuestMemory& mem = memory();
  if (size > kInputMax) size = kInputMax;
  (void)mem.write(GuestAddress{0}, std::as_bytes(std::span(data, size)));
  (void)mem.fill(GuestAddress{size}, kMemSize - size, std::byte{0});
}

}  // namespace flick::virtio::fuzz
