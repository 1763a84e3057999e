// flick-init, the guest's PID 1, as embedded in this library at build time.
#pragma once

#include <string_view>

extern "C" const char flick_embedded_init_begin[];
extern "C" const char flick_embedded_init_end[];

namespace flick::machine {

inline std::string_view embedded_init() {
  return {flick_embedded_init_begin,
          static_cast<size_t>(flick_embedded_init_end - flick_embedded_init_begin)};
}

}  // namespace flick::machine
