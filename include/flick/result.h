// Error and Result<T>: how every flick function reports failure.
//
// flick does not throw across its API. A fallible function returns Result<T>, which holds
// either a value or an Error saying what was attempted, on what, and why it failed.
#pragma once

#include <flick/export.h>

#include <cassert>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace flick {

// Broad classes of failure; the C ABI maps each to a stable negative code.
enum class Errc {
  invalid_argument = 1,  // the caller passed something flick cannot use
  not_found,             // a file, image, machine or volume does not exist
  io,                    // a read, write or system call on the host failed
  kvm_unavailable,       // /dev/kvm missing, not accessible, or missing a needed capability
  no_memory,             // host memory or guest address space exhausted
  malformed,             // a kernel, image or other input is not what it claims to be
  unsupported,           // valid, but flick does not handle it
  guest_failure,         // the guest crashed, triple-faulted or hit a KVM internal error
  timeout,               // a wait ran out of time
  busy,                  // the object is in a state that does not allow the operation
  limit,                 // a configured limit (size, count, length) was exceeded
  cancelled,             // stopped on request
  network,               // a remote peer or the network failed
  integrity,             // a digest or checksum did not match
  exists,                // a machine or volume of that name already exists
  lease_held,            // a machine's lease is held and the call did not carry its nonce (Fly's 409)
};

FLICK_API const char* to_string(Errc code) noexcept;

struct FLICK_API Error {
  Errc code = Errc::io;
  int sys_errno = 0;    // errno of the failed system call, or 0
  std::string message;  // "what was attempted: why" — actionable, no trailing newline

  // The message, followed by strerror(sys_errno) when there is one.
  std::string describe() const;

  // Prefixes the message with more context: "ctx: <message>".
  Error&& with_context(const std::string& ctx) &&;
};

// An Error built from the current errno.
FLICK_API Error sys_error(std::string what, int err);
FLICK_API Error make_error(Errc code, std::string message);

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& { assert(!ok()); return std::get<1>(v_); }
  Error&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const& { assert(!ok_); return error_; }
  Error&& error() && { assert(!ok_); return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

// Evaluates a Result-returning expression and returns its Error from the enclosing function
// on failure. FLICK_TRY_ASSIGN(x, expr) also binds the value.
#define FLICK_TRY(expr)                                  \
  do {                                                   \
    if (auto flick_try_r_ = (expr); !flick_try_r_.ok())  \
      return std::move(flick_try_r_).error();            \
  } while (0)

#define FLICK_CONCAT_INNER_(a, b) a##b
#define FLICK_CONCAT_(a, b) FLICK_CONCAT_INNER_(a, b)
#define FLICK_TRY_ASSIGN(lhs, expr) \
  FLICK_TRY_ASSIGN_IMPL_(FLICK_CONCAT_(flick_try_v_, __LINE__), lhs, expr)
#define FLICK_TRY_ASSIGN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return std::move(tmp).error(); \
  lhs = std::move(tmp).value()

}  // namespace flick
