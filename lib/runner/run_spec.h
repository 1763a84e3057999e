// RunSpec: everything one run of a machine needs, decided by the process that starts it.
//
// The starting process resolves the image, kernel, initramfs and per-start config archive,
// then writes this as JSON (`<machine dir>/run.json`) for flick-vmm, which reads nothing
// else about the machine: it never parses a MachineConfig or touches the image cache.
#pragma once

#include <flick/machine.h>
#include <flick/result.h>
#include <flick/vm.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace flick::runner {

// After the stop timeout, flick-init kills the program, syncs, unmounts and powers off; the
// run kills the VM if it has not ended this long after that.
inline constexpr std::chrono::seconds kStopGrace{10};

// A console log past this size moves to "<log>.1" (replacing the one before) and a new log
// begins: a chatty machine keeps at most twice this on disk.
inline constexpr uint64_t kConsoleLogCap = 4u << 20;

struct RunSpec {
  std::string machine_id;
  std::string store;        // the MachineStore database
  std::string machine_dir;  // removed by auto_destroy
  std::string lock_path;    // flock held by the run for its whole life: its liveness
  std::string control_path; // the control socket (control.h)
  std::string console_log;  // the guest's console, appended (rotated at kConsoleLogCap)
  // When set, the VM gets a second serial port (the guest's ttyS1, where flick-init puts the
  // program's stdio): its output goes to console_log and to this file alone as well.
  std::string output_log;

  VmConfig vm;              // everything but `console` (the run writes console_log)
  std::optional<MachineNetwork> network;  // configured on the TAP each boot makes

  RestartConfig restart;
  StopConfig stop;
  std::chrono::milliseconds start_timeout{60000};
  bool auto_destroy = false;

  std::string to_json() const;
  static Result<RunSpec> from_json(std::string_view json);
};

}  // namespace flick::runner

namespace flick::runner {

// How a run ended, as the store keeps it (MachineRow::last_exit) and events carry it.
std::string exit_status_json(const ExitStatus& exit);
Result<ExitStatus> parse_exit_status(std::string_view json);

}  // namespace flick::runner
