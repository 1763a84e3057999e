/* flick.h: the stable C ABI of flick: hosts, images, machines, volumes and raw VMs.
 *
 * Conventions (libgit2's and SQLite's):
 * - Every function returns 0 (FLICK_OK) or a negative FLICK_E* code (the list only grows),
 *   and fills its out parameters, which come first. On failure the out parameters are
 *   cleared (NULL, 0) and flick_error_last() says what failed, on this thread.
 * - Handles (flick_host*, flick_machine*, flick_vm*) are opaque tokens, never pointers to
 *   memory: the library looks each up in a table of live objects, so a handle used after it
 *   was freed (or never made) fails with FLICK_EINVAL and says so; it is never dereferenced.
 * - Strings the library returns (char** out parameters) are the caller's, freed with
 *   flick_free(). Strings and arrays passed in are only read during the call.
 * - Structured answers are JSON documents in the shape of Fly's Machines API (the same
 *   documents flickd serves); machine configs go in as Fly's MachineConfig JSON, read by the
 *   same parser as flickd's.
 * - Options structs start with a version: set it with the struct's *_OPTIONS_INIT macro or
 *   its *_options_init() function, then change the fields you need. A library newer than
 *   the header you compiled against reads only the fields of your version.
 * - Threading: every function may be called from any thread, and several threads may use
 *   the same handle at once. Freeing a handle while another thread is in a call on it lets
 *   that call finish; calls after the free fail with FLICK_EINVAL. The last error is per
 *   thread. Callbacks run on the thread documented for each, must return normally (no C++
 *   exception, no longjmp) and must not free the handle they were called for.
 * - Nothing here calls exit() or lets a C++ exception out: an unexpected failure inside is
 *   FLICK_EINTERNAL with a message. */
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
  FLICK_EINVAL = -1,        /* a bad argument: NULL, a stale handle, a bad config field */
  FLICK_ENOTFOUND = -2,     /* no such file, image, machine, volume, app, lease or key */
  FLICK_EIO = -3,
  FLICK_EKVM = -4,          /* /dev/kvm missing or lacking a capability */
  FLICK_ENOMEM = -5,
  FLICK_EMALFORMED = -6,    /* an input (JSON, kernel, image) is not what it claims to be */
  FLICK_EUNSUPPORTED = -7,
  FLICK_EGUEST = -8,        /* the guest crashed, or a machine reached `failed` */
  FLICK_ETIMEOUT = -9,
  FLICK_EBUSY = -10,        /* the machine's state does not allow the call */
  FLICK_ELIMIT = -11,
  FLICK_ECANCELLED = -12,   /* a callback asked to stop */
  FLICK_ENETWORK = -13,
  FLICK_EINTEGRITY = -14,
  FLICK_EEXISTS = -15,
  FLICK_ELEASE = -16,       /* another holds the machine's lease */
  FLICK_EINTERNAL = -100
};

/* The library's version as major * 10000 + minor * 100 + patch. */
FLICK_C_API int flick_version(void);

/* 1 if this build of the library has the feature `name`, else 0 (also for unknown names and
 * NULL). Names: "kvm", "machines", "images", "registry", "volumes", "vsock", "suspend". A
 * build feature, not host state: "kvm" does not say whether this host's /dev/kvm works. */
FLICK_C_API int flick_has_feature(const char* name);

/* ---- Errors ---- */

/* Which part of flick a failure came from. */
typedef enum flick_error_class {
  FLICK_ERROR_NONE = 0,
  FLICK_ERROR_INVALID_ARGUMENT = 1, /* the caller's input: NULL, stale handle, bad JSON */
  FLICK_ERROR_OS = 2,               /* a system call or host resource (sys_errno says which) */
  FLICK_ERROR_VMM = 3,              /* KVM, the VM, the guest */
  FLICK_ERROR_IMAGE = 4,            /* the image cache, a layout or archive, a root filesystem */
  FLICK_ERROR_REGISTRY = 5,         /* a registry or the network to it */
  FLICK_ERROR_MACHINE = 6,          /* a machine's lifecycle: state, lease, exec */
  FLICK_ERROR_STORE = 7,            /* the state directory's store: apps, volumes, names */
  FLICK_ERROR_CALLBACK = 8,         /* a callback stopped the call */
  FLICK_ERROR_INTERNAL = 9          /* a bug in flick */
} flick_error_class;

