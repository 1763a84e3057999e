/* Drives the C ABI as a C program would: errors, then a real boot of the test guest. */
#include <flick/flick.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n",      \
              __FILE__, __LINE__, #cond, flick_last_error());            \
      ++failures;                                                        \
    }                                                                    \
  } while (0)

static char console[8192];
static size_t console_len;

static void on_console(void* userdata, const char* data, size_t len) {
  (void)userdata;
  if (len > sizeof console - 1 - console_len) len = sizeof console - 1 - console_len;
  memcpy(console + console_len, data, len);
  console_len += len;
}

int main(void) {
  flick_vm_options opts;
  flick_vm* vm = NULL;
  flick_vm_exit_reason reason;
  char* detail = NULL;

  CHECK(flick_version() == FLICK_VERSION_NUMBER);
  CHECK(flick_vm_options_init(&opts, 99) == FLICK_EINVAL);
  CHECK(flick_vm_create(&vm, NULL) == FLICK_EINVAL);
  CHECK(flick_vm_options_init(&opts, FLICK_VM_OPTIONS_VERSION) == FLICK_OK);
  CHECK(flick_vm_create(&vm, &opts) == FLICK_EINVAL); /* no kernel */
  CHECK(strstr(flick_last_error(), "kernel") != NULL);
  flick_vm_free(NULL);

#ifdef FLICK_TESTGUEST_PVH
  opts.kernel = "/nonexistent/vmlinuz";
  CHECK(flick_vm_create(&vm, &opts) == FLICK_ENOTFOUND);
  CHECK(vm == NULL);

  opts.kernel = FLICK_TESTGUEST_PVH;
  opts.cmdline = "testguest cpus=2 mem=64";
  opts.cpus = 2;
  opts.memory_mib = 64;
  opts.console = on_console;
  CHECK(flick_vm_create(&vm, &opts) == FLICK_OK);
  if (vm) {
    CHECK(flick_vm_start(vm) == FLICK_OK);
    CHECK(flick_vm_wait(&reason, &detail, vm, 60000) == FLICK_OK);
    CHECK(reason == FLICK_VM_EXIT_POWER_OFF);
    CHECK(detail != NULL && strlen(detail) > 0);
    flick_free(detail);
    console[console_len] = 0;
    CHECK(strstr(console, "flick-testguest: PASS") != NULL);
    flick_vm_free(vm);
  }

  /* A hung guest: wait times out, stop ends it. */
  opts.cmdline = "testguest mode=hang";
  vm = NULL;
  CHECK(flick_vm_create(&vm, &opts) == FLICK_OK);
  if (vm) {
    CHECK(flick_vm_start(vm) == FLICK_OK);
    CHECK(flick_vm_wait(&reason, NULL, vm, 200) == FLICK_ETIMEOUT);
    CHECK(flick_vm_stop(vm) == FLICK_OK);
    CHECK(flick_vm_wait(&reason, NULL, vm, -1) == FLICK_OK);
    CHECK(reason == FLICK_VM_EXIT_STOPPED);
    flick_vm_free(vm);
  }
#endif
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
