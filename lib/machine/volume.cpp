#include "machine/volume.h"

#include <flick/image.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

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

fs::path volume_path(const fs::path& dir, std::string_view name) {
  return dir / (std::string(name) + ".ext4");
}

Result<Volume> describe_volume(const fs::path& file) {
  struct stat st{};
  if (::stat(file.c_str(), &st) != 0) return sys_error("volume " + file.string(), errno);
  return Volume{file.stem().string(), file, static_cast<uint64_t>(st.st_size), {}};
}

Result<Volume> create_volume(const fs::path& dir, const VolumeConfig& config) {
  FLICK_TRY(check_volume_name(config.name));
  if (config.size_gb < 1 || config.size_gb > 16384)
    return make_error(Errc::invalid_argument, "volume " + config.name + ": size_gb " +
                                                  std::to_string(config.size_gb) + " is not in 1..16384");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(Errc::io, "creating " + dir.string() + ": " + ec.message());
  fs::path path = volume_path(dir, config.name);
  if (fs::exists(path, ec)) return make_error(Errc::exists, "volume " + config.name + " already exists");
  // Built aside, then linked into place: the name never points at a half-made file system,
  // and link() fails if another process took the name meanwhile.
  fs::path tmp = dir / ("." + config.name + ".ext4.tmp" + std::to_string(::getpid()));
  RootfsOptions o;
  o.size_bytes = config.size_gb << 30;
  auto built = build_rootfs({}, tmp, o);
  if (!built) return std::move(built).error().with_context("creating volume " + config.name);
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0) {
    if (err == EEXIST) return make_error(Errc::exists, "volume " + config.name + " already exists");
    return sys_error("creating volume " + path.string(), err);
  }
  return describe_volume(path);
}

Result<VolumeLease> lease_volume(const fs::path& dir, std::string_view name) {
  FLICK_TRY(check_volume_name(name));
  fs::path path = volume_path(dir, name);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT)
      return make_error(Errc::not_found, "volume " + std::string(name) + " does not exist: create it first");
    return sys_error("opening volume " + path.string(), errno);
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return make_error(Errc::busy, "volume " + std::string(name) + " is in use by another machine");
    return sys_error("locking volume " + path.string(), errno);
  }
  return VolumeLease{std::string(name), path, std::move(fd)};
}

Result<void> destroy_volume(const fs::path& dir, std::string_view name) {
  FLICK_TRY_ASSIGN(auto lease, lease_volume(dir, name));
  if (::unlink(lease.path.c_str()) != 0) return sys_error("deleting volume " + lease.path.string(), errno);
  return {};
}

}  // namespace flick::machine
