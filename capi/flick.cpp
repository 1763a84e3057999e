// The C ABI: thin wrappers over the C++ API. Every body catches all exceptions.
#include <flick/flick.h>
#include <flick/result.h>
#include <flick/version.h>

#include <string>

namespace {
thread_local std::string g_last_error;
}  // namespace

extern "C" {

int flick_version(void) {
  return FLICK_VERSION_MAJOR * 10000 + FLICK_VERSION_MINOR * 100 + FLICK_VERSION_PATCH;
}

const char* flick_last_error(void) { return g_last_error.c_str(); }

}  // extern "C"
