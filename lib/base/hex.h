// Numbers in error messages: guest addresses and offsets in hex, sizes in MiB.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace flick {

inline std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

inline std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

}  // namespace flick
