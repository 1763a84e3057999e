#include "machine/volume.h"

#include <flick/image.h>

#include <unistd.h>

#include <cerrno>

namespace fs = std::filesystem;

namespace flick::machine {

Result<void> check_volume_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 30;
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  if (!ok)
    return make_error(Errc::invalid_argument, "volume name '" + std::string(name) +
                                                  "': use 1 to 30 of a-z, 0-9 and _");
  return {};
}

Result<void> make_volume_file(const fs::path& path, uint64_t size_gb) {
  if (size_gb < 1 || size_gb > kMaxVolumeGb)
    return make_error(Errc::invalid_argument, "volume size_gb " + std::to_string(size_gb) + " is not in 1.." +
                                                  std::to_string(kMaxVolumeGb));
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return make_error(Errc::io, "creating " + path.parent_path().string() + ": " + ec.message());
  // link() fails if another process made the name meanwhile.
  fs::path tmp = path.parent_path() / ("." + path.filename().string() + ".tmp" + std::to_string(::getpid()));
  RootfsOptions o;
  o.size_bytes = size_gb << 30;
  auto built = build_rootfs({}, tmp, o);
  if (!built) return std::move(built).error().with_context("creating volume " + path.string());
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0) {
    if (err == EEXIST) return make_error(Errc::exists, "volume file " + path.string() + " already exists");
    return sys_error("creating volume " + path.string(), err);
  }
  return {};
}

}  // namespace flick::machine