typedef struct flick_error {
  int code;                     /* FLICK_E*, or FLICK_OK when the last call succeeded */
  flick_error_class error_class;
  int sys_errno;                /* errno of the failed system call, or 0 */
  const char* message;          /* what was attempted, on what, and why it failed; "" if none */
} flick_error;

/* This thread's last error; never NULL. Valid until this thread's next flick_* call. */
FLICK_C_API const flick_error* flick_error_last(void);
/* The message of flick_error_last() ("" if none). */
FLICK_C_API const char* flick_last_error(void);

/* Frees a string (or other memory) the library returned. NULL is fine. */
FLICK_C_API void flick_free(void* p);

/* ---- Hosts: this computer as a place to run machines ----
 * A host is a state directory (its store of apps, machines and volumes), an image cache and
 * a default guest kernel. Several hosts, in one process or many, may open the same state
 * directory: each sees the machines the others make. */

typedef struct flick_host flick_host;

typedef enum flick_networking {
  FLICK_NETWORKING_AUTOMATIC = 0, /* a TAP per machine when this process may create one */
  FLICK_NETWORKING_REQUIRED = 1,  /* machine create fails when it may not */
  FLICK_NETWORKING_NONE = 2       /* loopback only */
} flick_networking;

#define FLICK_HOST_OPTIONS_VERSION 1

/* Every string may be NULL: then flick's default (flick(1) and docs/ say which). */
typedef struct flick_host_options {
  unsigned int version;       /* FLICK_HOST_OPTIONS_VERSION */
  const char* state_dir;      /* default: $FLICK_STATE_DIR, else ~/.local/state/flick */
  const char* cache_dir;      /* images and kernels; default: $FLICK_HOME, else ~/.cache/flick */
  const char* run_dir;        /* sockets; default: $XDG_RUNTIME_DIR/flick */
  const char* kernel;         /* default guest kernel; default: $FLICK_KERNEL, else Debian's */
  const char* kernel_modules; /* its lib/modules/<release> directory */
  const char* kvm_device;     /* default: $FLICK_KVM_DEVICE, else /dev/kvm */
  const char* vmm_program;    /* the flick-vmm machines run in; default: found beside libflick */
  flick_networking networking;
  const char* default_registry;            /* default: "docker.io" */
  const char* const* insecure_registries;  /* host[:port] names, NULL-terminated; may be NULL */
} flick_host_options;

#define FLICK_HOST_OPTIONS_INIT {FLICK_HOST_OPTIONS_VERSION, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                                 FLICK_NETWORKING_AUTOMATIC, NULL, NULL}
FLICK_C_API int flick_host_options_init(flick_host_options* opts, unsigned int version);

/* Opens the host (`opts` NULL: every default). Close it with flick_host_close. */
FLICK_C_API int flick_host_open(flick_host** out, const flick_host_options* opts);
/* Closes the handle; machines keep running, and machine handles made through it stay usable
 * until they are freed. A second close fails with FLICK_EINVAL. */
FLICK_C_API int flick_host_close(flick_host* host);

/* ---- Images: OCI images in the host's cache ----
 * References as flick(1) takes them: "busybox", "localhost:5000/app:1", "oci:DIR:TAG",
 * "oci-archive:FILE", "docker-archive:FILE". */

typedef enum flick_pull_policy {
  FLICK_PULL_MISSING = 0, /* the registry is asked only for what the cache lacks */
  FLICK_PULL_ALWAYS = 1,  /* the reference is resolved again */
  FLICK_PULL_NEVER = 2    /* the cache only: FLICK_ENOTFOUND when it lacks the image */
} flick_pull_policy;

/* How far a registry pull has got (bytes already cached count as done). Called on the thread
 * that called the pull, about ten times a second and once as each layer completes; local
 * transports (oci:, archives) do not report. Return 0 to go on; anything else stops the pull,
 * which then fails with FLICK_ECANCELLED (what was downloaded stays cached). */
typedef int (*flick_pull_progress_fn)(void* userdata, uint64_t done_bytes, uint64_t total_bytes);

#define FLICK_PULL_OPTIONS_VERSION 1

