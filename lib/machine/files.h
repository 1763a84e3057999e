// Whole-file reads and atomic writes for the machine layer's caches.
#pragma once

#include <flick/result.h>

#include <filesystem>
#include <string>

namespace flick::machine {

Result<std::string> read_file(const std::filesystem::path& path);

// Writes to a unique temporary name beside `path`, then renames it into place: readers see
// the old file or the whole new one, and concurrent writers never collide.
Result<void> write_file_atomic(const std::filesystem::path& path, const void* data, size_t size);

}  // namespace flick::machine
