// The control socket of a machine's run: how any process drives a running machine.
//
// Newline-delimited JSON over a Unix stream socket in the run directory (mode 0600 under a
// 0700 directory: the socket's permissions are the access control). A client first says
// which protocol versions it speaks, the run answers with the highest one both speak, then
// requests and replies alternate:
//
//   -> {"op":"hello","min":1,"max":1}        <- {"ok":true,"version":1,"program":"flick-vmm 0.1.0"}
//   -> {"op":"status"}    <- {"ok":true,"state":"started","monitor_pid":122,"vmm_pid":123,"restarts":0}
//   -> {"op":"stop","signal":2,"timeout_ms":5000}   <- {"ok":true}   (returns at once: wait on the store)
//   -> {"op":"signal","signal":15}           <- {"ok":true} | {"ok":false,"error":"machine ... is starting: ..."}
//   -> {"op":"kill"}                         <- {"ok":true}
//
// Version 1 is the above. A later version adds ops; a run answers only ops of the version it
// agreed, so a newer client speaks the older protocol to a run started by an older flick.
#pragma once

#include "base/fd.h"

#include <flick/machine.h>
#include <flick/result.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace flick::runner {

inline constexpr int kControlProtocolMin = 1;
inline constexpr int kControlProtocolMax = 1;

struct RunStatus {
  std::string state;  // as the run sees it
  int monitor_pid = 0;  // the run's monitor (flick-vmm)
  int vmm_pid = 0;    // the process running the VM now, 0 between boots
  uint32_t restarts = 0;
};

class ControlClient {
 public:
  // Connects to `socket` and agrees on a version in [min_version, max_version]: Errc::unsupported
  // when the run speaks none of them, Errc::not_found when nothing listens (the run has ended).
  static Result<ControlClient> connect(const std::filesystem::path& socket,
                                       int min_version = kControlProtocolMin,
                                       int max_version = kControlProtocolMax,
                                       std::chrono::milliseconds timeout = std::chrono::seconds(10));
  int version() const { return version_; }

  Result<RunStatus> status();
  // The lease nonce lets the run record the stop while the machine's lease is held.
  Result<void> stop(const StopConfig& how, const std::optional<std::string>& lease_nonce = std::nullopt);
  Result<void> signal(int signo);
  Result<void> kill(const std::optional<std::string>& lease_nonce = std::nullopt);

  // One request line (a JSON object) and its reply; an {"ok":false} reply is an error
  // carrying the run's message.
  Result<std::string> call(std::string_view request);

 private:
  ControlClient(UniqueFd fd, std::chrono::milliseconds timeout) : fd_(std::move(fd)), timeout_(timeout) {}
  UniqueFd fd_;
  std::chrono::milliseconds timeout_;
  std::string buffered_;
  int version_ = 0;
};

// The run's side: the reply to a hello from a client speaking [min, max] (the agreed version
// in *agreed, 0 when there is none).
std::string control_hello_reply(int client_min, int client_max, int* agreed);

}  // namespace flick::runner
