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

// A registry mirror as `[REGISTRY=]MIRROR` (no REGISTRY: a mirror of docker.io, as dockerd's).
inline void add_registry_mirror(StoreOptions& o, const std::string& spec) {
  const size_t eq = spec.find('=');
  const std::string registry = eq == std::string::npos ? "docker.io" : spec.substr(0, eq);
  std::string mirror = eq == std::string::npos ? spec : spec.substr(eq + 1);
  if (!mirror.empty()) o.registry_mirrors[registry].push_back(std::move(mirror));
}

// Image store options from FLICK_DEFAULT_REGISTRY, FLICK_INSECURE_REGISTRIES (a comma-
// separated list of hosts whose TLS is not verified, else plain http) and
// FLICK_REGISTRY_MIRRORS (a comma-separated list of [REGISTRY=]MIRROR).
inline StoreOptions store_options_from_env() {
  StoreOptions o;
  if (const char* r = std::getenv("FLICK_DEFAULT_REGISTRY"); r && *r) o.default_registry = r;
  if (const char* list = std::getenv("FLICK_INSECURE_REGISTRIES"))
    for (auto& host : split_commas(list))
      if (!host.empty()) o.insecure_registries.push_back(std::move(host));
  if (const char* list = std::getenv("FLICK_REGISTRY_MIRRORS"))
    for (const auto& spec : split_commas(list)) add_registry_mirror(o, spec);
  return o;
}

}  // namespace flick::cli
