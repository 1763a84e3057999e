// LogFollower: reads a machine's log file (console.log, output.log) as it grows, and moves on
// to the new file when the run moves a full one aside (runner::ConsoleLog).
#pragma once

#include "base/fd.h"

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string_view>

namespace flick::machine {

class LogFollower {
 public:
  enum class From { beginning, end };  // of the file there now
  LogFollower(std::filesystem::path path, From from);

  // Hands everything written since the last call to `sink`, in order, in chunks.
  void drain(const std::function<void(std::string_view)>& sink);

 private:
  std::filesystem::path path_;
  UniqueFd fd_;
  off_t offset_ = 0;
};

}  // namespace flick::machine
