#include "vmm/loader/kernel.h"

#include "vmm/loader/bzimage.h"
#include "vmm/loader/elf.h"

#include <cstring>

namespace flick::vmm {

Result<LoadedKernel> load_kernel(GuestMemory& mem, std::span<const std::byte> file,
                                 const KernelLoadOptions& options) {
  static constexpr char kElfMagic[4] = {0x7f, 'E', 'L', 'F'};
  if (file.size() >= 4 && std::memcmp(file.data(), kElfMagic, 4) == 0)
    return load_elf(mem, file, options.elf_preferred);
  uint32_t magic = 0;
  if (file.size() >= 0x206) std::memcpy(&magic, file.data() + 0x202, 4);
  if (magic == kHdrsMagic) return load_bzimage(mem, file);
  return make_error(Errc::malformed,
                    "kernel image (" + std::to_string(file.size()) +
                        " bytes) is neither an ELF file nor a bzImage (no \"HdrS\" at 0x202)");
}

}  // namespace flick::vmm
