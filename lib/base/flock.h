// flock_held: whether a live process holds the flock a file serves as (a run's run.lock,
// flickd's flickd.lock), without waiting and without taking it for longer than an instant.
// lock_exclusive: a lock file's exclusive flock, waited for, held by the returned descriptor.
#pragma once

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <filesystem>

#include <flick/result.h>

#include "base/fd.h"

namespace flick {

// True when another open file description holds a lock on `path`; false when it is free or
// missing (the check's own shared lock goes when its descriptor closes, on return).
inline bool flock_held(const std::filesystem::path& path) noexcept {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  return fd && ::flock(fd.get(), LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
}

// Opens `path` (creating it) and waits for its exclusive flock, which lasts as long as the
// returned descriptor.
inline Result<UniqueFd> lock_exclusive(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return sys_error("opening lock file " + path.string(), errno);
  while (::flock(fd.get(), LOCK_EX) != 0)
    if (errno != EINTR) return sys_error("locking " + path.string(), errno);
  return fd;
}

}  // namespace flick
