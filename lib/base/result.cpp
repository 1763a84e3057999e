#include <flick/result.h>

#include <cstring>

namespace flick {

const char* to_string(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_argument: return "invalid argument";
    case Errc::not_found: return "not found";
    case Errc::io: return "I/O error";
    case Errc::kvm_unavailable: return "KVM unavailable";
    case Errc::no_memory: return "out of memory";
    case Errc::malformed: return "malformed input";
    case Errc::unsupported: return "unsupported";
    case Errc::guest_failure: return "guest failure";
    case Errc::timeout: return "timed out";
    case Errc::busy: return "busy";
    case Errc::limit: return "limit exceeded";
    case Errc::cancelled: return "cancelled";
    case Errc::network: return "network error";
    case Errc::integrity: return "integrity check failed";
    case Errc::exists: return "already exists";
    case Errc::lease_held: return "lease held";
  }
  return "unknown error";
}

std::string Error::describe() const {
  if (sys_errno == 0) return message;
  return message + ": " + std::strerror(sys_errno);
}

Error&& Error::with_context(const std::string& ctx) && {
  message = ctx + ": " + message;
  return std::move(*this);
}

Error sys_error(std::string what, int err) {
  Errc code = Errc::io;
  switch (err) {
    case ENOENT: code = Errc::not_found; break;
    case ENOMEM: code = Errc::no_memory; break;
    case EINVAL: code = Errc::invalid_argument; break;
    case EBUSY: case EAGAIN: code = Errc::busy; break;
    case ETIMEDOUT: code = Errc::timeout; break;
    case ENOSPC: case EFBIG: code = Errc::limit; break;
    default: break;
  }
  return Error{code, err, std::move(what)};
}

Error make_error(Errc code, std::string message) { return Error{code, 0, std::move(message)}; }

}  // namespace flick
