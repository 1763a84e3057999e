// The initramfs a machine boots with (docs/init-protocol.md, "The initramfs"): a base
// archive (flick-init, /dev/console, kernel modules) cached per kernel and flick-init build,
// and a per-start archive holding only /flick/config.json. Both are newc cpio.
#pragma once

#include <flick/result.h>

#include "machine/guest_kernel.h"

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace flick::machine {

// The modules a machine needs: virtio-mmio transport, block, net, rng, vsock, ext4.
// Those the kernel has built in are skipped when the archive is built.
std::span<const std::string> default_guest_modules();

// Paths (relative to modules_dir) of the modules `names` and all they depend on, from
// modules_dir/modules.dep, each once and after its dependencies. Names are spelt as the
// kernel does ('-' and '_' alike). Modules in modules.builtin are skipped; a name in
// neither file is an error naming it.
Result<std::vector<std::string>> module_load_order(const std::filesystem::path& modules_dir,
                                                   std::span<const std::string> names);

// Builds (or reuses) cache_dir/initramfs/<hash of the inputs>.cpio.gz: /init (`init`, the
// bytes of flick-init, 0755), /dev/console (char 5:1), /lib/modules/<release>/<path> for each module in load
// order and /flick/modules listing those paths. Compressed modules (.ko.xz, .ko.zst, .ko.gz)
// are stored decompressed, as .ko. Byte-identical for identical inputs.
Result<std::filesystem::path> build_base_initramfs(const GuestKernel& kernel,
                                                   std::string_view init,
                                                   std::span<const std::string> modules,
                                                   const std::filesystem::path& cache_dir);

// The per-start archive: an uncompressed newc cpio holding /flick/config.json and, when
// given, /flick/metadata.json (which flick-init copies into the root file system).
Result<std::vector<uint8_t>> config_archive(const std::string& config_json,
                                            const std::string& metadata_json = {});

// config_archive written to `path` (for VmConfig::initrd_append, which takes paths).
Result<void> write_config_archive(const std::string& config_json,
                                  const std::filesystem::path& path,
                                  const std::string& metadata_json = {});

}  // namespace flick::machine
