// flick::Machine — an OCI image run as a microVM with the lifecycle of Fly.io Machines.
//
// A Host is this computer as a place to run machines: the image cache, the guest kernel and
// initramfs, volumes, and the store (SQLite, in the state directory) where every machine of
// every app is kept. Host::create() validates a MachineConfig, fetches the image and builds
// its root filesystem once; start() boots it with flick-init as PID 1 and returns while it
// is `starting`; wait() follows it through its states:
//
//   created -> starting -> started -> stopping -> stopped -> starting -> ... -> destroying -> destroyed
//                      \-> failed (never reported started)       failed -> starting | destroying
//
// A started machine runs in a process of its own (flick-vmm), not in the one that started
// it: it keeps running when that process exits, and any process that opens the same state
// directory sees it (Host::get, Host::list) and can stop, signal, wait for or destroy it.
// The machine stops by itself when its main program exits; then its restart policy applies
// (a restart goes from stopping straight to starting, so `stopped` means it has settled).
// The root filesystem is a blank slate on every start: a copy-on-write view of the cached
// image. Volumes keep their data across starts and after the machine is destroyed.
//
// Every method is safe to call from any thread, except a machine's own handlers (they run on
// its follower thread: call back into it from elsewhere). Configs are plain values with Fly's
// field names, so that a machine store and a daemon can keep them: MachineConfig reads and
// writes the JSON of Fly's Machines API (from_json, to_json).
#pragma once

#include <flick/export.h>
#include <flick/image.h>
#include <flick/result.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flick {

enum class MachineState {
  created,     // root filesystem built, never started
  starting,    // booting; flick-init has not yet exec'd the program
  started,     // the main program is running
  stopping,    // stop requested or the program exited; the VM is shutting down
  stopped,     // settled: not running, everything kept for the next start
  failed,      // a start did not reach `started` (boot error, timeout): see the last event
  destroying,
  destroyed,
};
FLICK_API const char* to_string(MachineState state) noexcept;
// True while the machine has a run, a flick-vmm process: starting, started or stopping.
constexpr bool is_running(MachineState s) noexcept {
  return s == MachineState::starting || s == MachineState::started || s == MachineState::stopping;
}

// Fly's `guest`.
struct GuestConfig {
  uint32_t cpus = 1;         // 1..254
  uint32_t memory_mb = 256;  // >= 64
  // flick extensions: a kernel (bzImage or vmlinux) instead of the Host's. It must have
  // virtio-mmio, virtio-blk, virtio-vsock and ext4 built in or in `kernel_modules` (its
  // lib/modules/<release> directory).
  std::string kernel;
  std::string kernel_modules;
  std::vector<std::string> kernel_args;  // appended to the kernel command line
  // flick extension: the root filesystem's size in MiB (16..1048576); 0: the image's content
  // plus 256 MiB. Too small for the image's content fails create (and update) with
  // Errc::invalid_argument.
  uint32_t rootfs_size_mb = 0;
  // "shared" or "performance". Kept for Fly's sake: every vCPU is a host thread either way.
  std::string cpu_kind = "shared";
  bool operator==(const GuestConfig&) const = default;
};

// Fly's `init`: what runs in the machine. Unset fields come from the image config.
struct InitConfig {
  std::vector<std::string> exec;        // replaces entrypoint and cmd together
  std::vector<std::string> entrypoint;  // replaces the image's Entrypoint (and drops its Cmd)
  std::vector<std::string> cmd;         // replaces the image's Cmd
  std::string user;                     // flick extension: overrides the image's User
  std::string workdir;                  // flick extension: overrides the image's WorkingDir
  // Fly's "allocate a TTY". Kept; flick-init always gives the program the console as its
  // controlling terminal, so it changes nothing yet.
  bool tty = false;
  std::vector<std::string> kernel_args;  // appended to the kernel command line after guest's
  bool operator==(const InitConfig&) const = default;
};

// Fly's `restart`.
enum class RestartPolicy { no, always, on_failure };
FLICK_API const char* to_string(RestartPolicy policy) noexcept;  // "no", "always", "on-failure"

struct RestartConfig {
  RestartPolicy policy = RestartPolicy::no;
  // on-failure: restarts after consecutive failed exits (non-zero code, signal, crash)
  // before the machine is left stopped.
  uint32_t max_retries = 3;
  bool operator==(const RestartConfig&) const = default;
};

