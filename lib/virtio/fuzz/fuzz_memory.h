// Shared setup of the virtio fuzz targets: one guest memory reused across inputs, with the
// input copied to its start (descriptor table, rings, indirect tables, buffers all come from
// the fuzzer's bytes).
#pragma once

#include "base/guest_memory.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace flick::virtio::fuzz {

inline constexpr uint64_t kMemSize = 1 << 20;
inline constexpr uint64_t kInputMax = 64 << 10;

inline GuestMemory& memory() {
  static GuestMemory mem = [] {
    GuestMemory::Range r{0, kMemSize};
    auto m = GuestMemory::create(std::span(&r, 1));
    if (!m) std::abort();
    return std::move(m).value();
  }();
  return mem;
}

// Zeroes the area inputs may touch and copies `data` to address 0.
inline void load(const uint8_t* data, size_t size) {
  GuestMemory& mem = memory();
  (void)mem.fill(GuestAddress{0}, kInputMax, std::byte{0});
  if (size > kInputMax) size = kInputMax;
  (void)mem.write(GuestAddress{0}, std::as_bytes(std::span(data, size)));
}

}  // namespace flick::virtio::fuzz
