#include "machine/init_config.h"

#include "runner/guest_channel.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace flick::machine {

namespace {

constexpr const char* kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string env_key(const std::string& kv) { return kv.substr(0, kv.find('=')); }

}  // namespace

Result<ProcessSpec> resolve_process(const MachineConfig& config, const ImageConfig& image) {
  ProcessSpec p;
  const InitConfig& init = config.init;
  if (!init.exec.empty()) {
    p.argv = init.exec;
  } else {
    p.argv = init.entrypoint.empty() ? image.entrypoint : init.entrypoint;
    const auto& cmd = !init.cmd.empty() ? init.cmd : init.entrypoint.empty() ? image.cmd
                                                                             : std::vector<std::string>{};
    p.argv.insert(p.argv.end(), cmd.begin(), cmd.end());
  }
  if (p.argv.empty() || p.argv[0].empty())
    return make_error(Errc::invalid_argument,
                      "nothing to run: image " + config.image +
                          " has no Entrypoint or Cmd; give init.cmd or init.exec");

  p.env = image.env;
  for (const auto& [key, value] : config.env) {
    std::string kv = key + "=" + value;
    auto it = std::find_if(p.env.begin(), p.env.end(), [&](const std::string& e) { return env_key(e) == key; });
    if (it != p.env.end()) *it = std::move(kv);
    else p.env.push_back(std::move(kv));
  }
  if (std::none_of(p.env.begin(), p.env.end(), [](const std::string& e) { return env_key(e) == "PATH"; }))
    p.env.insert(p.env.begin(), kDefaultPath);

  p.cwd = !init.workdir.empty() ? init.workdir : !image.working_dir.empty() ? image.working_dir : "/";
  if (p.cwd.front() != '/')
    return make_error(Errc::invalid_argument, "working directory " + p.cwd + " is not absolute");
  p.user = !init.user.empty() ? init.user : image.user;
  return p;
}

std::string init_config_json(const std::string& hostname, const ProcessSpec& process,
                             const std::vector<GuestMount>& mounts, const StopConfig& stop,
                             const std::optional<MachineNetwork>& network) {
  nlohmann::json j;
  j["hostname"] = hostname;
  j["root"] = {{"device", virtio_disk_name(0)}, {"fstype", "ext4"}, {"options", "rw"}};
  auto& m = j["mounts"] = nlohmann::json::array();
  for (const auto& mount : mounts)
    m.push_back({{"device", mount.device}, {"path", mount.path}, {"fstype", "ext4"}, {"options", "rw"}});
  j["process"] = {{"argv", process.argv}, {"env", process.env}, {"cwd", process.cwd}, {"user", process.user}};
  if (!process.terminal.empty()) j["process"]["terminal"] = process.terminal;
  j["stop"] = {{"signal", stop.signal}, {"timeout_ms", stop.timeout.count()}};
  j["vsock"] = {{"port", runner::kEventPort}};
  if (network) {
    j["network"] = {{"interface", "eth0"},
                    {"address", network->guest_address + "/" + std::to_string(network->prefix)},
                    {"gateway", network->host_address}};
    j["hosts"] = nlohmann::json::array({{{"address", network->host_address}, {"names", {"host.flick.internal"}}}});
  }
  return j.dump();
}

std::string virtio_disk_name(size_t index) {
  // vda..vdz, then vdaa.. as Linux names them.
  std::string suffix;
  size_t n = index;
  do {
    suffix.insert(suffix.begin(), static_cast<char>('a' + n % 26));
    n = n / 26;
  } while (n-- > 0);
  return "/dev/vd" + suffix;
}

}  // namespace flick::machine
