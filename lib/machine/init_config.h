// What a start of a machine hands flick-init: /flick/config.json (docs/init-protocol.md),
// built from the machine config merged with the image config as container runtimes do.
#pragma once

#include <flick/image.h>
#include <flick/machine.h>
#include <flick/result.h>

#include <optional>
#include <string>
#include <vector>

namespace flick::machine {

struct ProcessSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // KEY=value, final
  std::string cwd = "/";
  std::string user;              // empty: root
  std::string terminal;          // the guest device for its stdio; empty: /dev/console
};

// init.exec, else entrypoint + cmd where the machine's init.entrypoint replaces the image's
// Entrypoint and drops its Cmd, and init.cmd replaces Cmd. Machine env overrides the image's
// by key; PATH gets the usual default when neither sets it. Fails when nothing would run.
Result<ProcessSpec> resolve_process(const MachineConfig& config, const ImageConfig& image);

struct GuestMount {
  std::string device;  // /dev/vdb
  std::string path;
};

// The JSON flick-init reads. The root is /dev/vda (ext4); events go to vsock kEventPort;
// `network` configures eth0 and names the host host.flick.internal.
std::string init_config_json(const std::string& hostname, const ProcessSpec& process,
                             const std::vector<GuestMount>& mounts, const StopConfig& stop,
                             const std::optional<MachineNetwork>& network = std::nullopt);

// "/dev/vda", "/dev/vdb", ... for the index-th virtio disk.
std::string virtio_disk_name(size_t index);

}  // namespace flick::machine
