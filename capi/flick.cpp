// The C ABI: thin wrappers over the C++ API. Every body catches all exceptions.
#include <flick/flick.h>
#include <flick/result.h>
#include <flick/version.h>
#include <flick/vm.h>

#include <memory>
#include <new>
#include <string>

struct flick_vm {
  std::unique_ptr<flick::Vm> vm;
};

namespace {

thread_local std::string g_last_error;

int code_of(flick::Errc c) {
  switch (c) {
    case flick::Errc::invalid_argument: return FLICK_EINVAL;
    case flick::Errc::not_found: return FLICK_ENOTFOUND;
    case flick::Errc::io: return FLICK_EIO;
    case flick::Errc::kvm_unavailable: return FLICK_EKVM;
    case flick::Errc::no_memory: return FLICK_ENOMEM;
    case flick::Errc::malformed: return FLICK_EMALFORMED;
    case flick::Errc::unsupported: return FLICK_EUNSUPPORTED;
    case flick::Errc::guest_failure: return FLICK_EGUEST;
    case flick::Errc::timeout: return FLICK_ETIMEOUT;
    case flick::Errc::busy: return FLICK_EBUSY;
    case flick::Errc::limit: return FLICK_ELIMIT;
    case flick::Errc::cancelled: return FLICK_ECANCELLED;
    case flick::Errc::network: return FLICK_ENETWORK;
    case flick::Errc::integrity: return FLICK_EINTEGRITY;
    case flick::Errc::exists: return FLICK_EEXISTS;
    case flick::Errc::lease_held: return FLICK_ELEASE;
  }
  return FLICK_EINTERNAL;
}

int fail(int code, std::string message) {
  g_last_error = std::move(message);
  return code;
}

int fail(const flick::Error& e) { return fail(code_of(e.code), e.describe()); }

int ok() {
  g_last_error.clear();
  return FLICK_OK;
}

// Runs `body`, turning any exception into FLICK_EINTERNAL / FLICK_ENOMEM.
template <class F>
int guarded(F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(FLICK_ENOMEM, "out of memory");
  } catch (const std::exception& e) {
    return fail(FLICK_EINTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return fail(FLICK_EINTERNAL, "internal error");
  }
}

flick_vm_exit_reason reason_of(flick::VmExitReason r) {
  switch (r) {
    case flick::VmExitReason::power_off: return FLICK_VM_EXIT_POWER_OFF;
    case flick::VmExitReason::reboot: return FLICK_VM_EXIT_REBOOT;
    case flick::VmExitReason::panic: return FLICK_VM_EXIT_PANIC;
    case flick::VmExitReason::crash: return FLICK_VM_EXIT_CRASH;
    case flick::VmExitReason::kvm_error: return FLICK_VM_EXIT_KVM_ERROR;
    case flick::VmExitReason::stopped: return FLICK_VM_EXIT_STOPPED;
    case flick::VmExitReason::vmm_error: return FLICK_VM_EXIT_VMM_ERROR;
  }
  return FLICK_VM_EXIT_VMM_ERROR;
}

}  // namespace

extern "C" {

int flick_version(void) {
  return FLICK_VERSION_MAJOR * 10000 + FLICK_VERSION_MINOR * 100 + FLICK_VERSION_PATCH;
}

const char* flick_last_error(void) { return g_last_error.c_str(); }

int flick_vm_options_init(flick_vm_options* opts, unsigned int version) {
  if (!opts) return fail(FLICK_EINVAL, "flick_vm_options_init: opts is NULL");
  if (version == 0 || version > FLICK_VM_OPTIONS_VERSION)
    return fail(FLICK_EINVAL, "flick_vm_options_init: unknown options version " + std::to_string(version));
  *opts = flick_vm_options{};
  opts->version = version;
  opts->cpus = 1;
  opts->memory_mib = 256;
  return ok();
}

int flick_vm_create(flick_vm** out, const flick_vm_options* opts) {
  return guarded([&]() -> int {
    if (!out || !opts) return fail(FLICK_EINVAL, "flick_vm_create: out and opts are required");
    *out = nullptr;
    if (opts->version == 0 || opts->version > FLICK_VM_OPTIONS_VERSION)
      return fail(FLICK_EINVAL, "flick_vm_create: unknown options version " + std::to_string(opts->version) +
                                    " (call flick_vm_options_init first)");
    if (!opts->kernel) return fail(FLICK_EINVAL, "flick_vm_create: no kernel given");
    flick::VmConfig cfg;
    cfg.kernel = opts->kernel;
    if (opts->initrd) cfg.initrd = opts->initrd;
    if (opts->cmdline) cfg.cmdline = opts->cmdline;
    if (opts->cpus) cfg.cpus = opts->cpus;
    if (opts->memory_mib) cfg.memory_mib = opts->memory_mib;
    if (opts->console) {
      auto fn = opts->console;
      void* ud = opts->console_userdata;
      cfg.console = [fn, ud](std::string_view s) { fn(ud, s.data(), s.size()); };
    }
    auto vm = flick::Vm::create(cfg);
    if (!vm) return fail(vm.error());
    *out = new flick_vm{std::move(vm).value()};
    return ok();
  });
}

int flick_vm_start(flick_vm* vm) {
  return guarded([&]() -> int {
    if (!vm) return fail(FLICK_EINVAL, "flick_vm_start: vm is NULL");
    if (auto r = vm->vm->start(); !r) return fail(r.error());
    return ok();
  });
}

int flick_vm_wait(flick_vm_exit_reason* out_reason, flick_vm* vm, int timeout_ms) {
  return guarded([&]() -> int {
    if (!vm || !out_reason) return fail(FLICK_EINVAL, "flick_vm_wait: vm and out_reason are required");
    std::optional<flick::VmExit> e;
    if (timeout_ms < 0) {
      e = vm->vm->wait();
    } else {
      e = vm->vm->wait_for(std::chrono::milliseconds(timeout_ms));
      if (!e) return fail(FLICK_ETIMEOUT, "the VM is still running");
    }
    *out_reason = reason_of(e->reason);
    g_last_error = e->detail;
    return static_cast<int>(FLICK_OK);
  });
}

int flick_vm_stop(flick_vm* vm) {
  return guarded([&]() -> int {
    if (!vm) return fail(FLICK_EINVAL, "flick_vm_stop: vm is NULL");
    vm->vm->stop();
    return ok();
  });
}

void flick_vm_free(flick_vm* vm) {
  try {
    delete vm;
  } catch (...) {
  }
}

}  // extern "C"
