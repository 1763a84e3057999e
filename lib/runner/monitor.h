// The monitor of a machine's run: the long-lived half of flick-vmm (conmon's model).
//
// It holds the run's liveness lock, serves the control socket, forks a VM process for each
// boot (vm_process.h), and records every transition and event in the store. Because the
// VM runs in a child, the restart policy, the stop timeout and kill deadline, and
// auto_destroy apply even when the VM process crashes or is killed. It returns when the
// machine has settled (stopped, failed or destroyed) and no restart follows.
#pragma once

#include "runner/run_spec.h"

#include <chrono>

namespace flick::runner {

// `ready_fd` (or -1) receives one line once the first boot runs or could not: "ok\n", or
// "error <Errc number> <message>\n", after which the monitor has ended and changed nothing.
// `lock_fd` is the run lock already held (from the starting process), or -1 to take it here.
// Returns the process exit code.
int run_monitor(const RunSpec& spec, int ready_fd, int lock_fd, std::chrono::steady_clock::time_point began);

// The starting process's side: reads that line (until EOF).
Result<void> read_ready(int ready_fd, std::chrono::milliseconds timeout);

}  // namespace flick::runner
