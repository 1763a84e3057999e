// libFuzzer: the bytes a guest sends on flick-init's event channel, split into lines and parsed
// as the machine's supervisor does. Nothing a guest sends may crash the host or break the
// splitter's bound.
#include "runner/guest_channel.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kMaxLine = 256;
  flick::runner::LineSplitter splitter(kMaxLine);
  // Two reads, split where the first byte says, as a stream socket may deliver them.
  size_t cut = size ? data[0] % (size + 1) : 0;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (auto part : {bytes.substr(0, cut), bytes.substr(cut)}) {
    for (const auto& line : splitter.feed(part)) {
      if (line.size() > kMaxLine) std::abort();
      auto ev = flick::runner::parse_guest_event(line);
      if (ev && ev->kind == flick::runner::GuestEvent::Kind::exited && !ev->exit_code && ev->signal <= 0)
        std::abort();  // an exit must say how
    }
  }
  return 0;
}
