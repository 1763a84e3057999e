// flick::Vm — a KVM virtual machine booting a Linux kernel (bzImage or vmlinux/PVH).
//
// This is the low-level layer under Machines: one VM, one boot, until the guest powers off,
// reboots, crashes, or the host stops it.
#pragma once

#include <flick/export.h>
#include <flick/result.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flick {

// A virtio-blk disk backed by a file or block device.
struct DiskConfig {
  std::string path;
  bool read_only = false;
  // Copy-on-write: `path` is only read; the guest's writes go to a private overlay that is
  // gone when the VM ends, so every boot starts from the same image.
  bool copy_on_write = false;
  std::string overlay_dir;  // where the overlay (an unlinked file) lives; default: beside `path`, else $TMPDIR
  std::string serial;  // what the guest reads as the disk's ID (at most 20 bytes)
};

// A virtio-net interface on an existing TAP device.
struct NetConfig {
  std::string tap;  // TAP interface name
  std::string mac;  // "52:54:00:12:34:56"; empty: derived from the TAP name
};

// A virtio-vsock device; the host side is a Unix socket (Firecracker's protocol): connect to
// `uds_path` and send "CONNECT <port>\n" to reach a guest port; guest connections to host port
// P arrive at `<uds_path>_P`.
struct VsockConfig {
  std::string uds_path;
  uint32_t guest_cid = 3;
};

struct VmConfig {
  std::string kernel;   // bzImage (64-bit boot protocol) or vmlinux ELF (PVH entry if present)
  std::string initrd;   // optional initramfs
  // More cpio archives loaded right after `initrd` (Linux unpacks each into the same rootfs):
  // e.g. a cached base archive plus a small per-boot one with configuration.
  std::vector<std::string> initrd_append;
  std::string cmdline = "console=ttyS0 panic=-1 pci=off";
  uint32_t cpus = 1;            // 1..254
  uint64_t memory_mib = 256;    // guest RAM
  // Back guest RAM with a memfd other processes can map; otherwise private anonymous memory,
  // which hosts back with transparent huge pages (faster boots).
  bool shared_memory = false;
  // The KVM device; empty means $FLICK_KVM_DEVICE, else /dev/kvm. It is opened only after
  // every input (kernel, initrds, disks, TAPs) has been read and checked.
  std::string kvm_device;
  std::vector<DiskConfig> disks;   // /dev/vda, /dev/vdb, ... in this order
  std::vector<NetConfig> nets;     // eth0, eth1, ...
  std::optional<VsockConfig> vsock;
  bool rng = true;                 // a virtio-rng device fed by the host's getrandom
  // Also name each virtio-mmio device on the command line (virtio_mmio.device=...), for
  // kernels built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES. ACPI always describes them.
  bool virtio_cmdline_devices = false;
  // Receives everything the guest writes to its serial console, on a vCPU thread.
  std::function<void(std::string_view)> console;
  // When set, a second 16550 UART (COM2 at 0x2f8, IRQ 3: the guest's ttyS1) whose output
  // comes here, on a vCPU thread: a channel apart from the kernel's console, e.g. for a
  // program's own output.
  std::function<void(std::string_view)> serial2;
};

enum class VmExitReason {
  power_off,  // the guest powered off (ACPI S5)
  reboot,     // the guest asked for a reset (ACPI reset register, i8042)
  panic,      // the guest reported a kernel panic (pvpanic) and then reset
  crash,      // triple fault / shutdown exit
  kvm_error,  // KVM could not run the guest (internal error, failed entry)
  stopped,    // the host stopped the VM
  vmm_error,  // the VMM itself failed
};
FLICK_API const char* to_string(VmExitReason reason) noexcept;

struct VmExit {
  VmExitReason reason = VmExitReason::stopped;
  std::string detail;  // one line: what happened, with addresses and bytes where useful
  bool clean() const { return reason == VmExitReason::power_off || reason == VmExitReason::reboot; }
};

struct VmTimings {
  std::chrono::nanoseconds setup{0};                  // create() to the first KVM_RUN
  std::optional<std::chrono::nanoseconds> boot_timer; // first KVM_RUN to the guest's boot-timer write
  std::chrono::nanoseconds run{0};                    // first KVM_RUN to exit (0 while running)
};

class FLICK_API Vm {
 public:
  // Checks the inputs and loads the kernel and initrds into fresh guest memory, opens the
  // devices' host sides, then opens KVM and builds boot data and vCPUs. Bad input is reported
  // by name before KVM is touched.
  static Result<std::unique_ptr<Vm>> create(const VmConfig& config);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // Builds a VM from a snapshot that snapshot() wrote into `dir`. `config` supplies what a
  // snapshot does not hold: the console callbacks, the host side of each device, the KVM
  // device. Its vCPUs, memory, COM2 and virtio devices must match the snapshot's (the kernel and
  // initrds are not read). Guest memory is mapped copy-on-write from `dir`/memory, so pages are
  // read only when the guest touches them and VMs restored from one snapshot share the pages
  // none has written. A snapshot that is damaged, truncated, of another VM, from another flick
  // version, or needing CPU features this host lacks is refused with the reason. The VM starts
  // paused where it was saved; start() runs it.
  static Result<std::unique_ptr<Vm>> restore(const VmConfig& config, const std::string& dir);

  // Saves the paused VM into `dir` (created if missing): `vm.state` (vCPUs, interrupt
  // controllers, clock, serial ports; versioned and checksummed) and `memory` (guest RAM, pages
  // of zeros left as holes), each written to a temporary file and renamed into place. Each
  // virtio device first returns the buffers it holds to the guest's rings. Devices saved so
  // far: virtio-rng, network devices, and plain disks (a restore must be given the same disk
  // files, unchanged). Refused while a vCPU runs, after the VM has ended, and when the guest
  // drives a device that cannot be saved yet (vsock, a copy-on-write disk). The VM stays
  // paused; resume() continues it.
  Result<void> snapshot(const std::string& dir);

  // Starts the vCPU threads.
  Result<void> start();
  // Blocks until the VM has exited (and all vCPU threads have ended).
  VmExit wait();
  // As wait(), but gives up after `timeout`.
  std::optional<VmExit> wait_for(std::chrono::milliseconds timeout);
  // Stops the VM now; wait() then reports `stopped` unless the guest exited first.
  void stop();
  // Pause and resume all vCPUs (each returns once every vCPU has acknowledged).
  Result<void> pause();
  Result<void> resume();

  // Queues bytes on the serial console's input; returns how many were accepted.
  size_t send_console_input(std::string_view bytes);

  VmTimings timings() const;
  uint64_t guest_memory_bytes() const;

  // For debugging a stuck guest: several lines with each vCPU's registers, run state, pending
  // events and local APIC vectors (each vCPU is briefly kicked out of the guest for it), and
  // each virtio device's status and ring indices. When $FLICK_DUMP_SIGNAL names a signal
  // (e.g. SIGUSR2) at the first create(), that signal makes every live VM in the process
  // write this to stderr as `flick-dump:` lines.
  std::string describe_state();

  struct Impl;

 private:
  explicit Vm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flick
