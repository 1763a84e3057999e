// The virtio-blk request header and discard/write-zeroes segment as a driver lays them out in
// guest memory (virtio 1.2 §5.2.6), for tests that play the driver.
#pragma once

#include <cstdint>

namespace flick::virtio::testing {

struct ReqHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
struct Segment {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};

}  // namespace flick::virtio::testing
