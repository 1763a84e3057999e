// MachineConfig::validate. The names of the machine enums and the JSON form are in lib/store.
#include <flick/machine.h>

#include "machine/volume.h"
#include "store/machine_config_json.h"

#include <filesystem>

namespace flick {

namespace {

Error invalid(const std::string& field, const std::string& why) {
  return make_error(Errc::invalid_argument, "machine config: " + field + ": " + why);
}

bool has_nul(const std::string& s) { return s.find('\0') != std::string::npos; }

Result<void> check_argv(const char* field, const std::vector<std::string>& argv) {
  for (size_t i = 0; i < argv.size(); ++i)
    if (has_nul(argv[i])) return invalid(std::string(field) + "[" + std::to_string(i) + "]", "contains a NUL byte");
  return {};
}

// An absolute path with no "." or ".." components, as a mount point must be.
bool clean_absolute(const std::string& p) {
  if (p.empty() || p.front() != '/' || has_nul(p)) return false;
  for (const auto& part : std::filesystem::path(p).relative_path())
    if (part == "." || part == "..") return false;
  return true;
}

}  // namespace

Result<void> MachineConfig::validate() const {
  if (image.empty()) return invalid("image", "is required");
  if (auto ref = ImageReference::parse(image); !ref) return invalid("image", ref.error().message);
  if (guest.cpu_kind != "shared" && guest.cpu_kind != "performance")
    return invalid("guest.cpu_kind", "'" + guest.cpu_kind + "' is not shared or performance");
  if (guest.cpus < 1 || guest.cpus > 254)
    return invalid("guest.cpus", std::to_string(guest.cpus) + " is not in 1..254");
  if (guest.memory_mb < 64 || guest.memory_mb > (1u << 20))
    return invalid("guest.memory_mb", std::to_string(guest.memory_mb) + " is not in 64..1048576");
  if (guest.rootfs_size_mb && (guest.rootfs_size_mb < 16 || guest.rootfs_size_mb > (1u << 20)))
    return invalid("guest.rootfs_size_mb", std::to_string(guest.rootfs_size_mb) + " is not 0 or in 16..1048576");
  if (guest.kernel.empty() && !guest.kernel_modules.empty())
    return invalid("guest.kernel_modules", "given without guest.kernel");
  for (const auto& arg : guest.kernel_args)
    if (has_nul(arg) || arg.find_first_of("\n") != std::string::npos)
      return invalid("guest.kernel_args", "an argument contains a NUL or newline");
  for (const auto& arg : init.kernel_args)
    if (has_nul(arg) || arg.find_first_of("\n") != std::string::npos)
      return invalid("init.kernel_args", "an argument contains a NUL or newline");
  for (const auto& [key, value] : env)
    if (key.empty() || key.find('=') != std::string::npos || has_nul(key) || has_nul(value))
      return invalid("env", "bad variable name '" + key + "'");
  if (!init.exec.empty() && (!init.entrypoint.empty() || !init.cmd.empty()))
    return invalid("init.exec", "replaces entrypoint and cmd: give one or the others");
  FLICK_TRY(check_argv("init.exec", init.exec));
  FLICK_TRY(check_argv("init.entrypoint", init.entrypoint));
  FLICK_TRY(check_argv("init.cmd", init.cmd));
  if (!init.workdir.empty() && !clean_absolute(init.workdir))
    return invalid("init.workdir", "'" + init.workdir + "' is not an absolute path");
  if (has_nul(init.user)) return invalid("init.user", "contains a NUL byte");
  for (size_t i = 0; i < mounts.size(); ++i) {
    std::string field = "mounts[" + std::to_string(i) + "]";
    const auto& m = mounts[i];
    if (auto r = machine::check_volume_name(m.volume); !r) return invalid(field + ".volume", r.error().message);
    if (!clean_absolute(m.path) || m.path == "/")
      return invalid(field + ".path", "'" + m.path + "' is not an absolute path other than /");
    for (size_t j = 0; j < i; ++j) {
      if (mounts[j].volume == m.volume) return invalid(field + ".volume", m.volume + " is mounted twice");
      if (mounts[j].path == m.path) return invalid(field + ".path", m.path + " is used twice");
    }
  }
  if (restart.max_retries > 1000)
    return invalid("restart.max_retries", std::to_string(restart.max_retries) + " is more than 1000");
  if (stop_config.signal < 1 || stop_config.signal > 64)
    return invalid("stop_config.signal", std::to_string(stop_config.signal) + " is not a signal number");
  if (stop_config.timeout.count() < 0 || stop_config.timeout > std::chrono::hours(24))
    return invalid("stop_config.timeout", "must be between 0 and 24 hours");
  if (start_timeout.count() <= 0) return invalid("start_timeout", "must be positive");
  for (const auto& [key, value] : metadata)
    if (key.empty()) return invalid("metadata", "an empty key");
  return store::check_json_fields(*this);
}

}  // namespace flick
