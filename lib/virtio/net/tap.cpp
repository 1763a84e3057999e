#include "virtio/net/tap.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

namespace flick::virtio {

Result<Tap> Tap::open(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ)
    return make_error(Errc::invalid_argument, "TAP name must be 1 to 15 characters: '" + name + "'");
  int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return sys_error("opening /dev/net/tun", errno);
  UniqueFd owned(fd);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) return sys_error("creating TAP interface " + name, errno);
  FLICK_TRY_ASSIGN(Tap t, adopt(std::move(owned)));
  t.name_ = ifr.ifr_name;
  return t;
}

Result<Tap> Tap::adopt(UniqueFd fd) {
  int hdr = kVnetHdrSize;
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr) != 0)
    return sys_error("setting the TAP virtio header size", errno);
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0)
    return sys_error("making the TAP fd non-blocking", errno);
  Tap t;
  t.fd_ = std::move(fd);
  return t;
}

Result<void> Tap::set_offloads(unsigned flags) const {
  if (::ioctl(fd_.get(), TUNSETOFFLOAD, flags) != 0)
    return sys_error("setting TAP offloads on " + name_, errno);
  return {};
}

}  // namespace flick::virtio
