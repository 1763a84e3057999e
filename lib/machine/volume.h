// Volume files: empty ext4 images in <state_dir>/volumes, named by volume id. Which app a
// volume belongs to and which machine it is attached to is the store's (MachineStore).
#pragma once

#include <flick/machine.h>
#include <flick/result.h>

#include <filesystem>
#include <string_view>

namespace flick::machine {

inline constexpr uint64_t kMaxVolumeGb = 16384;

// Fly's rule: 1..30 of [a-z0-9_].
Result<void> check_volume_name(std::string_view name);

// An empty ext4 file system of `size_gb` (sparse) at `path`, which must not exist yet
// (Errc::exists). Built aside and linked into place, so `path` is never half made.
Result<void> make_volume_file(const std::filesystem::path& path, uint64_t size_gb);

}  // namespace flick::machine
