// flick_has_feature: what this build of the library can do, asked by name at run time, so a
// binding can adapt to the library it loaded instead of trusting the header it was built with.
#include <flick/flick.h>

#include <cstring>

namespace {

struct Feature {
  const char* name;
  bool present;
};

// Build features, not host state: "kvm" says the KVM backend is compiled in; whether this
// host's /dev/kvm works is found by creating a VM (FLICK_EKVM). Names are never removed.
constexpr Feature kFeatures[] = {
    {"kvm", true},      {"machines", true}, {"images", true},   {"registry", true},
    {"volumes", true},  {"vsock", true},    {"suspend", false},  // until snapshots land
};

}  // namespace

extern "C" int flick_has_feature(const char* name) {
  if (!name) return 0;
  for (const Feature& f : kFeatures)
    if (std::strcmp(f.name, name) == 0) return f.present ? 1 : 0;
  return 0;
}
