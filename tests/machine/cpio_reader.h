// Reads a (possibly gzip'd) newc cpio back with libarchive, for checking what was written.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace flick::machine::testing {

struct CpioItem {
  mode_t mode = 0;
  std::string data;
  unsigned rdev_major = 0, rdev_minor = 0;
  int64_t uid = -1, gid = -1, mtime = -1;
};

// Path (as stored, no leading slash) -> entry; empty map and `error` set on failure.
std::map<std::string, CpioItem> read_cpio(const std::vector<uint8_t>& bytes, std::string* error);

}  // namespace flick::machine::testing
