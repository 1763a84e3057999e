// Small helpers the subcommands share: numbers from arguments, whole writes to a descriptor.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace flick::cli {

// A decimal number in 0..max, the whole of `s`.
inline bool parse_uint(const char* s, uint64_t max, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno || !end || *end || end == s || *s == '-' || v > max) return false;
  *out = v;
  return true;
}

// Writes all of `s` (console output: a closed pipe just ends it).
inline void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    s.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace flick::cli
