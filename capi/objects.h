// The handle tables of the C ABI's objects, shared by the files of each area.
#pragma once

#include "handles.h"

#include <flick/machine.h>
#include <flick/vm.h>

namespace flick::capi {

// A machine handle's object: the Machine, and where its host keeps machines' files.
struct MachineRef {
  std::unique_ptr<Machine> machine;
  std::filesystem::path state_dir;
};

HandleTable<Host>& hosts();
HandleTable<MachineRef>& machines();
HandleTable<Vm>& vms();

// A machine config from Fly's JSON, validated: FLICK_EMALFORMED for JSON that does not parse,
// FLICK_EINVAL naming the field otherwise (MachineConfig::from_json's and validate()'s words).
int parse_config(MachineConfig* out, const char* json, const char* fn);

}  // namespace flick::capi
