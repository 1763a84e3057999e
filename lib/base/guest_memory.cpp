#include "base/guest_memory.h"

#include "base/hex.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace flick {

namespace {
constexpr uint64_t kPage = 4096;
constexpr uint64_t kHugePage = 2 << 20;

// Maps `size` bytes at a host address that is 2 MiB aligned. KVM maps guest memory with huge
// pages only where the guest and host addresses agree modulo the huge page size (else one
// 4 KiB page per fault); a plain mmap gives 4 KiB alignment.
void* map_aligned(uint64_t size, int flags, int fd, off_t offset) {
  void* reserved = ::mmap(nullptr, size + kHugePage, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) return MAP_FAILED;
  const auto start = reinterpret_cast<uintptr_t>(reserved);
  const uintptr_t aligned = (start + kHugePage - 1) & ~(kHugePage - 1);
  void* p = ::mmap(reinterpret_cast<void*>(aligned), size, PROT_READ | PROT_WRITE,
                   flags | MAP_FIXED | MAP_NORESERVE, fd, offset);
  if (p == MAP_FAILED) {
    int err = errno;
    ::munmap(reserved, size + kHugePage);
    errno = err;
    return MAP_FAILED;
  }
  if (aligned > start) ::munmap(reserved, aligned - start);
  if (const uintptr_t tail = start + kHugePage - aligned; tail > 0)
    ::munmap(reinterpret_cast<void*>(aligned + size), tail);
  return p;
}
}  // namespace

Result<GuestMemory> GuestMemory::create(std::span<const Range> ranges, GuestMemory::Backing backing) {
  GuestMemory mem;
  uint64_t total = 0;
  uint64_t prev_end = 0;
  for (const auto& r : ranges) {
    uint64_t end;
    if (r.size == 0 || r.start % kPage || r.size % kPage || r.start < prev_end ||
        __builtin_add_overflow(r.start, r.size, &end))
      return make_error(Errc::invalid_argument, "guest memory ranges must be page aligned, "
                                                "sorted, non-empty and non-overlapping");
    prev_end = end;
    total += r.size;
  }
  int fd = -1;
  if (backing == Backing::memfd) {
    fd = ::memfd_create("flick-guest-memory", MFD_CLOEXEC);
    if (fd < 0) return sys_error("creating the guest memory memfd", errno);
    mem.fd_.reset(fd);
    if (::ftruncate(fd, static_cast<off_t>(total)) != 0)
      return sys_error("sizing guest memory to " + std::to_string(total >> 20) + " MiB", errno);
  }
  uint64_t offset = 0;
  for (const auto& r : ranges) {
    void* p = fd >= 0 ? map_aligned(r.size, MAP_SHARED, fd, static_cast<off_t>(offset))
                      : map_aligned(r.size, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      return sys_error("mapping " + std::to_string(r.size >> 20) + " MiB of guest memory", errno);
    mem.regions_.push_back({GuestAddress{r.start}, r.size, static_cast<std::byte*>(p), offset});
    // Huge pages where the host allows them; a hint, so failure is fine.
    ::madvise(p, r.size, MADV_HUGEPAGE);
    offset += r.size;
  }
  mem.total_ = total;
  return mem;
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : fd_(std::move(o.fd_)), regions_(std::move(o.regions_)), total_(o.total_) {
  o.regions_.clear();
  o.total_ = 0;
}

GuestMemory& GuestMemory::operator=(GuestMemory&& o) noexcept {
  if (this != &o) {
    unmap();
    fd_ = std::move(o.fd_);
    regions_ = std::move(o.regions_);
    total_ = o.total_;
    o.regions_.clear();
    o.total_ = 0;
  }
  return *this;
}

GuestMemory::~GuestMemory() { unmap(); }

void GuestMemory::unmap() noexcept {
  for (auto& r : regions_) ::munmap(r.host, r.size);
  regions_.clear();
}

const MemoryRegion* GuestMemory::find(GuestAddress addr, uint64_t len) const {
  uint64_t end;
  if (__builtin_add_overflow(addr.value, len, &end)) return nullptr;
  for (const auto& r : regions_) {
    if (addr.value >= r.start.value && end <= r.start.value + r.size) return &r;
  }
  return nullptr;
}

bool GuestMemory::contains(GuestAddress addr, uint64_t len) const {
  return find(addr, len) != nullptr;
}

uint64_t GuestMemory::end_below(uint64_t limit) const {
  uint64_t best = 0;
  for (const auto& r : regions_) {
    if (r.start.value >= limit) continue;
    best = std::max(best, std::min(limit, r.start.value + r.size));
  }
  return best;
}

static Error out_of_range(GuestAddress addr, uint64_t len) {
  return make_error(Errc::invalid_argument,
                    "guest range " + hex(addr.value) + "+" + hex(len) + " is outside guest memory");
}

Result<void> GuestMemory::read(GuestAddress addr, std::span<std::byte> out) const {
  const MemoryRegion* r = find(addr, out.size());
  if (!r) return out_of_range(addr, out.size());
  std::memcpy(out.data(), r->host + (addr.value - r->start.value), out.size());
  return {};
}

Result<void> GuestMemory::write(GuestAddress addr, std::span<const std::byte> in) {
  const MemoryRegion* r = find(addr, in.size());
  if (!r) return out_of_range(addr, in.size());
  std::memcpy(r->host + (addr.value - r->start.value), in.data(), in.size());
  return {};
}

Result<void> GuestMemory::fill(GuestAddress addr, uint64_t len, std::byte value) {
  const MemoryRegion* r = find(addr, len);
  if (!r) return out_of_range(addr, len);
  std::memset(r->host + (addr.value - r->start.value), static_cast<int>(value), len);
  return {};
}

Result<std::span<std::byte>> GuestMemory::slice(GuestAddress addr, uint64_t len) const {
  const MemoryRegion* r = find(addr, len);
  if (!r) return out_of_range(addr, len);
  return std::span<std::byte>(r->host + (addr.value - r->start.value), len);
}

}  // namespace flick