typedef struct flick_pull_options {
  unsigned int version; /* FLICK_PULL_OPTIONS_VERSION */
  flick_pull_policy policy;
  flick_pull_progress_fn progress; /* may be NULL */
  void* progress_userdata;         /* only used during the call */
} flick_pull_options;

#define FLICK_PULL_OPTIONS_INIT {FLICK_PULL_OPTIONS_VERSION, FLICK_PULL_MISSING, NULL, NULL}
FLICK_C_API int flick_pull_options_init(flick_pull_options* opts, unsigned int version);

/* Pulls `ref` into the cache (`opts` may be NULL). *out_json: {"reference", "image_digest",
 * "blob_bytes", "config": {"entrypoint", "cmd", "env", "working_dir", "user",
 * "exposed_ports", "labels", "os", "architecture"}}. */
FLICK_C_API int flick_image_pull(char** out_json, flick_host* host, const char* ref,
                                 const flick_pull_options* opts);
/* The cached images: [{"reference", "image_digest", "blob_bytes", "rootfs": [paths]}]. */
FLICK_C_API int flick_image_list(char** out_json, flick_host* host);
/* Pulls as `opts` says and builds (once) the image's ext4 root filesystem; *out_path is the
 * cached file, which must not be written to. */
FLICK_C_API int flick_image_rootfs(char** out_path, flick_host* host, const char* ref,
                                   const flick_pull_options* opts);
/* Removes blobs and root filesystems no reference uses. Either out parameter may be NULL. */
FLICK_C_API int flick_image_prune(uint64_t* out_files_removed, uint64_t* out_bytes_freed,
                                  flick_host* host);
/* Forgets `ref` and removes what no other reference uses; FLICK_ENOTFOUND if not cached. */
FLICK_C_API int flick_image_rm(uint64_t* out_files_removed, uint64_t* out_bytes_freed,
                               flick_host* host, const char* ref);

/* ---- Machines: OCI images run as microVMs with Fly's lifecycle ----
 *   created -> starting -> started -> stopping -> stopped -> ... -> destroying -> destroyed
 * A machine runs in a process of its own: it outlives the handle and the process that
 * started it. A handle names one machine; once that machine is destroyed (through this
 * handle, another, or another process), calls that read or change it fail with
 * FLICK_ENOTFOUND, except flick_machine_get_state, flick_machine_events, flick_machine_wait for
 * FLICK_MACHINE_DESTROYED and flick_machine_destroy, which succeed. */

typedef struct flick_machine flick_machine;

typedef enum flick_machine_state {
  FLICK_MACHINE_CREATED = 0,
  FLICK_MACHINE_STARTING = 1,
  FLICK_MACHINE_STARTED = 2,
  FLICK_MACHINE_STOPPING = 3,
  FLICK_MACHINE_STOPPED = 4,
  FLICK_MACHINE_FAILED = 5,
  FLICK_MACHINE_DESTROYING = 6,
  FLICK_MACHINE_DESTROYED = 7
} flick_machine_state;

/* "created", "started", ...; NULL for a value that is not a state. Static storage. */
FLICK_C_API const char* flick_machine_state_name(flick_machine_state state);

#define FLICK_MACHINE_CREATE_OPTIONS_VERSION 1

typedef struct flick_machine_create_options {
  unsigned int version;    /* FLICK_MACHINE_CREATE_OPTIONS_VERSION */
  const char* config_json; /* Fly's MachineConfig, e.g. {"image": "busybox"}; required */
  const char* app;         /* NULL: "default" (which always exists); others: flick_app_create */
  const char* name;        /* NULL: the machine's id */
  const char* region;      /* NULL, "" or "local": the only region a host has */
  int skip_launch;         /* nonzero: left `created`; else started (and destroyed if that fails) */
} flick_machine_create_options;

#define FLICK_MACHINE_CREATE_OPTIONS_INIT {FLICK_MACHINE_CREATE_OPTIONS_VERSION, NULL, NULL, NULL, NULL, 0}
FLICK_C_API int flick_machine_create_options_init(flick_machine_create_options* opts, unsigned int version);

/* Validates the config (a bad field: FLICK_EINVAL naming it, e.g. "guest.cpus: ..."; JSON
 * that does not parse: FLICK_EMALFORMED), pulls the image and builds its root filesystem,
 * and makes the machine. Free the handle with flick_machine_free. */
