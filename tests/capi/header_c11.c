/* flick.h as C11 (-std=c11 -pedantic -Werror): every options struct made with its _INIT macro
 * and checked against its _init function, which capi_c_header_test calls. */
#include <flick/flick.h>

#include <string.h>

#include "header_c11.h"

/* Both ways of making a struct give its version, and the defaults that are not zero. Padding
 * is not compared: C leaves it unspecified. */
#define SAME_AS_INIT(type, macro, init_fn, version_macro, ...)                     \
  do {                                                                             \
    type a = macro;                                                                \
    type b;                                                                        \
    memset(&b, 0xa5, sizeof b);                                                    \
    if (init_fn(&b, version_macro) != FLICK_OK) return #init_fn " failed";        \
    if (a.version != version_macro || b.version != version_macro) return #type ".version"; \
    __VA_ARGS__                                                                    \
  } while (0)
#define FIELD(f) if (a.f != b.f) return "field " #f " differs between the _INIT macro and _init";

const char* c11_options_match_init(void) {
  SAME_AS_INIT(flick_host_options, FLICK_HOST_OPTIONS_INIT, flick_host_options_init, FLICK_HOST_OPTIONS_VERSION,
               FIELD(state_dir) FIELD(kernel) FIELD(networking) FIELD(insecure_registries));
  SAME_AS_INIT(flick_pull_options, FLICK_PULL_OPTIONS_INIT, flick_pull_options_init, FLICK_PULL_OPTIONS_VERSION,
               FIELD(policy) FIELD(progress) FIELD(progress_userdata));
  SAME_AS_INIT(flick_machine_create_options, FLICK_MACHINE_CREATE_OPTIONS_INIT, flick_machine_create_options_init,
               FLICK_MACHINE_CREATE_OPTIONS_VERSION, FIELD(config_json) FIELD(app) FIELD(skip_launch));
  SAME_AS_INIT(flick_machine_filter, FLICK_MACHINE_FILTER_INIT, flick_machine_filter_init, FLICK_MACHINE_FILTER_VERSION,
               FIELD(app) FIELD(states) FIELD(state_count) FIELD(metadata) FIELD(include_deleted));
  SAME_AS_INIT(flick_machine_update_options, FLICK_MACHINE_UPDATE_OPTIONS_INIT, flick_machine_update_options_init,
               FLICK_MACHINE_UPDATE_OPTIONS_VERSION, FIELD(config_json) FIELD(skip_launch) FIELD(current_version));
  SAME_AS_INIT(flick_machine_clone_options, FLICK_MACHINE_CLONE_OPTIONS_INIT, flick_machine_clone_options_init,
               FLICK_MACHINE_CLONE_OPTIONS_VERSION, FIELD(name) FIELD(config_json) FIELD(skip_launch));
  SAME_AS_INIT(flick_exec_options, FLICK_EXEC_OPTIONS_INIT, flick_exec_options_init, FLICK_EXEC_OPTIONS_VERSION,
               FIELD(argv) FIELD(stdin_len) FIELD(timeout_ms) FIELD(env) FIELD(user));
  SAME_AS_INIT(flick_vm_options, FLICK_VM_OPTIONS_INIT, flick_vm_options_init, FLICK_VM_OPTIONS_VERSION,
               FIELD(kernel) FIELD(cpus) FIELD(memory_mib) FIELD(console) FIELD(disks) FIELD(disk_count)
               FIELD(nics) FIELD(vsock_uds_path) FIELD(vsock_guest_cid));
  return NULL;
}

const char* c11_machine_states_named(void) {
  if (strcmp(flick_machine_state_name(FLICK_MACHINE_CREATED), "created") != 0) return "created";
  if (strcmp(flick_machine_state_name(FLICK_MACHINE_DESTROYED), "destroyed") != 0) return "destroyed";
  if (flick_machine_state_name((flick_machine_state)42) != NULL) return "42 has a name";
  return NULL;
}
