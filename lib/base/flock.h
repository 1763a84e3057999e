// flock_held: whether a live process holds the flock a file serves as (a run's run.lock,
// flickd's flickd.lock), without waiting and without taking it for longer than an instant.
#pragma once

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <filesystem>

#include "base/fd.h"

namespace flick {

// True when another open file description holds a lock on `path`; false when it is free or
// missing (the check's own shared lock goes when its descriptor closes, on return).
inline bool flock_held(const std::filesystem::path& path) noexcept {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  return fd && ::flock(fd.get(), LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
}

}  // namespace flick