FLICK_C_API int flick_machine_create(flick_machine** out, flick_host* host,
                                     const flick_machine_create_options* opts);
/* A handle on a machine of the host's state directory, by id or name (within `app` when not
 * NULL). FLICK_ENOTFOUND when there is none. */
FLICK_C_API int flick_machine_open(flick_machine** out, flick_host* host, const char* id_or_name,
                                   const char* app);
/* Frees the handle only: the machine goes on. NULL is fine; a stale handle sets the error. */
FLICK_C_API void flick_machine_free(flick_machine* machine);

/* Fly's Machine object as flickd's GET /machines/{id} answers it: id, name, state, region,
 * app, instance_id, version, private_ip, config, image_ref, created_at, updated_at,
 * cordoned, events (newest first). */
FLICK_C_API int flick_machine_get(char** out_json, flick_machine* machine);
FLICK_C_API int flick_machine_id(char** out_id, flick_machine* machine);
FLICK_C_API int flick_machine_get_state(flick_machine_state* out, flick_machine* machine);

#define FLICK_MACHINE_FILTER_VERSION 1

typedef struct flick_machine_filter {
  unsigned int version;                /* FLICK_MACHINE_FILTER_VERSION */
  const char* app;                     /* NULL: every app */
  const flick_machine_state* states;   /* NULL: every state but destroyed */
  size_t state_count;
  const char* const* metadata;         /* "key", "value", "key", "value", ..., NULL: all must match */
  int include_deleted;                 /* with states NULL: destroyed machines too */
} flick_machine_filter;

#define FLICK_MACHINE_FILTER_INIT {FLICK_MACHINE_FILTER_VERSION, NULL, NULL, 0, NULL, 0}
FLICK_C_API int flick_machine_filter_init(flick_machine_filter* filter, unsigned int version);

/* The machines `filter` picks (NULL: every live one), as a JSON array of Machine objects. */
FLICK_C_API int flick_machine_list(char** out_json, flick_host* host, const flick_machine_filter* filter);

/* created | stopped | failed -> starting; returns once the VM runs. */
FLICK_C_API int flick_machine_start(flick_machine* machine);
/* Asks the program to end with `signo` (0: the config's stop_config signal), kills it after
 * `timeout_ms` (negative: the config's), and returns once it is stopped. */
FLICK_C_API int flick_machine_stop(flick_machine* machine, int signo, int64_t timeout_ms);
FLICK_C_API int flick_machine_signal(flick_machine* machine, int signo);
/* Waits until the machine is in `state`, at most `timeout_ms` (negative: no limit):
 * FLICK_ETIMEOUT; FLICK_EGUEST when it failed instead. */
FLICK_C_API int flick_machine_wait(flick_machine* machine, flick_machine_state state, int64_t timeout_ms);

#define FLICK_MACHINE_UPDATE_OPTIONS_VERSION 1

typedef struct flick_machine_update_options {
  unsigned int version;     /* FLICK_MACHINE_UPDATE_OPTIONS_VERSION */
  const char* config_json;  /* the whole new config (no merge); required */
  int skip_launch;          /* nonzero: left (or stopped and left) not running */
  uint64_t current_version; /* nonzero: FLICK_EBUSY unless the machine is at this version */
} flick_machine_update_options;

#define FLICK_MACHINE_UPDATE_OPTIONS_INIT {FLICK_MACHINE_UPDATE_OPTIONS_VERSION, NULL, 0, 0}
FLICK_C_API int flick_machine_update_options_init(flick_machine_update_options* opts, unsigned int version);
/* Fly's update: a new config version; by default the machine is left started on it. */
FLICK_C_API int flick_machine_update(flick_machine* machine, const flick_machine_update_options* opts);

#define FLICK_MACHINE_CLONE_OPTIONS_VERSION 1

typedef struct flick_machine_clone_options {
  unsigned int version;    /* FLICK_MACHINE_CLONE_OPTIONS_VERSION */
  const char* name;        /* NULL: the new machine's id */
  const char* config_json; /* NULL: the source's config */
  int skip_launch;
} flick_machine_clone_options;

