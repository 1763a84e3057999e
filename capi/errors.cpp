// The C ABI's errors, version and memory: the per-thread last error and how a flick::Error
// becomes a code, a class and a message.
#include "boundary.h"

#include <flick/version.h>

#include <cstdlib>

namespace flick::capi {

namespace {

struct LastError {
  std::string message;
  flick_error error{FLICK_OK, FLICK_ERROR_NONE, 0, ""};
};

thread_local LastError g_last;

int code_of(Errc c) {
  switch (c) {
    case Errc::invalid_argument: return FLICK_EINVAL;
    case Errc::not_found: return FLICK_ENOTFOUND;
    case Errc::io: return FLICK_EIO;
    case Errc::kvm_unavailable: return FLICK_EKVM;
    case Errc::no_memory: return FLICK_ENOMEM;
    case Errc::malformed: return FLICK_EMALFORMED;
    case Errc::unsupported: return FLICK_EUNSUPPORTED;
    case Errc::guest_failure: return FLICK_EGUEST;
    case Errc::timeout: return FLICK_ETIMEOUT;
    case Errc::busy: return FLICK_EBUSY;
    case Errc::limit: return FLICK_ELIMIT;
    case Errc::cancelled: return FLICK_ECANCELLED;
    case Errc::network: return FLICK_ENETWORK;
    case Errc::integrity: return FLICK_EINTEGRITY;
    case Errc::exists: return FLICK_EEXISTS;
    case Errc::lease_held: return FLICK_ELEASE;
  }
  return FLICK_EINTERNAL;
}

flick_error_class class_of(const Error& e, flick_error_class area) {
  switch (e.code) {
    case Errc::invalid_argument: return FLICK_ERROR_INVALID_ARGUMENT;
    case Errc::kvm_unavailable:
    case Errc::guest_failure: return FLICK_ERROR_VMM;
    case Errc::network: return FLICK_ERROR_REGISTRY;
    case Errc::no_memory: return FLICK_ERROR_OS;
    case Errc::io: return e.sys_errno ? FLICK_ERROR_OS : area;
    default: return area;
  }
}

}  // namespace

int fail(int code, flick_error_class cls, std::string message, int sys_errno) {
  g_last.message = std::move(message);
  g_last.error = flick_error{code, cls, sys_errno, g_last.message.c_str()};
  return code;
}

int fail(const Error& e, flick_error_class area) {
  return fail(code_of(e.code), class_of(e, area), e.describe(), e.sys_errno);
}

int fail_invalid(std::string message) {
  return fail(FLICK_EINVAL, FLICK_ERROR_INVALID_ARGUMENT, std::move(message));
}

int ok() {
  g_last.message.clear();
  g_last.error = flick_error{FLICK_OK, FLICK_ERROR_NONE, 0, g_last.message.c_str()};
  return FLICK_OK;
}

char* give(std::string_view s) {
  auto* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

}  // namespace flick::capi

extern "C" {

int flick_version(void) {
  return FLICK_VERSION_MAJOR * 10000 + FLICK_VERSION_MINOR * 100 + FLICK_VERSION_PATCH;
}

const flick_error* flick_error_last(void) { return &flick::capi::g_last.error; }

const char* flick_last_error(void) { return flick::capi::g_last.message.c_str(); }

void flick_free(void* p) { std::free(p); }

}  // extern "C"