// Fly's `stop_config`: how stop() asks the program to end before it is killed.
struct StopConfig {
  int signal = 2;  // SIGINT, as Fly
  std::chrono::milliseconds timeout{5000};
  bool operator==(const StopConfig&) const = default;
};

// Fly's `mounts[]`: a volume of this Host mounted at `path` (absolute, not "/").
struct MountConfig {
  std::string volume;
  std::string path;
  bool operator==(const MountConfig&) const = default;
};

// What the proxy does with a machine of a service that has had no connection for a while
// (Fly's services[].autostop).
enum class Autostop { off, stop, suspend };

// One of Fly's `services`, as flick's proxy uses it: MachineConfig::services() reads it from
// services_json. Fly's fields flick does not use (handlers, tls_options, checks, ...) stay in
// services_json only. An absent autostart or autostop is off.
struct ServiceConfig {
  std::string protocol = "tcp";         // absent means tcp; flick's proxy has no UDP
  uint16_t internal_port = 0;           // where the guest listens, 1..65535
  std::vector<uint16_t> ports;          // ports[].port: published on the host, 1..65535
  bool autostart = false;               // a connection starts (or resumes) a machine
  Autostop autostop = Autostop::off;    // an idle machine is stopped or suspended
  uint32_t min_machines_running = 0;    // autostop keeps this many of the app's machines
  // concurrency (type "connections"): above soft_limit a machine gets new connections only
  // when no other can take them; at hard_limit none. 0: no limit.
  uint32_t soft_limit = 0;
  uint32_t hard_limit = 0;
  // flick extension (autostop_idle): how long without connections makes a machine idle.
  std::chrono::milliseconds autostop_idle{std::chrono::minutes(5)};
  bool operator==(const ServiceConfig&) const = default;
};

// Fly's MachineConfig. flick's extensions to Fly's schema: init.user, init.workdir,
// guest.kernel, guest.kernel_modules, start_timeout and pull.
struct MachineConfig {
  std::string image;                          // an ImageReference (registry, oci:, ...)
  GuestConfig guest;
  std::map<std::string, std::string> env;     // added to / overriding the image's Env
  InitConfig init;
  std::vector<MountConfig> mounts;
  RestartConfig restart;
  bool auto_destroy = false;                  // destroy once the program exits and no restart follows
  StopConfig stop_config;
  std::map<std::string, std::string> metadata;
  // flick extension: how long a start may take to reach `started` before the machine is
  // stopped and failed.
  std::chrono::milliseconds start_timeout{60000};
  // flick extension: how the image is found when the machine's image is resolved, at create
  // and at every update (and clone): `always` asks the registry again, so a moved tag gives
  // the machine the new image; `never` uses only the image cache. A start never asks.
  PullPolicy pull = PullPolicy::missing;
  // Fly's `services` as JSON text (an array), or empty: kept as given; services() reads it.
  std::string services_json;
  // Fly fields flick accepts and keeps but does not implement yet: field path -> JSON text.
  // Top-level ("checks", "dns", "files", "processes", "schedule", "statics", "metrics",
  // "standbys", "rootfs", "containers", "volumes", "spot", "cache_drive", "size",
  // "disable_machine_autostart") and within guest ("guest.max_memory_mb", "guest.gpus",
  // "guest.gpu_kind", "guest.host_dedication_id", "guest.persist_rootfs"), init
  // ("init.swap_size_mb"), restart ("restart.gpu_bid_price") and mounts ("mounts[0].name",
  // "mounts[0].size_gb", ... "encrypted", "extend_threshold_percent", "add_size_gb",
  // "size_gb_limit": the index is the mount's in `mounts`).
  std::map<std::string, std::string> unimplemented;

  // Checks every field; the error names the first bad one ("guest.cpus: 0 is not in 1..254").
  FLICK_API Result<void> validate() const;

  // The services in services_json. Errc::invalid_argument names the first bad field
  // ("services[0].ports[1].port: 70000 is not in 1..65535"); validate() checks the same.
  FLICK_API Result<std::vector<ServiceConfig>> services() const;