#define FLICK_MACHINE_CLONE_OPTIONS_INIT {FLICK_MACHINE_CLONE_OPTIONS_VERSION, NULL, NULL, 0}
FLICK_C_API int flick_machine_clone_options_init(flick_machine_clone_options* opts, unsigned int version);
/* A new machine in the source's app with its config (or opts->config_json); `opts` may be NULL. */
FLICK_C_API int flick_machine_clone(flick_machine** out, flick_host* host, flick_machine* source,
                                    const flick_machine_clone_options* opts);

/* Removes the machine's files and releases its volumes; a running one needs `force`. */
FLICK_C_API int flick_machine_destroy(flick_machine* machine, int force);

#define FLICK_EXEC_OPTIONS_VERSION 1

typedef struct flick_exec_options {
  unsigned int version;     /* FLICK_EXEC_OPTIONS_VERSION */
  const char* const* argv;  /* NULL-terminated, at least one; argv[0] is looked up in PATH */
  const char* stdin_data;   /* may be NULL */
  size_t stdin_len;
  int64_t timeout_ms;       /* the command is killed after it (FLICK_ETIMEOUT); 0: no limit */
  const char* const* env;   /* "KEY=value", NULL-terminated; added to the program's; may be NULL */
  const char* user;         /* NULL: the main program's */
  const char* workdir;      /* NULL: the main program's */
} flick_exec_options;

#define FLICK_EXEC_OPTIONS_INIT {FLICK_EXEC_OPTIONS_VERSION, NULL, NULL, 0, 30000, NULL, NULL, NULL}
FLICK_C_API int flick_exec_options_init(flick_exec_options* opts, unsigned int version);

/* An exec's outcome. Its layout is fixed; free its buffers with flick_exec_result_free. */
typedef struct flick_exec_result {
  int exit_code;          /* -1 when a signal ended it */
  int exit_signal;
  char* stdout_data;      /* NUL-terminated for convenience; the output may hold NULs too */
  size_t stdout_len;
  char* stderr_data;
  size_t stderr_len;
  int truncated;          /* nonzero: more than 1 MiB of a stream was dropped */
} flick_exec_result;

/* Runs a command in the started machine and waits for it; a command that fails has a
 * non-zero exit_code, not an error. */
FLICK_C_API int flick_machine_exec(flick_exec_result* out, flick_machine* machine, const flick_exec_options* opts);
FLICK_C_API void flick_exec_result_free(flick_exec_result* result);

/* Fly's events, newest first: [{"id", "type", "status", "source", "timestamp", "request"}]. */
FLICK_C_API int flick_machine_events(char** out_json, flick_machine* machine);
/* Everything the guest wrote to its console (kernel, flick-init, the program), as kept in the
 * machine's console log; *out_len is its length. */
FLICK_C_API int flick_machine_logs(char** out, size_t* out_len, flick_machine* machine);

/* Fly's metadata: a JSON object of strings; get fails with FLICK_ENOTFOUND for a missing key. */
FLICK_C_API int flick_machine_metadata(char** out_json, flick_machine* machine);
FLICK_C_API int flick_machine_metadata_get(char** out_value, flick_machine* machine, const char* key);
FLICK_C_API int flick_machine_metadata_set(flick_machine* machine, const char* key, const char* value);
FLICK_C_API int flick_machine_metadata_delete(flick_machine* machine, const char* key);

/* Fly's leases. While another holds the machine's lease, calls that change it fail with
 * FLICK_ELEASE. Acquire gives {"nonce", "expires_at", "owner", "description", "version"}
 * and makes this handle carry the nonce; another handle carries it after
 * flick_machine_set_lease_nonce (NULL: none). flick_machine_lease_get: FLICK_ENOTFOUND when
 * there is no live lease. */
FLICK_C_API int flick_machine_lease_acquire(char** out_json, flick_machine* machine, uint32_t ttl_seconds,
                                            const char* description);
FLICK_C_API int flick_machine_lease_get(char** out_json, flick_machine* machine);
FLICK_C_API int flick_machine_lease_release(flick_machine* machine, const char* nonce);
FLICK_C_API int flick_machine_set_lease_nonce(flick_machine* machine, const char* nonce);

FLICK_C_API int flick_machine_cordon(flick_machine* machine);
FLICK_C_API int flick_machine_uncordon(flick_machine* machine);

/* ---- Apps: names machines and volumes belong to ("default" always exists) ----
 * As Fly's App objects: {"id", "name", "organization": {"slug"}, "machine_count",
 * "volume_count", "created_at"}. */
