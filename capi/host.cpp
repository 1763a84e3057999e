// flick_host_*: opening and closing a Host.
#include "objects.h"

#include <cstddef>

namespace flick::capi {

HandleTable<Host>& hosts() {
  static auto* table = new HandleTable<Host>(0x48, "host");  // never destroyed: no exit-order trouble
  return *table;
}

namespace {

constexpr size_t kHostOptionsV1 = sizeof(flick_host_options);
const flick_host_options kHostDefaults = FLICK_HOST_OPTIONS_INIT;

}  // namespace

}  // namespace flick::capi

using namespace flick::capi;

extern "C" {

int flick_host_options_init(flick_host_options* opts, unsigned int version) {
  return guarded(__func__, [&](const char* fn) {
    return init_options(opts, version, FLICK_HOST_OPTIONS_VERSION, kHostOptionsV1, kHostDefaults, fn);
  });
}

int flick_host_open(flick_host** out, const flick_host_options* given) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out, fn, "out", &rc)) return rc;
    flick_host_options o = kHostDefaults;
    if (given && (rc = read_options(&o, given, FLICK_HOST_OPTIONS_VERSION, kHostOptionsV1, fn,
                                    "flick_host_options")) != FLICK_OK)
      return rc;
    flick::HostOptions h;
    h.state_dir = str(o.state_dir);
    h.cache_dir = str(o.cache_dir);
    h.run_dir = str(o.run_dir);
    h.kernel = str(o.kernel);
    h.kernel_modules = str(o.kernel_modules);
    h.kvm_device = str(o.kvm_device);
    h.vmm_program = str(o.vmm_program);
    switch (raw_enum(o.networking)) {
      case FLICK_NETWORKING_AUTOMATIC: h.network = flick::HostOptions::Networking::automatic; break;
      case FLICK_NETWORKING_REQUIRED: h.network = flick::HostOptions::Networking::required; break;
      case FLICK_NETWORKING_NONE: h.network = flick::HostOptions::Networking::none; break;
      default:
        return fail_invalid(std::string(fn) + ": networking " + std::to_string(raw_enum(o.networking)) +
                            " is not a flick_networking value");
    }
    if (o.default_registry) h.images.default_registry = o.default_registry;
    for (auto* r = o.insecure_registries; r && *r; ++r) h.images.insecure_registries.push_back(*r);
    auto host = flick::Host::open(std::move(h));
    if (!host) return fail(host.error(), FLICK_ERROR_STORE);
    *out = hosts().add<flick_host>(std::shared_ptr<flick::Host>(std::move(host).value()));
    return ok();
  });
}

int flick_host_close(flick_host* host) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!hosts().remove(host, fn, &rc)) return rc;
    return ok();
  });
}

}  // extern "C"
