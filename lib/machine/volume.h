// Volumes: named persistent ext4 images in <state_dir>/volumes, attached to one machine at a
// time (an exclusive flock on the file, so other processes see it in use too).
#pragma once

#include "base/fd.h"

#include <flick/machine.h>
#include <flick/result.h>

#include <filesystem>
#include <string_view>

namespace flick::machine {

// Fly's rule: 1..30 of [a-z0-9_].
Result<void> check_volume_name(std::string_view name);

std::filesystem::path volume_path(const std::filesystem::path& dir, std::string_view name);

// An empty ext4 file system of config.size_gb (sparse). Errc::exists if the name is taken.
Result<Volume> create_volume(const std::filesystem::path& dir, const VolumeConfig& config);

Result<Volume> describe_volume(const std::filesystem::path& file);

// Held while a machine uses the volume; released when destroyed.
struct VolumeLease {
  std::string name;
  std::filesystem::path path;
  UniqueFd lock;
};

// Errc::not_found when the volume does not exist, Errc::busy when another machine holds it.
Result<VolumeLease> lease_volume(const std::filesystem::path& dir, std::string_view name);

// Deletes a volume no machine holds.
Result<void> destroy_volume(const std::filesystem::path& dir, std::string_view name);

}  // namespace flick::machine
