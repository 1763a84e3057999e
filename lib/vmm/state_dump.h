// State dumps on a signal: when $FLICK_DUMP_SIGNAL names a signal (e.g. SIGUSR2), every live
// VM in the process writes its state (vCPU registers, pending interrupts, virtqueue indices)
// to stderr as `flick-dump:` lines when that signal arrives — so a watchdog can see what a
// stuck VM is doing without a debugger. Nothing is installed unless the variable is set.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace flick::vmm {

class StateDumpRegistration {
 public:
  StateDumpRegistration() = default;
  // Adds `describe` (returning one or more lines) to the dump while the result lives; the
  // first registration installs the handler. A no-op when $FLICK_DUMP_SIGNAL is not set.
  static StateDumpRegistration add(std::function<std::string()> describe);
  StateDumpRegistration(StateDumpRegistration&& o) noexcept : id_(o.id_) { o.id_ = 0; }
  StateDumpRegistration& operator=(StateDumpRegistration&& o) noexcept;
  StateDumpRegistration(const StateDumpRegistration&) = delete;
  StateDumpRegistration& operator=(const StateDumpRegistration&) = delete;
  // Waits for a dump in progress, so `describe` is never called after this returns.
  ~StateDumpRegistration() { reset(); }
  void reset();

 private:
  explicit StateDumpRegistration(uint64_t id) : id_(id) {}
  uint64_t id_ = 0;
};

// "SIGUSR2", "USR2" or "12" -> 12; 0 when the text names no signal.
int parse_signal_name(const std::string& text);

}  // namespace flick::vmm
