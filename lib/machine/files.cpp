#include "machine/files.h"

#include "base/fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

namespace flick::machine {
namespace fs = std::filesystem;

Result<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return sys_error("opening " + path.string(), errno);
  std::string data(static_cast<size_t>(in.tellg()), '\0');
  in.seekg(0);
  if (!in.read(data.data(), static_cast<std::streamsize>(data.size())))
    return make_error(Errc::io, "reading " + path.string());
  return data;
}

Result<void> write_file_atomic(const fs::path& path, const void* data, size_t size) {
  // A unique temporary name, so concurrent builders (threads or processes) never collide.
  std::string tmp = (path.parent_path() / ("." + path.filename().string() + ".XXXXXX")).string();
  int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return sys_error("creating a temporary file for " + path.string(), errno);
  fchmod(fd, 0644);
  if (int err = write_all(fd, data, size)) {
    close(fd);
    unlink(tmp.c_str());
    return sys_error("writing " + tmp, err);
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return sys_error("publishing " + path.string(), err);
  }
  return {};
}

}  // namespace flick::machine
