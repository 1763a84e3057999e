// tools/flickd/openapi.json, byte for byte: built into flickd (tools/CMakeLists.txt) and
// served at GET /openapi.json.
#pragma once

#include <string_view>

namespace flick::flickd {

std::string_view openapi_json();

}  // namespace flick::flickd
