// libFuzzer: the bytes a guest sends on an exec connection, split into frames, their exit
// status parsed as Machine::exec does and their process entries as Machine::processes does.
// Nothing a guest sends may crash the host, make a frame larger than the protocol's cap, let a
// host-to-guest frame type through, or yield a process entry out of its bounds.
#include "runner/exec_channel.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flick::runner;
  ExecFrameDecoder decoder;
  // Three reads, split where the first two bytes say, as a stream socket may deliver them.
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  size_t a = size ? data[0] % (size + 1) : 0;
  size_t b = size > 1 ? a + data[1] % (size - a + 1) : a;
  for (auto part : {bytes.substr(0, a), bytes.substr(a, b - a), bytes.substr(b)}) {
    auto frames = decoder.feed(part);
    if (!frames) break;
    for (const auto& f : *frames) {
      auto t = static_cast<uint8_t>(f.type);
      if (f.payload.size() > kExecMaxPayload || t < 1 || t > 6) std::abort();
      if (f.type == ExecFrameType::process) {
        auto p = parse_process(f.payload);
        if (p && (p->pid < 1 || p->ppid < 0 || p->command.size() > flick::kMaxProcessText + 2 ||
                  p->directory.size() > flick::kMaxProcessText || p->listen_sockets.size() > 64 ||
                  p->run_time.count() < 0 || p->started_at.time_since_epoch().count() < 0))
          std::abort();
      }
      if (f.type != ExecFrameType::exit) continue;
      auto e = parse_exec_exit(f.payload);
      if (e && !((e->exit_code >= 0 && e->exit_code <= 255 && e->signal == 0) ||
                 (e->exit_code == -1 && e->signal >= 1 && e->signal <= 64)))
        std::abort();
    }
  }
  return 0;
}
