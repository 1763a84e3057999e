#include "runner/machine_dir.h"

#include <unistd.h>

namespace flick::runner {

namespace fs = std::filesystem;

Result<void> remove_machine_files(const fs::path& dir) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (it->path().filename() == kRunLock) continue;
    fs::remove_all(it->path(), ec);
    if (ec) break;
  }
  if (ec && ec != std::errc::no_such_file_or_directory)
    return make_error(Errc::io, "removing machine directory " + dir.string() + ": " + ec.message());
  return {};
}

void remove_machine_dir(const fs::path& dir) {
  ::unlink((dir / kRunLock).c_str());
  ::rmdir(dir.c_str());
}

}  // namespace flick::runner
