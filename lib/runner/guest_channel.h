// The host's end of flick-init's event channel (docs/init-protocol.md, "Events" and
// "Commands"): newline-delimited JSON over a vsock connection the guest opens to the host.
#pragma once

#include "base/fd.h"

#include <flick/result.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flick::runner {

// The vsock port flick-init connects to; the VMM accepts it at `<uds>_10000`. flick-init
// listens on 10001 for exec (runner/exec_channel.h kExecPort, docs/exec-protocol.md).
inline constexpr uint32_t kEventPort = 10000;

struct GuestEvent {
  enum class Kind { started, exited, oom, error };
  Kind kind = Kind::started;
  int pid = 0;                     // started
  std::optional<int> exit_code;    // exited (normally), error
  int signal = 0;                  // exited by a signal
  std::string message;             // error
};

// Parses one line. Unknown events and malformed lines are errors (the caller logs and skips).
Result<GuestEvent> parse_guest_event(std::string_view line);

// Splits a byte stream into lines; a line longer than `max_line` is cut into pieces so a
// guest cannot make the host buffer without bound.
class LineSplitter {
 public:
  explicit LineSplitter(size_t max_line = 64 * 1024) : max_(max_line) {}
  std::vector<std::string> feed(std::string_view bytes);

 private:
  std::string partial_;
  size_t max_;
};

std::string stop_command();
std::string signal_command(int signo);

// A listening Unix socket at `path` (the VMM's `<uds>_<port>`), non-blocking, replacing a
// stale socket file. Fails with a clear error when the path is too long for sockaddr_un.
Result<UniqueFd> listen_unix(const std::filesystem::path& path, int backlog = 1);

// A blocking stream socket connected to `path`: the same clear error for a path too long;
// a failed connect keeps its errno (ENOENT, ECONNREFUSED: nothing listens there).
Result<UniqueFd> connect_unix(const std::filesystem::path& path);

}  // namespace flick::runner
