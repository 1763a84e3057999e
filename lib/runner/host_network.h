// A machine's private link to the host: a TAP per run, a /30 from 172.19.0.0/16 held for the
// machine's life (a lock file in the run directory, so other processes skip it), the host's
// end of the /30 on the TAP. The TAP is not persistent: it goes when the VM closes it.
#pragma once

#include "base/fd.h"

#include <flick/machine.h>
#include <flick/result.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace flick::runner {

// True when this process may create TAP devices (CAP_NET_ADMIN and /dev/net/tun).
bool can_create_taps();

// Holds /30 number `index` through an flock on run_dir/subnets/<index>; the file is removed
// (still locked) when the lease ends, and a lease is only taken on a file still in place.
struct SubnetLease {
  SubnetLease(uint32_t i, std::filesystem::path p, UniqueFd fd) : index(i), path(std::move(p)), lock(std::move(fd)) {}
  SubnetLease(SubnetLease&&) = default;
  SubnetLease& operator=(SubnetLease&& other) noexcept {
    if (this != &other) {
      release();
      index = other.index;
      path = std::move(other.path);
      lock = std::move(other.lock);
    }
    return *this;
  }
  ~SubnetLease() { release(); }
  void release();

  uint32_t index = 0;  // the /30 is 172.19.0.0 + 4 * index
  std::filesystem::path path;
  UniqueFd lock;
};

// The first free /30 at or after `preferred` (mod the pool), held until the lease is dropped.
Result<SubnetLease> lease_subnet(const std::filesystem::path& run_dir, uint32_t preferred);

// The addresses of /30 number `index`: the host gets .1, the guest .2.
MachineNetwork subnet_addresses(uint32_t index, const std::string& tap);

// Gives the TAP `name` the host's address of `net` and brings it up (rtnetlink).
Result<void> configure_tap(const MachineNetwork& net);

}  // namespace flick::runner
