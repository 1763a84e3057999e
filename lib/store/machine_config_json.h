// MachineConfig in Fly's JSON: MachineConfig::from_json and to_json live in
// machine_config_json.cpp; this is what MachineConfig::validate() needs from that file.
#pragma once

#include <flick/machine.h>
#include <flick/result.h>

namespace flick::store {

// The checks validate() cannot make without JSON: services_json is empty or a JSON array,
// each key of `unimplemented` is a field flick keeps (a mounts[i] key naming an existing
// mount) and each value is JSON. Errc::invalid_argument naming the field.
Result<void> check_json_fields(const MachineConfig& config);

}  // namespace flick::store