  // Reads Fly's JSON (the `config` of a create or update request). An unknown field, a value
  // of the wrong type or a malformed document fails (Errc::invalid_argument naming the
  // field, e.g. "machine config: guest.cpuz: unknown field"; Errc::malformed for bad JSON).
  // Each field kept in `unimplemented` adds a warning to *warnings ("checks: accepted and
  // kept, but flick does not implement it yet"). Signals are names ("SIGTERM", "TERM") or
  // numbers; durations Go's ("5s", "1m30s") or integer nanoseconds, in whole milliseconds.
  // null is the same as an absent field. It does not validate(): callers do both.
  FLICK_API static Result<MachineConfig> from_json(std::string_view json,
                                                   std::vector<std::string>* warnings = nullptr);
  // Compact JSON, keys in a fixed order. Always written: image, guest's cpu_kind, cpus and
  // memory_mb, restart, auto_destroy and stop_config; the rest only when set (so a config
  // that uses no flick extension is plain Fly JSON). Signals as names, durations as Go
  // writes them ("1m30s"). to_json(from_json(x)) is x with those defaults filled in and
  // nulls dropped; from_json(to_json(c)) == c when c passes validate() and its JSON texts
  // are compact, as from_json stores them.
  FLICK_API std::string to_json() const;

  bool operator==(const MachineConfig&) const = default;
};

enum class MachineEventType { launch, start, exit, stop, restart, destroy, update };
FLICK_API const char* to_string(MachineEventType type) noexcept;

// How a run of the machine ended (Fly's exit_event).
struct ExitStatus {
  int exit_code = -1;           // the program's exit code; -1 when it did not exit normally
  int signal = 0;               // the signal that ended it, if any
  bool oom_killed = false;      // the guest kernel OOM-killed a process during the run
  bool requested_stop = false;  // it ended because of stop() (or destroy())
  std::string error;            // why it did not run or the VM ended abnormally; empty if it ran and exited
  bool run_lost = false;        // its flick-vmm was killed or crashed, or the host went down, while it ran
  bool success() const { return exit_code == 0 && signal == 0 && error.empty(); }
};

struct MachineEvent {
  uint64_t id = 0;  // increasing across the host: a later event has a larger id
  MachineEventType type = MachineEventType::launch;
  MachineState status = MachineState::created;  // the state this event left the machine in
  std::chrono::system_clock::time_point timestamp;
  std::string source;               // "user" (a caller's request) or "flick" (the machine's run)
  std::optional<ExitStatus> exit;  // for `exit`
  std::string detail;              // e.g. "restart 2 of 3 (on-failure)"
};

// Where the time of the last start() went, each measured from the start() call.
struct StartTimings {
  std::chrono::nanoseconds vm_created{0};                // config written, kernel and initrd loaded
  std::optional<std::chrono::nanoseconds> boot_timer;    // flick-init wrote the boot timer (just before exec)
  std::optional<std::chrono::nanoseconds> started;       // the `started` event arrived
};

// A machine's private link to the host: a TAP per run and a /30 from 172.19.0.0/16 kept for
// the machine's life. The host reaches the guest's services at `guest_address`; the guest
// reaches the host at `host_address`, also named host.flick.internal. No route beyond the host.
struct MachineNetwork {
  std::string tap;            // the host's side, "flk" + the first 12 digits of the id
  std::string host_address;   // on the TAP, the guest's default gateway: 172.19.x.1
  std::string guest_address;  // eth0 in the guest: 172.19.x.2
  int prefix = 30;
};

// Console output and events, delivered on the handle's follower thread (it reads the
// machine's logs and the store's events as they grow) in the order they happened. A handle
// with no handlers has no thread. Keep them short.
struct MachineHandlers {
  // Everything the guest writes: the kernel's console, flick-init and the program.
  std::function<void(std::string_view)> console;
  // The program's own stdout and stderr only (its terminal is a serial port of its own).
  std::function<void(std::string_view)> output;
  std::function<void(const MachineEvent&)> event;
};

// A machine's lease (Fly's): while one is live, every call that changes the machine (start,
// stop, update, destroy, cordon, uncordon, exec, and signal, which Fly leaves unguarded; from
// any process) fails with Errc::lease_held and Fly's text ("machine ID <id> lease currently held
// by <owner>, expires at <time>") unless it carries the lease's nonce. Metadata calls are
// not guarded, as in Fly. An expired lease is as good as none. The machine's own run (its
// restarts, its exit) is never held back by a lease.
struct Lease {
  std::string nonce;        // 32 hex digits: what the holder passes (Machine::set_lease_nonce)
  std::string owner;
  std::string description;
  std::chrono::system_clock::time_point expires_at;  // to the second
  std::string version;      // a ULID, new on every acquire or refresh
};

