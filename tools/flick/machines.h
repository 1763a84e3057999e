// Where the machine and app commands find what they work on: the store, through a Host, or a
// flickd, through its Fly Machines API (`flick --api`). Both give the same things (MachineView,
// AppInfo, Lease, ...), so each command is written once and prints the same either way.
#pragma once

#include "api_client.h"

#include <flick/machine.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace flick::cli {

// A machine as the commands print it, read from the store or from flickd's Machine object.
struct MachineView {
  std::string id, name, app, region, instance_id;
  MachineState state = MachineState::created;
  MachineConfig config;
  std::string image_digest;
  // The image's own entrypoint and cmd, when known (flickd's Machine object has neither).
  std::optional<std::vector<std::string>> image_entrypoint, image_cmd;
  std::chrono::system_clock::time_point created_at;
  uint64_t version = 0;
  bool cordoned = false;
  std::string guest_address, host_address;  // host_address: when known
  std::optional<ExitStatus> last_exit;
  std::vector<MachineEvent> events;  // oldest first; read only when asked for
  nlohmann::ordered_json json;       // Fly's Machine object (with "events" when they were read)
};

// One machine, found by id or name, and what can be done to it.
class MachineRef {
 public:
  virtual ~MachineRef() = default;
  virtual const std::string& id() const = 0;
  // What it is now (with its events when `events`).
  virtual Result<MachineView> read(bool events) = 0;
  // Sent with every change from now on (Fly's fly-machine-lease-nonce).
  virtual void set_lease_nonce(const std::string& nonce) = 0;

  virtual Result<void> start() = 0;
  // The machine's stop_config, changed by what is given.
  virtual Result<void> stop(std::optional<int> signal, std::optional<std::chrono::milliseconds> timeout) = 0;
  virtual Result<void> restart(std::optional<int> signal, std::optional<std::chrono::milliseconds> timeout) = 0;
  virtual Result<void> signal(int signo) = 0;
  virtual Result<void> wait(MachineState state, std::chrono::milliseconds timeout) = 0;
  virtual Result<void> destroy(bool force) = 0;
  virtual Result<void> update(const MachineConfig& config, const UpdateOptions& how) = 0;
  virtual Result<std::map<std::string, std::string>> metadata() = 0;
  virtual Result<void> set_metadata(const std::string& key, const std::string& value) = 0;
  virtual Result<void> delete_metadata(const std::string& key) = 0;
  virtual Result<void> cordon(bool cordoned) = 0;
  virtual Result<Lease> acquire_lease(std::chrono::seconds ttl, const std::string& description) = 0;
  virtual Result<Lease> lease() = 0;  // Errc::not_found when none is held
  virtual Result<void> release_lease(const std::string& nonce) = 0;
  // Runs the request to its end, output kept (Fly's exec).
  virtual Result<ExecResult> exec(const ExecRequest& request) = 0;
  // The guest's processes in pid order (Fly's ps).
  virtual Result<std::vector<ProcessInfo>> processes() = 0;
  // The store's handle, for what only it can do (a streaming or interactive exec); none
  // through flickd.
  virtual Machine* local() { return nullptr; }
};

class Machines {
 public:
  virtual ~Machines() = default;
  // "--api ENDPOINT" or "the store in DIR": where the commands work.
  virtual Result<void> check_app(const std::string& app) = 0;  // "app NAME not found"; empty: fine
  // By id or name, in `scope` when it is not empty (else any app: ids are unique).
  virtual Result<std::unique_ptr<MachineRef>> get(const std::string& id_or_name, const std::string& scope) = 0;
  // `app`'s machines in `states` (none: all but destroyed), without their events.
  virtual Result<std::vector<MachineView>> list(const std::string& app, const std::vector<MachineState>& states) = 0;
  // A machine in `created` (not started), its volumes made first when they do not exist;
  // its image found as config.pull says.
  virtual Result<MachineView> create(const MachineConfig& config, const std::string& name, const std::string& app) = 0;
  virtual Result<MachineView> clone(MachineRef& source, const CloneOptions& how) = 0;
  virtual Result<AppInfo> create_app(const std::string& name, const std::string& org) = 0;
  virtual Result<std::vector<AppInfo>> list_apps() = 0;
  virtual Result<void> destroy_app(const std::string& name, bool force) = 0;
};

// The endpoint of `--api` (else $FLICK_API), or empty: the store.
std::string& api_endpoint();

// A flickd's when --api is given (its token from $FLICK_API_TOKEN), else the store's
// (open_host(options)).
Result<std::unique_ptr<Machines>> open_machines(const HostOptions& options);

// Through flickd (api_machines.cpp).
std::unique_ptr<Machines> api_machines(ApiClient client);

}  // namespace flick::cli
