// Starting a run: flick-vmm as its own process, detached from the one that starts it.
#pragma once

#include <flick/result.h>

#include <chrono>
#include <filesystem>

namespace flick::runner {

// flick-vmm for this library: $FLICK_VMM, else beside the running executable or libflick (or
// in ../libexec/flick), else where this build installs it (<libexecdir>/flick), else the
// build tree's bin/flick-vmm.
Result<std::filesystem::path> find_vmm_program();

// Spawns `program run --spec SPEC` with a clean environment and no descriptor but its log
// (stdout and stderr, appended), the readiness pipe and `run_lock` (an flock the caller
// holds on the run's lock file: the run inherits it, so the machine is never unlocked between
// the caller's check and the run), and returns once the first boot runs: the run then
// belongs to no one but its monitor. Errors are the monitor's (e.g. no KVM).
Result<void> spawn_run(const std::filesystem::path& program, const std::filesystem::path& spec,
                       const std::filesystem::path& log, int run_lock,
                       std::chrono::steady_clock::time_point began,
                       std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace flick::runner
