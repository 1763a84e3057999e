// BusDevice: what a port-I/O or MMIO bus dispatches guest accesses to.
#pragma once

#include <cstdint>
#include <span>

namespace flick {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // `offset` is relative to the base the device was inserted at. `data` is the access width
  // (1, 2, 4 or 8 bytes). Reads fill `data`; a device leaves bytes it does not implement zero.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

}  // namespace flick
