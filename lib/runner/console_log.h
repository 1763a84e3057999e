// ConsoleLog: a run's guest console, appended to a file that never grows without bound, with
// its last bytes kept for error messages.
#pragma once

#include "base/fd.h"

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace flick::runner {

class ConsoleLog {
 public:
  // Appends to `path` (created 0600). Once it would pass `cap` bytes it is renamed to
  // "<path>.1", replacing the one before, and a new file begins: readers that follow the log
  // notice the new inode at `path` and move to it.
  ConsoleLog(std::string path, uint64_t cap);

  // Thread-safe. A write that fails (a full disk) loses that output, never the run.
  void write(std::string_view bytes);

  // The line that says most about why the guest ended: a panic's own line, else the last one.
  std::string telling_line() const;

 private:
  void open();

  const std::string path_;
  const uint64_t cap_;
  UniqueFd fd_;
  uint64_t size_ = 0;
  mutable std::mutex mu_;
  std::string tail_;
};

}  // namespace flick::runner
