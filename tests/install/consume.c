/* A C program built against the installed flick.h and libflick alone (pkg-config flick): the
 * header must be self-contained C, and the library must resolve through its soname. */
#define _GNU_SOURCE
#include <flick/flick.h>

#include <link.h>
#include <stdio.h>
#include <string.h>

/* Finds the loaded libflick among this process's shared objects. */
static int find_libflick(struct dl_phdr_info* info, size_t size, void* out) {
  (void)size;
  if (!strstr(info->dlpi_name, "/libflick.so")) return 0;
  *(const char**)out = info->dlpi_name;
  return 1;
}

int main(void) {
  flick_vm_options opts;
  const char* loaded = NULL;

  if (flick_version() != FLICK_VERSION_NUMBER) {
    fprintf(stderr, "flick_version() %d, header %d\n", flick_version(), FLICK_VERSION_NUMBER);
    return 1;
  }
  if (flick_has_feature("machines") != 1 || flick_has_feature("no-such-feature") != 0) {
    fprintf(stderr, "flick_has_feature answers wrongly\n");
    return 1;
  }
  if (flick_vm_options_init(&opts, FLICK_VM_OPTIONS_VERSION) != FLICK_OK ||
      opts.version != FLICK_VM_OPTIONS_VERSION || opts.cpus != 1) {
    fprintf(stderr, "flick_vm_options_init: %s\n", flick_last_error());
    return 1;
  }
  if (!dl_iterate_phdr(find_libflick, &loaded)) {
    fprintf(stderr, "libflick is not among the loaded objects\n");
    return 1;
  }
  /* The test checks that this is the installed copy. */
  printf("flick %s from %s\n", FLICK_VERSION_STRING, loaded);
  return 0;
}
