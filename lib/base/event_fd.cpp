#include "base/event_fd.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace flick {

Result<EventFd> EventFd::create(bool nonblocking) {
  int fd = ::eventfd(0, EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0));
  if (fd < 0) return sys_error("creating an eventfd", errno);
  EventFd e;
  e.fd_.reset(fd);
  return e;
}

Result<void> EventFd::signal(uint64_t n) const {
  if (::write(fd_.get(), &n, sizeof n) != sizeof n) return sys_error("signalling an eventfd", errno);
  return {};
}

Result<uint64_t> EventFd::consume() const {
  uint64_t n = 0;
  ssize_t r = ::read(fd_.get(), &n, sizeof n);
  if (r == sizeof n) return n;
  if (r < 0 && errno == EAGAIN) return uint64_t{0};
  return sys_error("reading an eventfd", errno);
}

}  // namespace flick
