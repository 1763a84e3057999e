// The Linux kernel a machine boots, and where its modules are: Debian's cloud kernel fetched
// into flick's cache (apt-get download + dpkg-deb -x, never installed), or one the user gives.
#pragma once

#include <flick/result.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace flick::machine {

struct GuestKernel {
  std::filesystem::path vmlinuz;
  std::string release;  // uname -r, e.g. 6.1.0-56-cloud-amd64; empty when unknown
  // lib/modules/<release> holding modules.dep; none for a kernel with everything built in.
  std::optional<std::filesystem::path> modules_dir;

  // A user-supplied kernel. `kernel` is a bzImage (then `modules_dir`, when given, is its
  // lib/modules/<release>) or the root of an unpacked kernel package (boot/vmlinuz-<release>
  // and lib/modules/<release>). Without modules the release is read from the bzImage header.
  static Result<GuestKernel> from_dir(const std::filesystem::path& kernel,
                                      std::optional<std::filesystem::path> modules_dir = {});
};

// flick's cache: $FLICK_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/flick (the same place
// the Python test tooling uses, so both share downloaded kernels).
std::filesystem::path default_cache_dir();

// Resolves `package` (a metapackage such as linux-image-cloud-amd64, or a concrete
// linux-image-<version>-<flavour>) with apt-cache, downloads and unpacks it into
// cache_dir/kernels/<package>_<version>, and generates modules.dep when it is missing.
// Concurrent callers serialise on a lock file and the tree appears atomically. A kernel
// unpacked earlier is reused without running apt as long as apt's lists have not changed.
Result<GuestKernel> fetch_guest_kernel(const std::filesystem::path& cache_dir,
                                       std::string_view package = "linux-image-cloud-amd64");

}  // namespace flick::machine
