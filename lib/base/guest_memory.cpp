#include "base/guest_memory.h"

#include "base/hex.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
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

namespace {
Result<uint64_t> check_ranges(std::span<const GuestMemory::Range> ranges) {
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
  return total;
}
}  // namespace

Result<void> GuestMemory::map(std::span<const Range> ranges, int flags, int fd) {
  uint64_t offset = 0;
  for (const auto& r : ranges) {
    void* p = map_aligned(r.size, flags, fd, fd >= 0 ? static_cast<off_t>(offset) : 0);
    if (p == MAP_FAILED)
      return sys_error("mapping " + std::to_string(r.size >> 20) + " MiB of guest memory", errno);
    regions_.push_back({GuestAddress{r.start}, r.size, static_cast<std::byte*>(p), offset});
    // Huge pages where the host allows them; a hint, so failure is fine.
    ::madvise(p, r.size, MADV_HUGEPAGE);
    offset += r.size;
  }
  return {};
}

Result<GuestMemory> GuestMemory::create(std::span<const Range> ranges, GuestMemory::Backing backing) {
  GuestMemory mem;
  FLICK_TRY_ASSIGN(mem.total_, check_ranges(ranges));
  if (backing == Backing::anonymous) {
    FLICK_TRY(mem.map(ranges, MAP_PRIVATE | MAP_ANONYMOUS, -1));
    return mem;
  }
  int fd = ::memfd_create("flick-guest-memory", MFD_CLOEXEC);
  if (fd < 0) return sys_error("creating the guest memory memfd", errno);
  mem.fd_.reset(fd);
  if (::ftruncate(fd, static_cast<off_t>(mem.total_)) != 0)
    return sys_error("sizing guest memory to " + std::to_string(mem.total_ >> 20) + " MiB", errno);
  FLICK_TRY(mem.map(ranges, MAP_SHARED, fd));
  return mem;
}

Result<GuestMemory> GuestMemory::map_file_private(std::span<const Range> ranges, int fd) {
  GuestMemory mem;
  FLICK_TRY_ASSIGN(mem.total_, check_ranges(ranges));
  struct stat st{};
  if (::fstat(fd, &st) != 0) return sys_error("reading the guest memory file", errno);
  if (static_cast<uint64_t>(st.st_size) != mem.total_)
    return make_error(Errc::invalid_argument, "the guest memory file holds " + std::to_string(st.st_size) +
                                                  " bytes, not the " + std::to_string(mem.total_) + " of guest RAM");
  FLICK_TRY(mem.map(ranges, MAP_PRIVATE, fd));
  return mem;
}

Result<void> GuestMemory::save(int fd) const {
  // Pages of zeros stay holes: a guest that touched little memory saves a small file.
  static const std::array<std::byte, kPage> zeros{};
  uint64_t file_offset = 0;
  for (const auto& r : regions_) {
    uint64_t run = 0, run_len = 0;  // the current run of non-zero pages, in region offsets
    auto flush = [&]() -> Result<void> {
      for (uint64_t done = 0; done < run_len;) {
        ssize_t n = ::pwrite(fd, r.host + run + done, run_len - done,
                             static_cast<off_t>(file_offset + run + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return sys_error("writing guest memory", n < 0 ? errno : EIO);
        done += static_cast<uint64_t>(n);
      }
      run_len = 0;
      return {};
    };
    for (uint64_t off = 0; off < r.size; off += kPage) {
      if (std::memcmp(r.host + off, zeros.data(), kPage) == 0) {
        FLICK_TRY(flush());
        continue;
      }
      if (run_len == 0) run = off;
      run_len += kPage;
    }
    FLICK_TRY(flush());
    file_offset += r.size;
  }
  if (::ftruncate(fd, static_cast<off_t>(file_offset)) != 0) return sys_error("sizing the guest memory file", errno);
  return {};
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
