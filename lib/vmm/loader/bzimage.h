// bzImage: the compressed kernel with a real-mode setup part and a setup header
// (Documentation/x86/boot.rst). flick only uses the 64-bit entry, so it needs protocol 2.12+
// with XLF_KERNEL_64; the real-mode code is never run.
#pragma once

#include "vmm/loader/kernel.h"

namespace flick::vmm {

inline constexpr uint16_t kMinBootProtocol = 0x020c;  // 2.12: xloadflags, XLF_KERNEL_64

// Checks and returns the setup header of a bzImage. Fields past the end the header declares
// (older protocols) are zero.
Result<SetupHeader> parse_bzimage_header(std::span<const std::byte> file);

// Where the protected-mode payload goes and how much RAM the kernel needs from there.
struct BzImagePlacement {
  uint64_t payload_offset = 0;  // in the file: (setup_sects + 1) * 512
  uint64_t payload_size = 0;
  uint64_t load = 0;            // guest physical load address
  uint64_t end = 0;             // first byte past what the kernel uses while decompressing
};
Result<BzImagePlacement> plan_bzimage(const SetupHeader& hdr, uint64_t file_size);

// Parses, places and copies the payload into guest memory. Entry is load + 0x200.
Result<LoadedKernel> load_bzimage(GuestMemory& mem, std::span<const std::byte> file);

}  // namespace flick::vmm