// One config version of a machine (Fly's GET /machines/{id}/versions): version 1 at create,
// one more per update(); each has its own instance_id (a ULID).
struct MachineVersion {
  uint64_t version = 0;
  std::string instance_id;
  std::chrono::system_clock::time_point created_at;
  MachineConfig config;
};

// Fly's update request, less the config.
struct UpdateOptions {
  // Fly's skip_launch. By default an update leaves the machine started on its new config,
  // as Fly's does: a running machine is stopped (its stop_config), updated and started again,
  // and a created, stopped or failed one is updated and started. With skip_launch the
  // machine is updated and left (or stopped and left) not running. A start that then fails
  // leaves the update in place; the error says so.
  bool skip_launch = false;
  // Fly's current_version: non-zero fails the update with Errc::busy unless the machine is
  // still at this config version (Machine::version()).
  uint64_t current_version = 0;
};

// A command to run in a started machine, beside its main program (Fly's exec). Unset fields
// take the main program's: its user, working directory and environment (`env` is added to it).
struct ExecRequest {
  std::vector<std::string> cmd;  // argv; cmd[0] is looked up in the environment's PATH
  std::string stdin_data;        // the command's stdin, then end of file
  // The command is killed when it runs longer (Errc::timeout); zero: no limit.
  std::chrono::milliseconds timeout{30000};
  std::map<std::string, std::string> env;
  std::string user;     // "name", "uid", "name:group" or "uid:gid", as in the image config
  std::string workdir;  // absolute
  // A terminal of rows x cols instead of pipes (its output comes as stdout), for an interactive
  // program: see ExecOutput's stdin_fd and resize_fd.
  bool tty = false;
  uint16_t rows = 0, cols = 0;
};

// How an exec ended (Fly's exec response).
struct ExecResult {
  int exit_code = -1;   // -1 when a signal ended it; 127 when cmd[0] was not found, 126 not executable
  int exit_signal = 0;  // the signal that ended it, if any
  std::string stdout_data, stderr_data;  // each at most kExecOutputCap bytes; the rest is dropped
  bool truncated = false;                // some output was dropped
};

// The output exec() keeps per stream: a command that writes more goes on running, and the
// rest is dropped (the streaming exec keeps nothing and has no cap).
inline constexpr size_t kExecOutputCap = 1u << 20;

// The streaming exec's output, delivered in order on the calling thread as it arrives, and
// its input for interactive use.
struct ExecOutput {
  std::function<void(std::string_view)> stdout_chunk;
  std::function<void(std::string_view)> stderr_chunk;
  // Read as it comes and sent as the command's stdin after stdin_data (-1: none); at its end of
  // file the command's stdin is closed (a terminal's is not: the program ends it).
  int stdin_fd = -1;
  // With a tty: when this descriptor becomes readable (a SIGWINCH self-pipe) it is drained and
  // window_size() is sent as the terminal's new size.
  int resize_fd = -1;
  std::function<std::pair<uint16_t, uint16_t>()> window_size;  // rows, cols
};

// A socket a guest process listens on (Fly's ListenSocket).
struct ListenSocket {
  std::string proto;    // "tcp" (in LISTEN) or "udp" (bound, not connected)
  std::string address;  // "IP:port", or "[IPv6]:port"
};

// One of a started machine's processes, as flick-init reads it from the guest's /proc
// (Fly's ProcessStat; docs/exec-protocol.md). Kernel threads are not listed.
struct ProcessInfo {
  int pid = 0;
  int ppid = 0;
  std::string command;    // its command line, arguments joined by spaces ("[comm]" for a zombie)
  std::string directory;  // its working directory
  std::chrono::system_clock::time_point started_at;  // Fly's stime (Unix seconds)
  std::chrono::seconds run_time{0};                   // Fly's rtime
  uint32_t cpu_percent = 0;  // its CPU time over its life, in percent of one CPU (ps's %CPU)
  uint64_t rss_bytes = 0;    // resident memory
  std::vector<ListenSocket> listen_sockets;
};

