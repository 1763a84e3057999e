#include "machine/log_follower.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

namespace flick::machine {

LogFollower::LogFollower(std::filesystem::path path, From from) : path_(std::move(path)) {
  struct stat st{};
  if (from == From::end && ::stat(path_.c_str(), &st) == 0) offset_ = st.st_size;
}

void LogFollower::drain(const std::function<void(std::string_view)>& sink) {
  for (;;) {
    if (!fd_) {
      fd_.reset(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
      struct stat st{};
      if (fd_ && ::fstat(fd_.get(), &st) == 0 && st.st_size < offset_) offset_ = 0;  // replaced since
    }
    if (!fd_) return;
    char buf[16384];
    ssize_t n;
    while ((n = ::pread(fd_.get(), buf, sizeof buf, offset_)) > 0) {
      offset_ += n;
      sink({buf, static_cast<size_t>(n)});
    }
    // At the end of this file: if the run has since moved it aside, go on in the new one.
    struct stat now{}, opened{};
    if (::stat(path_.c_str(), &now) != 0 || ::fstat(fd_.get(), &opened) != 0 ||
        (now.st_ino == opened.st_ino && now.st_dev == opened.st_dev))
      return;
    fd_.reset();
    offset_ = 0;
  }
}

}  // namespace flick::machine
