// Bus: maps non-overlapping address ranges to devices. One for port I/O, one for MMIO.
// Built before the vCPUs start and read-only afterwards, so lookups take no lock.
#pragma once

#include "base/bus_device.h"

#include <flick/result.h>

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

namespace flick::vmm {

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}

  // Adds `device` at [base, base+len). Fails if the range is empty, wraps, or overlaps.
  Result<void> insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t len);

  // Dispatch an access; false when no device covers [addr, addr+size).
  bool read(uint64_t addr, std::span<uint8_t> data) const;
  bool write(uint64_t addr, std::span<const uint8_t> data) const;

 private:
  struct Entry {
    uint64_t len;
    std::shared_ptr<BusDevice> device;
  };
  const std::pair<const uint64_t, Entry>* find(uint64_t addr, uint64_t size) const;

  std::string name_;
  std::map<uint64_t, Entry> ranges_;  // keyed by base
};

}  // namespace flick::vmm