// The most processes processes() lists, and the longest command or directory it keeps; a guest
// that sends more has broken the protocol.
inline constexpr size_t kMaxProcesses = 4096;
inline constexpr size_t kMaxProcessText = 4096;

class FLICK_API Machine {
 public:
  ~Machine();  // only the handle goes: a running machine keeps running
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  const std::string& id() const;    // 14 hex digits, like Fly's
  const std::string& name() const;
  const std::string& app() const;
  const std::string& region() const;  // Fly's region: "local"
  std::chrono::system_clock::time_point created_at() const;
  // When its state, config, metadata, cordon or lease last changed.
  std::chrono::system_clock::time_point updated_at() const;
  // The config as this handle last read it: when it was made, or at its last start(),
  // update() or metadata change (a reference stays valid for the handle's life).
  const MachineConfig& config() const;
  const Rootfs& image() const;      // the resolved image: digest, config, cached rootfs
  MachineState state() const;
  // Oldest first; only the newest `last` of them unless 0.
  std::vector<MachineEvent> events(size_t last = 0) const;
  std::optional<ExitStatus> last_exit() const;
  std::optional<StartTimings> last_start_timings() const;
  const std::optional<MachineNetwork>& network() const;  // none when the Host has no networking

  // The store's current config version and its instance_id (a ULID, new with each version).
  uint64_t version() const;
  std::string instance_id() const;
  // Every config version, newest first.
  Result<std::vector<MachineVersion>> versions() const;

  // Replaces the config (Fly's update: the whole config, no merge) with a new version and
  // instance_id, keeping the old one in versions(). `config` is validated first, and a new
  // image (or guest kernel) is fetched and built before anything changes, so a bad one leaves
  // the machine as it was; then see UpdateOptions for whether it is stopped and started.
  // mounts[] name volumes of the machine's app that are free or this machine's already;
  // volumes no longer mounted are released. Errc::busy for a destroyed machine.
  Result<void> update(const MachineConfig& config, UpdateOptions options = {});

  // Fly's metadata: config.metadata, changed in place (no new version; not lease-guarded,
  // as Fly's metadata endpoints). Keys are 1-128 of a-z, A-Z, 0-9, '_', '.' and '-'
  // (Errc::invalid_argument otherwise). The guest reads them, with the machine's id, name,
  // app, region, instance_id and version, in /flick/metadata.json from its next start on.
  Result<std::map<std::string, std::string>> metadata() const;
  Result<void> set_metadata(const std::string& key, const std::string& value);
  Result<void> delete_metadata(const std::string& key);  // a key that is not there is not an error

  // Fly's cordon: kept with the machine (the proxy of a later release skips cordoned
  // machines); lease-guarded.
  Result<void> cordon();
  Result<void> uncordon();
  bool cordoned() const;

  // Takes the machine's lease for `ttl` (whole seconds, at least 1), or refreshes it when
  // this handle holds it (a new expiry and version, the same nonce); Errc::lease_held when
  // another holds it. The handle keeps the nonce (set_lease_nonce). `owner` defaults to the
  // user running this process.
  Result<Lease> acquire_lease(std::chrono::seconds ttl, const std::string& description = {},
                              const std::string& owner = {});
  Result<Lease> lease() const;  // the live lease; Errc::not_found when there is none
  // Releases the lease: Errc::not_found ("lease not found") unless `nonce` is its nonce.
  Result<void> release_lease(const std::string& nonce);
  // The nonce this handle sends with every call that changes the machine (empty: none), as
  // Fly's fly-machine-lease-nonce header. Handles are per caller: set it on yours.
  void set_lease_nonce(std::string nonce);
  const std::string& lease_nonce() const;
  // Whether this handle may change the machine now: Errc::lease_held (Fly's text) when
  // another holds its lease. Every guarded call checks it itself; this lets a caller refuse
  // before doing its own work for the call (flickd's placement).
  Result<void> check_lease() const;

