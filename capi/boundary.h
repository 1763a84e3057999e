// What every C entry point shares: the per-thread last error, the try/catch boundary, strings
// handed to the caller, and checks of arguments and options versions.
#pragma once

#include <flick/flick.h>
#include <flick/result.h>

#include <cstring>
#include <new>
#include <string>
#include <string_view>

namespace flick::capi {

// The integer a caller stored in an enum field: C lets any int through, and reading an
// out-of-range value as the enum type is undefined in C++.
template <class E>
int raw_enum(const E& e) {
  static_assert(sizeof(E) == sizeof(int));
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

// Sets this thread's last error and returns `code`.
int fail(int code, flick_error_class cls, std::string message, int sys_errno = 0);
// A flick error from a call into `area`: its code, a class (the area unless the error says
// more: the caller's input, the OS, KVM) and its message.
int fail(const Error& e, flick_error_class area);
int fail_invalid(std::string message);  // FLICK_EINVAL, FLICK_ERROR_INVALID_ARGUMENT
int ok();

// Thrown by a callback wrapper to stop the call it runs in; guarded() makes it
// FLICK_ECANCELLED with this message.
struct Cancelled {
  std::string message;
};

// Runs `body`, so that no exception leaves an entry point: a Cancelled is FLICK_ECANCELLED,
// bad_alloc FLICK_ENOMEM, anything else FLICK_EINTERNAL with what it says.
template <class F>
int guarded(const char* fn, F&& body) noexcept {
  try {
    return body(fn);
  } catch (const Cancelled& c) {
    return fail(FLICK_ECANCELLED, FLICK_ERROR_CALLBACK, std::string(fn) + ": " + c.message);
  } catch (const std::bad_alloc&) {
    return fail(FLICK_ENOMEM, FLICK_ERROR_OS, std::string(fn) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(FLICK_EINTERNAL, FLICK_ERROR_INTERNAL, std::string(fn) + ": internal error: " + e.what());
  } catch (...) {
    return fail(FLICK_EINTERNAL, FLICK_ERROR_INTERNAL, std::string(fn) + ": internal error");
  }
}

// A copy of `s` the caller frees with flick_free (NUL-terminated; may hold NULs).
char* give(std::string_view s);

// Clears an out parameter, or fails when it is NULL.
template <class T>
bool clear_out(T* out, const char* fn, const char* name, int* rc) {
  if (!out) {
    *rc = fail_invalid(std::string(fn) + ": " + name + " is NULL");
    return false;
  }
  *out = T{};
  return true;
}

// `s`, or "" for NULL.
inline std::string str(const char* s) { return s ? s : ""; }

// Checks an options struct's version against the newest this library knows; copies the
// fields the caller's version has into `*into` (the rest keep their defaults).
template <class T>
int read_options(T* into, const T* given, unsigned int newest, size_t size_of_version_1, const char* fn,
                 const char* type) {
  if (!given) return fail_invalid(std::string(fn) + ": " + type + " is NULL");
  if (given->version == 0 || given->version > newest)
    return fail_invalid(std::string(fn) + ": " + type + " version " + std::to_string(given->version) +
                        " is not one this library knows (1.." + std::to_string(newest) +
                        "): initialize it with its _INIT macro or _init function");
  const size_t size = given->version == newest ? sizeof(T) : size_of_version_1;
  std::memcpy(static_cast<void*>(into), given, size);
  return FLICK_OK;
}

// For *_options_init: the struct's defaults, only the fields of `version` written.
template <class T>
int init_options(T* opts, unsigned int version, unsigned int newest, size_t size_of_version_1, const T& defaults,
                 const char* fn) {
  if (!opts) return fail_invalid(std::string(fn) + ": opts is NULL");
  if (version == 0 || version > newest)
    return fail_invalid(std::string(fn) + ": version " + std::to_string(version) +
                        " is not one this library knows (1.." + std::to_string(newest) + ")");
  T copy = defaults;
  copy.version = version;
  std::memcpy(static_cast<void*>(opts), &copy, version == newest ? sizeof(T) : size_of_version_1);
  return ok();
}

}  // namespace flick::capi
