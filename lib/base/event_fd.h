// EventFd: a counter file descriptor used for ioeventfd, irqfd and waking I/O threads.
#pragma once

#include "base/fd.h"

#include <flick/result.h>

#include <cstdint>

namespace flick {

class EventFd {
 public:
  static Result<EventFd> create(bool nonblocking = true);
  int fd() const { return fd_.get(); }
  Result<void> signal(uint64_t n = 1) const;
  // Returns the accumulated count and resets it; 0 if nothing was pending (non-blocking).
  Result<uint64_t> consume() const;

 private:
  UniqueFd fd_;
};

}  // namespace flick
