/* flick_version and flick_has_feature from C, linked with the shared library: no KVM needed. */
#include <flick/flick.h>

#include <stdio.h>
#include <string.h>

static int failures;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

int main(void) {
  char expected[32];

  CHECK(flick_version() == FLICK_VERSION_NUMBER);
  CHECK(FLICK_VERSION_NUMBER ==
        FLICK_VERSION_MAJOR * 10000 + FLICK_VERSION_MINOR * 100 + FLICK_VERSION_PATCH);
  snprintf(expected, sizeof expected, "%d.%d.%d", FLICK_VERSION_MAJOR, FLICK_VERSION_MINOR,
           FLICK_VERSION_PATCH);
  CHECK(strcmp(expected, FLICK_VERSION_STRING) == 0);

  CHECK(flick_has_feature("kvm") == 1);
  CHECK(flick_has_feature("machines") == 1);
  CHECK(flick_has_feature("images") == 1);
  CHECK(flick_has_feature("registry") == 1);
  CHECK(flick_has_feature("volumes") == 1);
  CHECK(flick_has_feature("vsock") == 1);
  CHECK(flick_has_feature("suspend") == 0);
  CHECK(flick_has_feature("teleport") == 0);
  CHECK(flick_has_feature("KVM") == 0); /* names are exact */
  CHECK(flick_has_feature("kvm ") == 0);
  CHECK(flick_has_feature("") == 0);
  CHECK(flick_has_feature(NULL) == 0);

  if (failures) return 1;
  printf("flick %s: features checked\n", FLICK_VERSION_STRING);
  return 0;
}
