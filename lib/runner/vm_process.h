// The VM process of a run: one boot of the machine, forked by the monitor (monitor.h).
//
// It creates the VM, follows flick-init's events over vsock, carries out the monitor's
// commands (stop gracefully, signal, kill) and reports to the monitor over a SOCK_SEQPACKET
// socket, one JSON object per message:
//
//   VM process -> monitor: {"ev":"booted","vm_created_ns":N}        the VM runs
//                          {"ev":"boot_failed","error":"..."}        it could not (then it exits)
//                          {"ev":"started","pid":P,"started_ns":N,"boot_timer_ns":N}
//                          {"ev":"exited"}                            the program ended; the VM goes down
//                          {"ev":"exit", ExitStatus fields...}        how the run ended (then it exits)
//   monitor -> VM process: {"cmd":"stop","signal":S,"timeout_ms":T} | {"cmd":"signal","signal":S} | {"cmd":"kill"}
//
// Times are nanoseconds since `began` (CLOCK_MONOTONIC, shared by every process).
// If the monitor goes away, the VM is killed: a run is never left without its monitor.
#pragma once

#include "runner/run_spec.h"

#include <chrono>

namespace flick::runner {

// Runs one boot; returns the process's exit code (0 once "exit" was sent).
int run_vm_process(const RunSpec& spec, int monitor_fd, std::chrono::steady_clock::time_point began);

}  // namespace flick::runner
