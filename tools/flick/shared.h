// What the commands share besides the command line (command.h): the image store's
// environment.
#pragma once

#include <flick/image.h>

#include "base/fd.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace flick::cli {

// Splits "a,b,c" on commas (empty parts kept).
inline std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

// Image store options from FLICK_DEFAULT_REGISTRY and FLICK_INSECURE_REGISTRIES (a comma-
// separated list of hosts spoken to over plain http).
inline StoreOptions store_options_from_env() {
  StoreOptions o;
  if (const char* r = std::getenv("FLICK_DEFAULT_REGISTRY"); r && *r) o.default_registry = r;
  if (const char* list = std::getenv("FLICK_INSECURE_REGISTRIES"))
    for (auto& host : split_commas(list))
      if (!host.empty()) o.insecure_registries.push_back(std::move(host));
  return o;
}

}  // namespace flick::cli
