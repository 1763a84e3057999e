/* flick.h: the stable C ABI of flick.
 *
 * Conventions: opaque handles; every function returns 0 or a negative FLICK_E* code (the list
 * only grows); flick_last_error() gives this thread's message for the last failure; out
 * parameters come first; whoever allocates provides the free; options structs start with a
 * version field. */
#ifndef FLICK_H
#define FLICK_H

#include <flick/version.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FLICK_BUILDING_LIBRARY)
#define FLICK_C_API __attribute__((visibility("default")))
#else
#define FLICK_C_API
#endif

enum {
  FLICK_OK = 0,
  FLICK_EINVAL = -1,
  FLICK_ENOTFOUND = -2,
  FLICK_EIO = -3,
  FLICK_EKVM = -4,
  FLICK_ENOMEM = -5,
  FLICK_EMALFORMED = -6,
  FLICK_EUNSUPPORTED = -7,
  FLICK_EGUEST = -8,
  FLICK_ETIMEOUT = -9,
  FLICK_EBUSY = -10,
  FLICK_ELIMIT = -11,
  FLICK_ECANCELLED = -12,
  FLICK_ENETWORK = -13,
  FLICK_EINTEGRITY = -14,
  FLICK_EEXISTS = -15,
  FLICK_ELEASE = -16,
  FLICK_EINTERNAL = -100
};

/* The library's version as major * 10000 + minor * 100 + patch. */
FLICK_C_API int flick_version(void);

/* 1 if this build of the library has the feature `name`, else 0 (also for unknown names and
 * NULL). Names: "kvm", "machines", "images", "registry", "volumes", "vsock", "suspend". A
 * build feature, not host state: "kvm" does not say whether this host's /dev/kvm works. */
FLICK_C_API int flick_has_feature(const char* name);

/* The message of this thread's last failed call ("" if none). Valid until the next call. */
FLICK_C_API const char* flick_last_error(void);

/* ---- Virtual machines: boot a kernel, wait for it to end. ---- */

typedef struct flick_vm flick_vm;

#define FLICK_VM_OPTIONS_VERSION 1

typedef struct flick_vm_options {
  unsigned int version;     /* FLICK_VM_OPTIONS_VERSION */
  const char* kernel;       /* bzImage or vmlinux ELF; required */
  const char* initrd;       /* optional (NULL) */
  const char* cmdline;      /* NULL: "console=ttyS0 panic=-1 pci=off" */
  uint32_t cpus;            /* 0: 1 */
  uint64_t memory_mib;      /* 0: 256 */
  /* Receives the guest's serial console output, on a vCPU thread; may be NULL. */
  void (*console)(void* userdata, const char* data, size_t len);
  void* console_userdata;
} flick_vm_options;

/* Fills `opts` with the defaults of this `version` of the struct. */
FLICK_C_API int flick_vm_options_init(flick_vm_options* opts, unsigned int version);

typedef enum flick_vm_exit_reason {
  FLICK_VM_EXIT_POWER_OFF = 0,
  FLICK_VM_EXIT_REBOOT = 1,
  FLICK_VM_EXIT_PANIC = 2,
  FLICK_VM_EXIT_CRASH = 3,
  FLICK_VM_EXIT_KVM_ERROR = 4,
  FLICK_VM_EXIT_STOPPED = 5,
  FLICK_VM_EXIT_VMM_ERROR = 6
} flick_vm_exit_reason;

/* Creates a VM (KVM, memory, kernel, devices) ready to start. Free it with flick_vm_free. */
FLICK_C_API int flick_vm_create(flick_vm** out, const flick_vm_options* opts);
FLICK_C_API int flick_vm_start(flick_vm* vm);
/* Waits for the VM to end, at most `timeout_ms` (negative: forever). On FLICK_OK, *out_reason
 * says how it ended and flick_last_error() holds the one-line detail; FLICK_ETIMEOUT if it
 * is still running. */
FLICK_C_API int flick_vm_wait(flick_vm_exit_reason* out_reason, flick_vm* vm, int timeout_ms);
/* Stops the VM now (a no-op once it has ended). */
FLICK_C_API int flick_vm_stop(flick_vm* vm);
/* Stops the VM if needed and releases everything it holds. NULL is fine. */
FLICK_C_API void flick_vm_free(flick_vm* vm);

#ifdef __cplusplus
}
#endif

#endif /* FLICK_H */
