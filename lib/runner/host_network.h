// A machine's private link to the host: a TAP per run, a /30 from 172.19.0.0/16 kept for the
// machine's life (the store gives each live machine its own), the host's end of the /30 on
// the TAP. The TAP is not persistent: it goes when the VM closes it.
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

// The addresses of /30 number `index`: the host gets .1, the guest .2.
MachineNetwork subnet_addresses(uint32_t index, const std::string& tap);

// Gives the TAP `name` the host's address of `net` and brings it up (rtnetlink).
Result<void> configure_tap(const MachineNetwork& net);

}  // namespace flick::runner