FLICK_C_API int flick_app_create(char** out_json, flick_host* host, const char* name, const char* org_slug);
FLICK_C_API int flick_app_list(char** out_json, flick_host* host);
/* FLICK_EBUSY while it has machines or volumes, unless `force` (they are destroyed first). */
FLICK_C_API int flick_app_destroy(flick_host* host, const char* name, int force);

/* ---- Volumes: ext4 file systems that outlive machines ----
 * As Fly's Volume objects: {"id", "name", "state", "size_gb", "attached_machine_id", "app",
 * "path"}. `app` NULL: "default" (list: every app). */
FLICK_C_API int flick_volume_create(char** out_json, flick_host* host, const char* name, const char* app,
                                    uint64_t size_gb);
FLICK_C_API int flick_volume_list(char** out_json, flick_host* host, const char* app);
/* Grows a volume (by id, or a name unique in `app`) to `size_gb`. */
FLICK_C_API int flick_volume_extend(char** out_json, flick_host* host, const char* id_or_name, const char* app,
                                    uint64_t size_gb);
FLICK_C_API int flick_volume_destroy(flick_host* host, const char* id_or_name, const char* app);

/* ---- Virtual machines: boot a kernel, wait for it to end ---- */

typedef struct flick_vm flick_vm;

/* A virtio-blk disk: /dev/vda, /dev/vdb, ... in order. */
typedef struct flick_vm_disk {
  const char* path;  /* a file or block device; required */
  int read_only;
  int copy_on_write; /* the guest's writes go to a private overlay gone with the VM */
  const char* serial; /* the disk's ID as the guest reads it (at most 20 bytes); may be NULL */
} flick_vm_disk;

/* A virtio-net interface on an existing TAP device: eth0, eth1, ... in order. */
typedef struct flick_vm_nic {
  const char* tap;  /* the TAP interface's name; required */
  const char* mac;  /* "52:54:00:12:34:56"; NULL: derived from the TAP name */
} flick_vm_nic;

/* Version 2 added disks, NICs and vsock; version 1 structs are still accepted. */
#define FLICK_VM_OPTIONS_VERSION 2

typedef struct flick_vm_options {
  unsigned int version;     /* FLICK_VM_OPTIONS_VERSION */
  const char* kernel;       /* bzImage or vmlinux ELF; required */
  const char* initrd;       /* optional (NULL) */
  const char* cmdline;      /* NULL: "console=ttyS0 panic=-1 pci=off" */
  uint32_t cpus;            /* 0: 1 */
  uint64_t memory_mib;      /* 0: 256 */
  /* Receives the guest's serial console output, on a vCPU thread; may be NULL. The userdata
   * must stay valid until flick_vm_free returns. */
  void (*console)(void* userdata, const char* data, size_t len);
  void* console_userdata;
  /* Version 2: */
  const flick_vm_disk* disks; /* read during flick_vm_create only */
  size_t disk_count;
  const flick_vm_nic* nics;
  size_t nic_count;
  /* A virtio-vsock device when not NULL: the host side is this Unix socket (Firecracker's
   * protocol: connect, send "CONNECT <port>\n"; guest connections to port P arrive at
   * "<path>_P"). */
  const char* vsock_uds_path;
  uint32_t vsock_guest_cid; /* 0: 3 */
} flick_vm_options;

#define FLICK_VM_OPTIONS_INIT {FLICK_VM_OPTIONS_VERSION, NULL, NULL, NULL, 1, 256, NULL, NULL, \
                               NULL, 0, NULL, 0, NULL, 3}
/* Fills `opts` with the defaults of this `version` of the struct (writing only its fields). */
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
 * says how it ended and *out_detail (when not NULL; free it with flick_free) is a one-line
 * account of it; FLICK_ETIMEOUT if it is still running. */
FLICK_C_API int flick_vm_wait(flick_vm_exit_reason* out_reason, char** out_detail, flick_vm* vm, int timeout_ms);
/* Stops the VM now (a no-op once it has ended). */
FLICK_C_API int flick_vm_stop(flick_vm* vm);
/* Stops the VM if needed and releases everything it holds. NULL is fine. */
FLICK_C_API void flick_vm_free(flick_vm* vm);

#ifdef __cplusplus
}
#endif

#endif /* FLICK_H */
