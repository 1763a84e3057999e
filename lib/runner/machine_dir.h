// A machine's directory (<state>/machines/<id>): its files and the run lock that says whether
// a run of it is alive. Removing it keeps the lock file to the end, so a process that opens
// the lock while a destroy is under way finds it held, never a fresh unlocked one.
#pragma once

#include <flick/result.h>

#include <filesystem>

namespace flick::runner {

inline constexpr const char* kRunLock = "run.lock";

// Everything in `dir` but the run lock (a destroy, before it records `destroyed`).
Result<void> remove_machine_files(const std::filesystem::path& dir);
// The run lock and the directory itself (after `destroyed` is recorded).
void remove_machine_dir(const std::filesystem::path& dir);

}  // namespace flick::runner
