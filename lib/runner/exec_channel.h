// The host's end of flick-init's exec agent (docs/exec-protocol.md): frames over a vsock
// connection the host opens to the guest's port kExecPort through the VM's vsock Unix socket.
#pragma once

#include <flick/machine.h>
#include <flick/result.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace flick::runner {

// flick-init listens here (beside kEventPort, where it connects to the host).
inline constexpr uint32_t kExecPort = 10001;

inline constexpr size_t kExecFrameHeader = 5;            // type, then the length (big-endian u32)
inline constexpr uint32_t kExecMaxPayload = 64 * 1024;  // larger is malformed, either way

enum class ExecFrameType : uint8_t {
  stdout_data = 1,  // guest -> host
  stderr_data = 2,
  exit = 3,    // {"exit_code":N} or {"signal":N}
  error = 4,   // the request was refused: text
  process = 5,  // ps: one process, JSON
  process_end = 6,  // ps: the list is complete
  request = 16,  // host -> guest: JSON, first
  stdin_data = 17,
  stdin_eof = 18,
  kill = 19,
  resize = 20,  // tty: rows, cols (big-endian u16 each)
  ps = 21,      // host -> guest, instead of a request: list the processes
};

struct ExecFrame {
  ExecFrameType type = ExecFrameType::stdout_data;
  std::string payload;
};

std::string encode_exec_frame(ExecFrameType type, std::string_view payload);
// The request frame's JSON: cmd, env, user, workdir (stdin goes in frames of its own).
std::string exec_request_json(const ExecRequest& request);

// Splits what the guest sends into frames. Only guest -> host types, payloads of at most
// kExecMaxPayload: anything else is Errc::malformed, and the decoder stays failed.
class ExecFrameDecoder {
 public:
  Result<std::vector<ExecFrame>> feed(std::string_view bytes);

 private:
  std::string buffered_;
  bool failed_ = false;
};

struct ExecExit {
  int exit_code = -1;
  int signal = 0;
};
Result<ExecExit> parse_exec_exit(std::string_view payload);

// A process frame's JSON, checked strictly: every member known and in range (kMaxProcessText,
// at most 64 listening sockets), or Errc::malformed.
Result<ProcessInfo> parse_process(std::string_view payload);

// Lists the processes of the guest behind `uds_path` (docs/exec-protocol.md, ps).
Result<std::vector<ProcessInfo>> list_guest_processes(const std::filesystem::path& uds_path);

// Runs `request` in the guest behind `uds_path`, output to `output` as it comes.
Result<ExecResult> exec_in_guest(const std::filesystem::path& uds_path, const ExecRequest& request,
                                 const ExecOutput& output);

}  // namespace flick::runner
