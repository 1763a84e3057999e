// Machine::Impl: a handle on one machine of the store. The machine's runs live in flick-vmm
// processes (lib/runner); a handle reads the store and drives a run through its control socket.
#pragma once

#include <flick/machine.h>

#include "machine/host_impl.h"
#include "machine/init_config.h"
#include "store/names.h"
#include "runner/machine_dir.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace flick {

// What create() resolved and a start boots, kept as MachineRow::boot.
struct MachineBoot {
  std::filesystem::path kernel, initramfs;
  Rootfs image;
  machine::ProcessSpec process;
  std::optional<MachineNetwork> network;
  uint32_t subnet = 0;  // network's /30 (unique among live machines, by the store)

  std::string to_json() const;
  static Result<MachineBoot> from_json(std::string_view json);
};

struct Machine::Impl {
  using Clock = std::chrono::steady_clock;

  Impl(std::shared_ptr<Host::Impl> host, const store::MachineRow& row, MachineConfig config, MachineBoot boot,
       MachineHandlers handlers);
  ~Impl();

  // The config and boot as the store had them when last read. Replaced whole when they
  // change (update, metadata, another process's update seen at start); the old ones are kept
  // so that references config() and image() handed out stay valid.
  struct View {
    std::string config_json, boot_json;
    MachineConfig config;
    MachineBoot boot;
  };

  std::shared_ptr<Host::Impl> host;
  const std::string id, name, app, region;
  const std::chrono::system_clock::time_point created_at;
  const std::filesystem::path dir;  // <state>/machines/<id>

  mutable std::mutex mu;
  std::optional<StartTimings> timings;  // of the last start() through this handle
  std::shared_ptr<const View> view;     // never null
  std::vector<std::shared_ptr<const View>> retired;
  std::string lease_nonce;              // sent with every change; empty: none

  std::shared_ptr<const View> current() const {
    std::lock_guard lk(mu);
    return view;
  }
  std::optional<std::string> nonce() const {
    std::lock_guard lk(mu);
    return lease_nonce.empty() ? std::nullopt : std::optional<std::string>(lease_nonce);
  }
  // Takes the row's config and boot when they differ from the view's.
  Result<std::shared_ptr<const View>> refresh(const store::MachineRow& row);

  MachineHandlers handlers;
  std::thread follower;  // delivers handlers; only when there are any
  std::atomic<bool> closing{false};
  int64_t last_event_id = 0;  // follower's

  std::filesystem::path lock_path() const { return dir / runner::kRunLock; }
  std::filesystem::path spec_path() const { return dir / "run.json"; }
  std::filesystem::path console_path() const { return dir / "console.log"; }
  std::filesystem::path output_path() const { return dir / "output.log"; }
  std::filesystem::path control_path() const { return host->options.run_dir / (id + ".ctl"); }
  std::filesystem::path vsock_path() const { return host->options.run_dir / (id + ".vsock"); }

  Result<store::MachineRow> row() const { return host->store.get_machine("", id); }
  // What a start of `row` (the machine as it leaves for `starting`) boots.
  Result<void> write_run_spec(const store::MachineRow& row);
  // /flick/metadata.json for the guest: config.metadata with id, name, app, region and
  // instance_id (docs/init-protocol.md).
  std::string metadata_json(const store::MachineRow& row) const;
  void follow();
  // Blocks until `done(row)` or the timeout; settles an orphaned run on the way.
  Result<store::MachineRow> wait_until(const std::function<bool(const store::MachineRow&)>& done,
                                       std::chrono::milliseconds timeout);
};

// is_running() of a state as the store spells it.
inline bool running_state(std::string_view s) {
  const auto state = store::machine_state_from_string(s);
  return state && is_running(*state);
}

}  // namespace flick
