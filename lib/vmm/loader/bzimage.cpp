#include "vmm/loader/bzimage.h"

#include "vmm/layout.h"
#include "base/hex.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace flick::vmm {

namespace {

constexpr uint64_t kSectorSize = 512;
constexpr uint64_t kHeaderEndBase = 0x202;  // boot.rst: header end = 0x202 + byte at 0x201
constexpr uint64_t kHeaderEndMax = kSetupHeaderOffset + sizeof(SetupHeader);
// The last field flick reads (init_size, 2.10) must be inside the header the kernel declares.
constexpr uint64_t kHeaderEndMin = 0x264;

Error malformed(const std::string& why) {
  return make_error(Errc::malformed, "bzImage: " + why);
}

std::string protocol(uint16_t v) {
  return std::to_string(v >> 8) + "." + std::to_string(v & 0xff);
}

}  // namespace

Result<SetupHeader> parse_bzimage_header(std::span<const std::byte> file) {
  if (file.size() < kHeaderEndMax)
    return malformed("file is truncated: " + std::to_string(file.size()) +
                     " bytes, but the setup header alone ends at byte " +
                     std::to_string(kHeaderEndMax));
  SetupHeader hdr;
  std::memcpy(&hdr, file.data() + kSetupHeaderOffset, sizeof hdr);
  if (hdr.boot_flag != kBootFlag)
    return malformed("no boot flag 0xaa55 at offset 0x1fe (found " + hex(hdr.boot_flag) +
                     "): not a Linux x86 kernel image");
  if (hdr.header != kHdrsMagic)
    return malformed("no \"HdrS\" magic at offset 0x202 (found " + hex(hdr.header) +
                     "): not a bzImage, or a kernel older than boot protocol 2.00");
  if (hdr.version < kMinBootProtocol)
    return make_error(Errc::unsupported,
                      "bzImage: boot protocol " + protocol(hdr.version) +
                          " is older than 2.12, the first with the 64-bit entry flick uses");
  if (!(hdr.loadflags & kLoadedHigh))
    return make_error(Errc::unsupported,
                      "bzImage: LOADED_HIGH is clear in loadflags: a zImage, which must be "
                      "loaded below 1 MiB and started in real mode");
  if (!(hdr.xloadflags & kXlfKernel64))
    return make_error(Errc::unsupported,
                      "bzImage: XLF_KERNEL_64 is clear in xloadflags: the kernel has no 64-bit "
                      "entry point (a 32-bit kernel?)");
  uint64_t end = kHeaderEndBase + (hdr.jump >> 8);
  if (end < kHeaderEndMin)
    return malformed("the setup header ends at " + hex(end) + " (byte at 0x201), before the "
                     "init_size field that protocol " + protocol(hdr.version) + " has");
  // Bytes past the declared end are setup code, not header fields.
  if (end < kHeaderEndMax)
    std::memset(reinterpret_cast<std::byte*>(&hdr) + (end - kSetupHeaderOffset), 0,
                kHeaderEndMax - end);
  return hdr;
}

Result<BzImagePlacement> plan_bzimage(const SetupHeader& hdr, uint64_t file_size) {
  BzImagePlacement p;
  uint64_t setup_sects = hdr.setup_sects ? hdr.setup_sects : 4;  // boot.rst: 0 means 4
  p.payload_offset = (setup_sects + 1) * kSectorSize;
  if (file_size <= p.payload_offset)
    return malformed("file is truncated: " + std::to_string(file_size) +
                     " bytes, but the real-mode setup (" + std::to_string(setup_sects) +
                     " sectors + boot sector) ends at byte " + std::to_string(p.payload_offset));
  p.payload_size = file_size - p.payload_offset;
  if (p.payload_size <= kEntry64Offset)
    return malformed("the protected-mode code is only " + std::to_string(p.payload_size) +
                     " bytes, too short to hold the 64-bit entry at offset 0x200");
  uint64_t declared = uint64_t{hdr.syssize} * 16;
  if (declared > p.payload_size)
    return malformed("file is truncated: syssize says the protected-mode code is " +
                     std::to_string(declared) + " bytes, but only " +
                     std::to_string(p.payload_size) + " follow the setup code");

  // Copies: std::max must not bind references to the packed header's fields.
  const uint64_t pref = hdr.pref_address;
  if (hdr.relocatable_kernel) {
    uint64_t align = hdr.kernel_alignment;
    if (align < 4096 || (align & (align - 1)))
      return malformed("kernel_alignment " + hex(align) +
                       " is not a power of two of at least 4 KiB");
    uint64_t want = std::max(pref, layout::kHighMem);
    if (__builtin_add_overflow(want, align - 1, &p.load))
      return malformed("pref_address " + hex(hdr.pref_address) + " overflows when aligned");
    p.load &= ~(align - 1);
  } else {
    p.load = layout::kHighMem;  // boot.rst: a non-relocatable bzImage goes at 0x100000
  }
  // The decompressor runs at max(load, pref_address) and needs init_size bytes from there
  // (arch/x86/boot/compressed/head_64.S); the payload itself also has to fit where it was put.
  uint64_t run = std::max(p.load, pref);
  uint64_t payload_end, run_end;
  if (__builtin_add_overflow(p.load, p.payload_size, &payload_end) ||
      __builtin_add_overflow(run, uint64_t{hdr.init_size}, &run_end))
    return malformed("pref_address " + hex(hdr.pref_address) + " + init_size " +
                     hex(hdr.init_size) + " overflows");
  p.end = std::max(payload_end, run_end);
  return p;
}

Result<LoadedKernel> load_bzimage(GuestMemory& mem, std::span<const std::byte> file) {
  FLICK_TRY_ASSIGN(SetupHeader hdr, parse_bzimage_header(file));
  FLICK_TRY_ASSIGN(BzImagePlacement p, plan_bzimage(hdr, file.size()));
  if (!mem.contains(GuestAddress{p.load}, p.end - p.load))
    return make_error(Errc::no_memory,
                      "bzImage: the kernel needs guest RAM " + hex(p.load) + ".." + hex(p.end) +
                          " (" + mib(p.end - p.load) + ", init_size " + mib(hdr.init_size) +
                          ") but RAM below the MMIO hole ends at " +
                          hex(mem.end_below(layout::kMmioHoleStart)) +
                          ": give the machine more memory");
  FLICK_TRY(mem.write(GuestAddress{p.load}, file.subspan(p.payload_offset)));
  LoadedKernel k;
  k.mode = EntryMode::Long64;
  k.entry = GuestAddress{p.load + kEntry64Offset};
  k.kernel_start = GuestAddress{p.load};
  k.kernel_end = GuestAddress{p.end};
  k.setup = hdr;
  return k;
}

}  // namespace flick::vmm
