#include "runner/run_spec.h"

#include "store/names.h"

#include <nlohmann/json.hpp>

namespace flick::runner {

using nlohmann::json;

std::string RunSpec::to_json() const {
  json disks = json::array();
  for (const auto& d : vm.disks)
    disks.push_back({{"path", d.path}, {"read_only", d.read_only}, {"copy_on_write", d.copy_on_write},
                     {"overlay_dir", d.overlay_dir}, {"serial", d.serial}});
  json nets = json::array();
  for (const auto& n : vm.nets) nets.push_back({{"tap", n.tap}, {"mac", n.mac}});
  json j = {
      {"machine_id", machine_id},
      {"store", store},
      {"machine_dir", machine_dir},
      {"lock_path", lock_path},
      {"control_path", control_path},
      {"console_log", console_log},
      {"vm",
       {{"kernel", vm.kernel},
        {"initrd", vm.initrd},
        {"initrd_append", vm.initrd_append},
        {"cmdline", vm.cmdline},
        {"cpus", vm.cpus},
        {"memory_mib", vm.memory_mib},
        {"kvm_device", vm.kvm_device},
        {"disks", disks},
        {"nets", nets},
        {"rng", vm.rng}}},
      {"restart", {{"policy", to_string(restart.policy)}, {"max_retries", restart.max_retries}}},
      {"stop", {{"signal", stop.signal}, {"timeout_ms", stop.timeout.count()}}},
      {"start_timeout_ms", start_timeout.count()},
      {"auto_destroy", auto_destroy},
  };
  if (!output_log.empty()) j["output_log"] = output_log;
  if (vm.vsock) j["vm"]["vsock"] = {{"uds_path", vm.vsock->uds_path}, {"guest_cid", vm.vsock->guest_cid}};
  if (network)
    j["network"] = {{"tap", network->tap}, {"host_address", network->host_address},
                    {"guest_address", network->guest_address}, {"prefix", network->prefix}};
  return j.dump();
}

Result<RunSpec> RunSpec::from_json(std::string_view text) {
  // Written by flick itself; a spec that does not parse is a version mismatch or corruption.
  try {
    json j = json::parse(text);
    RunSpec s;
    j.at("machine_id").get_to(s.machine_id);
    j.at("store").get_to(s.store);
    j.at("machine_dir").get_to(s.machine_dir);
    j.at("lock_path").get_to(s.lock_path);
    j.at("control_path").get_to(s.control_path);
    j.at("console_log").get_to(s.console_log);
    s.output_log = j.value("output_log", "");
    const json& v = j.at("vm");
    v.at("kernel").get_to(s.vm.kernel);
    v.at("initrd").get_to(s.vm.initrd);
    v.at("initrd_append").get_to(s.vm.initrd_append);
    v.at("cmdline").get_to(s.vm.cmdline);
    v.at("cpus").get_to(s.vm.cpus);
    v.at("memory_mib").get_to(s.vm.memory_mib);
    v.at("kvm_device").get_to(s.vm.kvm_device);
    v.at("rng").get_to(s.vm.rng);
    for (const auto& d : v.at("disks"))
      s.vm.disks.push_back({d.at("path"), d.at("read_only"), d.at("copy_on_write"), d.at("overlay_dir"), d.at("serial")});
    for (const auto& n : v.at("nets")) s.vm.nets.push_back({n.at("tap"), n.at("mac")});
    if (v.contains("vsock")) s.vm.vsock = VsockConfig{v["vsock"].at("uds_path"), v["vsock"].at("guest_cid")};
    if (j.contains("network")) {
      const json& n = j["network"];
      s.network = MachineNetwork{n.at("tap"), n.at("host_address"), n.at("guest_address"), n.at("prefix")};
    }
    std::string policy = j.at("restart").at("policy");
    auto parsed = store::restart_policy_from_string(policy);
    if (!parsed) return make_error(Errc::malformed, "run spec: restart.policy: unknown policy \"" + policy + "\"");
    s.restart.policy = *parsed;
    j.at("restart").at("max_retries").get_to(s.restart.max_retries);
    j.at("stop").at("signal").get_to(s.stop.signal);
    s.stop.timeout = std::chrono::milliseconds(j.at("stop").at("timeout_ms").get<int64_t>());
    s.start_timeout = std::chrono::milliseconds(j.at("start_timeout_ms").get<int64_t>());
    j.at("auto_destroy").get_to(s.auto_destroy);
    return s;
  } catch (const json::exception& e) {
    return make_error(Errc::malformed, std::string("run spec: ") + e.what());
  }
}

}  // namespace flick::runner

namespace flick::runner {

std::string exit_status_json(const ExitStatus& e) {
  return nlohmann::json{{"exit_code", e.exit_code}, {"signal", e.signal}, {"oom_killed", e.oom_killed},
                        {"requested_stop", e.requested_stop}, {"run_lost", e.run_lost}, {"error", e.error}}
      .dump();
}

Result<ExitStatus> parse_exit_status(std::string_view text) {
  try {
    auto j = nlohmann::json::parse(text);
    ExitStatus e;
    e.exit_code = j.value("exit_code", -1);
    e.signal = j.value("signal", 0);
    e.oom_killed = j.value("oom_killed", false);
    e.requested_stop = j.value("requested_stop", false);
    e.run_lost = j.value("run_lost", false);
    e.error = j.value("error", std::string());
    return e;
  } catch (const nlohmann::json::exception& ex) {
    return make_error(Errc::malformed, std::string("exit status: ") + ex.what());
  }
}

}  // namespace flick::runner