  // created | stopped | failed -> starting. Returns once the VM runs; errors (missing
  // /dev/kvm, bad kernel, a volume in use) leave the state as it was.
  Result<void> start();
  // Asks the program to end with stop_config (or `how`), kills it after the timeout, and
  // returns once the machine is stopped. Stopping a stopped machine is a no-op.
  Result<void> stop(std::optional<StopConfig> how = std::nullopt);
  // Sends a signal to the main program (started only).
  Result<void> signal(int signo);
  // Removes the machine's files and releases its volumes and its lease. A running machine
  // needs `force` (it is then killed, not stopped gracefully).
  Result<void> destroy(bool force = false);
  // Blocks until the machine is in `state`. Fails with Errc::timeout; with Errc::guest_failure
  // when it reaches `failed` instead (unless waiting for `destroyed`: auto_destroy may follow),
  // the message saying why; with Errc::busy when it is destroyed.
  Result<void> wait(MachineState state,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds{60000});

  // Runs a command in the started machine (through flick-init, over vsock, straight from this
  // process) and returns once it has exited, with its output and exit status; a command that
  // fails has a non-zero exit_code, not an error. Errors: Errc::busy when the machine is not
  // started; Errc::lease_held while another holds its lease (as Fly's exec);
  // Errc::invalid_argument for an empty cmd or a request flick-init refuses (unknown user,
  // relative workdir); Errc::timeout when the command outlived request.timeout (it is killed,
  // with its process group); Errc::io when the machine went away meanwhile;
  // Errc::unsupported when its flick-init does not serve exec; Errc::malformed when the guest
  // broke the protocol (docs/exec-protocol.md).
  Result<ExecResult> exec(const ExecRequest& request);
  // The same, streaming: output goes to `output` as it comes and is not kept in the result.
  Result<ExecResult> exec(const ExecRequest& request, const ExecOutput& output);

  // The started machine's processes in pid order (Fly's ps), asked of flick-init like exec;
  // nothing runs in the guest for it and no lease is needed. Errors: Errc::busy when the
  // machine is not started; Errc::unsupported when its flick-init cannot list processes;
  // Errc::malformed when the guest's answer breaks the protocol (more than kMaxProcesses,
  // fields out of range); Errc::timeout when the guest has not answered within 10 s;
  // Errc::io when the machine went away meanwhile.
  Result<std::vector<ProcessInfo>> processes();

  struct Impl;

 private:
  explicit Machine(std::unique_ptr<Impl> impl);
  friend class Host;
  std::unique_ptr<Impl> impl_;
};

struct VolumeConfig {
  std::string name;        // [a-z0-9_]{1,30}, Fly's rule; as in Fly, not unique
  uint64_t size_gb = 1;    // the file is sparse: only written blocks use host disk
  std::string app{};       // empty: "default"
};

struct Volume {
  std::string id;              // "vol_" + 16 characters, as Fly's
  std::string name;
  std::string app;
  std::filesystem::path path;  // an ext4 image
  uint64_t size_bytes = 0;
  std::string attached_machine;  // the id of the machine it belongs to, if any (any process)
};

// Fly's app: a name that machines and volumes belong to. `default` always exists.
struct AppInfo {
  std::string name;      // [a-z0-9-]{1,63}
  std::string org_slug;  // "personal" unless given
  uint64_t machine_count = 0;  // not destroyed
  uint64_t volume_count = 0;
  std::chrono::system_clock::time_point created_at;
};

struct HostOptions {
  // Machines' and volumes' files. Default: $FLICK_STATE_DIR, else
  // ${XDG_STATE_HOME:-~/.local/state}/flick.
  std::filesystem::path state_dir;
  // Images, kernels and initramfs archives. Default: ImageStore::default_dir().
  std::filesystem::path cache_dir;
  // Vsock sockets (short paths). Default: $XDG_RUNTIME_DIR/flick, else /tmp/flick-<uid>.
  std::filesystem::path run_dir;
  StoreOptions images;
  // The default guest kernel: a bzImage/vmlinux (plus its modules directory); empty:
  // $FLICK_KERNEL (and $FLICK_KERNEL_MODULES), else Debian's linux-image-cloud-amd64, fetched
  // into the cache on first use. A machine's kernel is resolved at create and kept with it.
  std::string kernel;
  std::string kernel_modules;
  std::string kvm_device;  // empty: $FLICK_KVM_DEVICE, else /dev/kvm (VmConfig::kvm_device)
  // The program each machine's run lives in; empty: $FLICK_VMM, else flick-vmm beside the
  // executable or libflick, else libexec/flick/flick-vmm.
  std::filesystem::path vmm_program;
  // Machine networking: `automatic` gives each machine a MachineNetwork when this process may
  // create TAP devices (CAP_NET_ADMIN), `required` fails create() when it may not, `none`
  // leaves machines with loopback only.
  enum class Networking { automatic, required, none };
  Networking network = Networking::automatic;
};

