// libFuzzer target for the kernel loaders: the kernel file comes from the user, but a
// malformed one must still fail with an error, never crash or write outside guest RAM.
// The first input byte picks the ELF entry preference; the rest is the kernel file.
#include "vmm/layout.h"
#include "vmm/loader/boot_params.h"
#include "vmm/loader/bzimage.h"
#include "vmm/loader/elf.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

using namespace flick;
using namespace flick::vmm;

namespace {

GuestMemory& memory() {
  static GuestMemory mem = [] {
    auto ranges = layout::ram_ranges(64 << 20);
    auto m = GuestMemory::create(ranges);
    if (!m.ok()) std::abort();
    return std::move(m).value();
  }();
  return mem;
}

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto file = std::span(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  (void)parse_bzimage_header(file);
  (void)parse_elf(file);

  GuestMemory& mem = memory();
  KernelLoadOptions opts{data[0] & 1 ? EntryMode::Long64 : EntryMode::Pvh32};
  auto k = load_kernel(mem, file, opts);
  if (!k.ok()) {
    check(!k.error().message.empty());
    return 0;
  }
  check(k->kernel_start.value >= layout::kHighMem);
  check(k->kernel_start <= k->entry && k->entry < k->kernel_end);
  check(mem.contains(k->kernel_start, k->kernel_end.value - k->kernel_start.value));
  static const std::byte initrd[4096] = {};
  auto regs = write_boot_params(mem, *k, {"console=ttyS0", std::span(initrd), 0});
  if (regs.ok()) check(regs->rip == k->entry.value);
  return 0;
}
