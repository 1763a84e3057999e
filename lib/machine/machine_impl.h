// Machine::Impl: one machine's state machine and the supervision of its runs.
#pragma once

#include <flick/machine.h>
#include <flick/vm.h>

#include "base/event_fd.h"
#include "base/fd.h"
#include "machine/host_impl.h"
#include "runner/host_network.h"
#include "machine/init_config.h"
#include "machine/volume.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace flick {

// One boot of the machine: the VM, the thread waiting for it, and the event channel.
struct MachineRun {
  std::unique_ptr<Vm> vm;
  UniqueFd listener;  // until flick-init connects
  EventFd wake;       // the VM ended, or the machine has a command for the guest
  std::thread waiter;
  VmExit exit;                     // valid once `exited`
  std::atomic<bool> exited{false};  // set by `waiter` before it signals `wake`
  std::chrono::steady_clock::time_point began;            // the start() (or restart) that made it
  std::chrono::steady_clock::time_point vm_create_began;  // Vm::create() was called
  ~MachineRun();
};

struct Machine::Impl {
  using Clock = std::chrono::steady_clock;

  Impl(std::shared_ptr<Host::Impl> host, std::string id, std::string name, MachineConfig config,
       Rootfs image, machine::ProcessSpec process, BootFiles boot,
       std::vector<machine::VolumeLease> volumes, MachineHandlers handlers);
  ~Impl();

  std::shared_ptr<Host::Impl> host;
  const std::string id, name;
  const MachineConfig config;
  const Rootfs image;
  const machine::ProcessSpec process;
  const BootFiles boot;
  const std::filesystem::path dir;         // <state>/machines/<id>
  const std::filesystem::path vsock_path;  // <run>/<id>.vsock (the VMM adds _<port>)
  std::vector<machine::VolumeLease> volumes;
  MachineHandlers handlers;
  std::optional<MachineNetwork> network;        // set by Host::create, fixed after
  std::optional<runner::SubnetLease> subnet;   // holds network's /30 until destroyed

  std::mutex lifecycle_mu;  // serialises start() and destroy(): they own `supervisor`
  std::thread supervisor;

  mutable std::mutex mu;  // everything below
  std::condition_variable cv;
  MachineState state = MachineState::created;
  std::vector<MachineEvent> events;
  std::optional<ExitStatus> last_exit;
  std::optional<StartTimings> timings;
  std::string failure;       // why the machine is failed
  uint32_t retries = 0;      // on-failure restarts since the last start()
  std::shared_ptr<MachineRun> run;
  bool stop_requested = false;
  std::optional<StopConfig> stop_how;
  bool kill_requested = false;
  std::string outbox;        // commands for the guest, sent by the supervisor

  mutable std::mutex console_mu;  // not `mu`: vCPU threads write the console while the
  std::string console_tail;       // supervisor may hold `mu`; the last output, for errors

  // Appends an event (entering its status if asked) and tells the handler (outside `mu`).
  void record(MachineEventType type, MachineState status, std::optional<ExitStatus> exit,
              std::string detail, bool enter_status = false);
  void set_state(MachineState s);  // with `mu` held

  Result<std::shared_ptr<MachineRun>> boot_run(Clock::time_point began);
  void supervise();
  ExitStatus watch(MachineRun& run, bool* reached_started);
  void on_console(std::string_view bytes);
  std::string telling_console_line() const;  // for error messages
  Result<void> remove_files();
  void remove_sockets();
  void release_volumes();  // from the Host's list, and their locks
  void wake_run();  // with `mu` held
};

}  // namespace flick