// Host::clone's options.
struct CloneOptions {
  std::string name{};                     // default: the new machine's id
  std::optional<MachineConfig> config{};  // default: the source's current config
  bool skip_launch = false;
};

class FLICK_API Host {
 public:
  // Opens the state directory's store and settles what no one watched: a machine whose run
  // ended without recording it (its flick-vmm was killed) is marked stopped or failed with
  // the reason, and a destroy that was interrupted is finished.
  static Result<std::unique_ptr<Host>> open(HostOptions options = {});
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  // What a supervisor does when it comes up (flickd does): starts again every machine whose
  // restart policy is `always` and whose run was lost (ExitStatus::run_lost: the host
  // rebooted, or its flick-vmm was killed, while it was started). Returns the ids of those it
  // started. One that cannot start (a lease held, no KVM, a boot that fails) is logged and
  // left as that start left it, with its reason.
  Result<std::vector<std::string>> restart_lost_machines();

  // Validates `config`, pulls the image and builds its rootfs (cached), prepares the guest
  // kernel and initramfs, and returns a machine in `created`, kept in the store. `name`
  // defaults to the id; `app` to "default" (created on first use).
  Result<std::unique_ptr<Machine>> create(const MachineConfig& config,
                                          MachineHandlers handlers = {},
                                          std::string name = {}, std::string app = {});

  // flyctl's `machine clone`: a new machine in the source's app and region with the source's
  // config (or `options.config`), its own id, name, network and instance_id, created from the
  // cached image and, unless options.skip_launch, started. Volumes are never shared: a source
  // with mounts needs `options.config` whose mounts name other, free volumes (else
  // Errc::invalid_argument; a volume in use is Errc::busy, as in create()). A clone that
  // does not start is destroyed, and the start's error returned.
  Result<std::unique_ptr<Machine>> clone(const Machine& source, CloneOptions options = {},
                                         MachineHandlers handlers = {});

  // A machine of this state directory, made by any process: by id, or by name (within
  // `app` when given). Errc::not_found when there is none.
  Result<std::unique_ptr<Machine>> get(std::string_view id_or_name, MachineHandlers handlers = {},
                                       std::string_view app = {});
  struct ListFilter {
    std::string app;                  // empty: every app
    std::vector<MachineState> states; // empty: every state but destroyed
    std::map<std::string, std::string> metadata;  // config.metadata must have each
  };
  Result<std::vector<std::unique_ptr<Machine>>> list(const ListFilter& filter = {});

  // Creates a volume (an empty ext4 file system) in its app. A machine's mounts[].volume
  // names it by id, or by a name that is unique in the machine's app; it stays attached to
  // that machine until the machine is destroyed.
  Result<Volume> create_volume(const VolumeConfig& config);
  Result<std::vector<Volume>> list_volumes(std::string_view app = {});  // empty: every app
  // Deletes a volume (by id, or a name unique in `app`) that no machine is attached to.
  Result<void> destroy_volume(std::string_view id_or_name, std::string_view app = {});
  // Grows a volume to `size_gb` (Fly's extend; Errc::invalid_argument to shrink it). The file
  // grows at once, sparse; the file system when next mounted (flick-init grows an ext4 file
  // system to fill its device), so a machine running on it sees the new size after a restart.
  Result<Volume> extend_volume(std::string_view id_or_name, uint64_t size_gb, std::string_view app = {});

  // Apps. create_app fails with Errc::exists; destroy_app with Errc::busy while the app has
  // machines or volumes, unless `force`: then its machines are destroyed (killed if running)
  // and its volumes deleted first.
  Result<AppInfo> create_app(std::string_view name, std::string_view org_slug = {});
  Result<AppInfo> get_app(std::string_view name);
  Result<std::vector<AppInfo>> list_apps();
  Result<void> destroy_app(std::string_view name, bool force = false);

  ImageStore& images();
  const HostOptions& options() const;

  struct Impl;

 private:
  explicit Host(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;  // machines share it: they may outlive the Host object
};

}  // namespace flick
