// What `flick machine run` and `flick machine create` share: IMAGE [CMD...] and the options
// that make a MachineConfig, the machine's name and app, and the Host's kernel and state.
#pragma once

#include "command.h"

#include <flick/machine.h>

#include <functional>
#include <string>

namespace flick::cli {

struct MachineOptions {
  HostOptions host;
  MachineConfig config;
  std::string name;
  std::string app;  // -a; empty: $FLICK_APP, else "default"
  bool rm = false;  // config.auto_destroy
  bool no_network = false;
};

// Adds IMAGE, CMD and the machine's options to `command`. CMD is what follows "--" or the
// first argument after IMAGE that is not an option, with the rest of the line.
void add_machine_options(CLI::App& command, MachineOptions& o);

// --restart's value: no, always or on-failure[:MAX_RETRIES] (usage_error() otherwise).
void parse_restart(const std::string& policy, RestartConfig* restart);
// --metadata's K=V into config->metadata (usage_error() otherwise).
void parse_metadata(const std::string& kv, MachineConfig* config);

// A change to a MachineConfig.
using ConfigEdit = std::function<void(MachineConfig&)>;

// flyctl's -p/--port PORT[:INTERNAL][/tcp[:HANDLER]...] (repeatable), --autostart[=true|false]
// and --autostop[=off|stop|suspend]. Each, once parsed, hands `edit` its change to the config's
// services_json (Fly's JSON, which validate() checks), -p first: the ports given for one
// internal port replace the ports of the service with that internal_port (its other fields
// kept), or make a tcp service; --autostart and --autostop then set every service's. A bad
// value is a usage_error() at parse; --autostart or --autostop on a config without services
// is one when the edit is made.
void add_service_options(CLI::App& command, const std::function<void(ConfigEdit)>& edit);

// --config FILE: a MachineConfig in Fly's JSON (usage_error() naming what is wrong); warnings
// about fields flick keeps but does not implement go to stderr.
MachineConfig read_config_file(const std::string& path);

// A config with mounts may make volumes before Host::create resolves its image: its image is
// resolved first (as config.pull says), so a bad one fails before anything is made.
Result<void> check_image(Host& host, const MachineConfig& config);

// Creates, in `app`, the volumes named in config.mounts that do not exist yet (1 GB each).
Result<void> ensure_volumes(Host& host, const MachineConfig& config, const std::string& app);

}  // namespace flick::cli
