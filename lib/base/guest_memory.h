// GuestMemory: the one door to guest memory.
//
// Every read or write of guest physical memory goes through this class, which checks the
// whole range [addr, addr + len) against the mapped regions (overflow included) and returns
// an Error instead of touching anything outside.
//
// Two backings: private anonymous memory (the default: the host kernel backs it with
// transparent huge pages, so a booting guest takes far fewer second-level page faults), or a
// memfd, which other processes can map (vhost-user, snapshots, clones) but which gets huge
// pages only where the host enables them for shmem.
#pragma once

#include "base/fd.h"

#include <flick/result.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace flick {

struct GuestAddress {
  uint64_t value = 0;
  constexpr GuestAddress() = default;
  constexpr explicit GuestAddress(uint64_t v) : value(v) {}
  constexpr auto operator<=>(const GuestAddress&) const = default;
  // Addition that reports overflow instead of wrapping.
  constexpr bool checked_add(uint64_t n, GuestAddress* out) const {
    return !__builtin_add_overflow(value, n, &out->value);
  }
};

struct MemoryRegion {
  GuestAddress start;
  uint64_t size = 0;
  std::byte* host = nullptr;  // mapping in this process
  uint64_t file_offset = 0;   // offset of the region in the memfd
};

class GuestMemory {
 public:
  struct Range { uint64_t start; uint64_t size; };
  enum class Backing { anonymous, memfd };
  // Maps the given [start, start+size) ranges of guest RAM (sorted, non-overlapping, page
  // aligned); with Backing::memfd, all of them into one memfd, in order.
  static Result<GuestMemory> create(std::span<const Range> ranges, Backing backing = Backing::anonymous);
  // Maps the ranges from `fd` (laid out in order, as save() writes them) copy-on-write
  // (MAP_PRIVATE): pages are read from the file only when touched, and processes mapping one
  // file share the pages none of them has written. The file must be exactly as large.
  static Result<GuestMemory> map_file_private(std::span<const Range> ranges, int fd);

  GuestMemory() = default;
  GuestMemory(GuestMemory&&) noexcept;
  GuestMemory& operator=(GuestMemory&&) noexcept;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  const std::vector<MemoryRegion>& regions() const { return regions_; }
  uint64_t total_size() const { return total_; }
  // The memfd holding all regions (at MemoryRegion::file_offset), or -1 for anonymous memory.
  int fd() const { return fd_.get(); }

  // True when every byte of [addr, addr+len) is guest RAM within a single region.
  bool contains(GuestAddress addr, uint64_t len) const;
  // The last RAM address + 1 below `limit` (for placing things at the top of low memory).
  uint64_t end_below(uint64_t limit) const;

  Result<void> read(GuestAddress addr, std::span<std::byte> out) const;
  Result<void> write(GuestAddress addr, std::span<const std::byte> in);
  Result<void> fill(GuestAddress addr, uint64_t len, std::byte value);

  template <class T>
  Result<T> read_obj(GuestAddress addr) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    FLICK_TRY(read(addr, std::as_writable_bytes(std::span<T, 1>(&v, 1))));
    return v;
  }
  template <class T>
  Result<void> write_obj(GuestAddress addr, const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(addr, std::as_bytes(std::span<const T, 1>(&v, 1)));
  }

  // A checked host view of [addr, addr+len) for zero-copy I/O (iovecs handed to io_uring).
  // The range must lie within one region. The view is valid while this object lives.
  Result<std::span<std::byte>> slice(GuestAddress addr, uint64_t len) const;

  // Writes every region into `fd` in order (the layout map_file_private() reads), leaving
  // pages of zeros as holes.
  Result<void> save(int fd) const;

 private:
  Result<void> map(std::span<const Range> ranges, int flags, int fd);
  const MemoryRegion* find(GuestAddress addr, uint64_t len) const;
  void unmap() noexcept;

  UniqueFd fd_;
  std::vector<MemoryRegion> regions_;
  uint64_t total_ = 0;
};

}  // namespace flick
