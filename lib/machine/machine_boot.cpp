// MachineBoot as JSON (MachineRow::boot): what create() resolved, for every later start.
#include "machine/machine_impl.h"

#include <nlohmann/json.hpp>

namespace flick {

using nlohmann::json;

std::string MachineBoot::to_json() const {
  const ImageConfig& c = image.config;
  json j = {
      {"kernel", kernel.string()},
      {"initramfs", initramfs.string()},
      {"image",
       {{"path", image.path.string()},
        {"digest", image.image_digest},
        {"size_bytes", image.size_bytes},
        {"config",
         {{"entrypoint", c.entrypoint}, {"cmd", c.cmd}, {"env", c.env}, {"working_dir", c.working_dir},
          {"user", c.user}, {"exposed_ports", c.exposed_ports}, {"labels", c.labels}, {"os", c.os},
          {"architecture", c.architecture}}}}},
      {"process", {{"argv", process.argv}, {"env", process.env}, {"cwd", process.cwd}, {"user", process.user}}},
  };
  if (network)
    j["network"] = {{"tap", network->tap}, {"host_address", network->host_address},
                    {"guest_address", network->guest_address}, {"prefix", network->prefix}, {"subnet", subnet}};
  return j.dump();
}

Result<MachineBoot> MachineBoot::from_json(std::string_view text) {
  try {
    json j = json::parse(text);
    MachineBoot b;
    b.kernel = j.at("kernel").get<std::string>();
    b.initramfs = j.at("initramfs").get<std::string>();
    const json& i = j.at("image");
    b.image.path = i.at("path").get<std::string>();
    i.at("digest").get_to(b.image.image_digest);
    i.at("size_bytes").get_to(b.image.size_bytes);
    const json& c = i.at("config");
    ImageConfig& ic = b.image.config;
    c.at("entrypoint").get_to(ic.entrypoint);
    c.at("cmd").get_to(ic.cmd);
    c.at("env").get_to(ic.env);
    c.at("working_dir").get_to(ic.working_dir);
    c.at("user").get_to(ic.user);
    c.at("exposed_ports").get_to(ic.exposed_ports);
    c.at("labels").get_to(ic.labels);
    c.at("os").get_to(ic.os);
    c.at("architecture").get_to(ic.architecture);
    const json& p = j.at("process");
    p.at("argv").get_to(b.process.argv);
    p.at("env").get_to(b.process.env);
    p.at("cwd").get_to(b.process.cwd);
    p.at("user").get_to(b.process.user);
    if (j.contains("network")) {
      const json& n = j["network"];
      b.network = MachineNetwork{n.at("tap"), n.at("host_address"), n.at("guest_address"), n.at("prefix")};
      n.at("subnet").get_to(b.subnet);
    }
    return b;
  } catch (const json::exception& e) {
    return make_error(Errc::malformed, std::string("the machine's stored boot record: ") + e.what());
  }
}

}  // namespace flick
