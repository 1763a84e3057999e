/* flick.h: the stable C ABI of flick.
 *
 * Conventions: opaque handles; every function returns 0 or a negative FLICK_E* code (the list
 * only grows); flick_last_error() gives this thread's message for the last failure; out
 * parameters come first; whoever allocates provides the free; options structs start with a
 * version field. */
#ifndef FLICK_H
#define FLICK_H

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

#define FLICK_VERSION_NUMBER 100 /* major * 10000 + minor * 100 + patch */

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
  FLICK_EINTERNAL = -100
};

/* The library's version as major * 10000 + minor * 100 + patch. */
FLICK_C_API int flick_version(void);

/* The message of this thread's last failed call ("" if none). Valid until the next call. */
FLICK_C_API const char* flick_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* FLICK_H */
