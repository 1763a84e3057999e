// Tap: a Linux TAP interface opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, so every frame
// read or written carries a 12-byte virtio_net_hdr (virtio 1.2 §5.1.6) in front.
#pragma once

#include "base/fd.h"

#include <flick/result.h>

#include <string>

namespace flick::virtio {

class Tap {
 public:
  static constexpr int kVnetHdrSize = 12;

  // Opens (creating if needed) the TAP interface `name` in the calling thread's network
  // namespace. The fd is non-blocking.
  static Result<Tap> open(const std::string& name);
  // Adopts an already configured TAP fd (IFF_VNET_HDR set); sets the header size.
  static Result<Tap> adopt(UniqueFd fd);

  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }
  // TUNSETOFFLOAD: which offloads the reader (the guest) accepts (TUN_F_* bits).
  Result<void> set_offloads(unsigned flags) const;

 private:
  UniqueFd fd_;
  std::string name_;
};

}  // namespace flick::virtio
