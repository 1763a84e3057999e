// flick daemon status: whether a flickd serves this state directory, where, and for how long.
// flickd holds <state>/flickd.lock for its life and says where it listens in flickd.json.
#include "command.h"
#include "store_cmd.h"

#include "base/flock.h"
#include "runner/guest_channel.h"

#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>

namespace {

using namespace flick::cli;
namespace fs = std::filesystem;

// Exit status when no flickd runs (as `systemctl status` says "not running").
constexpr int kNotRunning = 3;

struct StatusOptions {
  flick::HostOptions host;
  bool json = false;
};

// True when something accepts connections on the Unix socket at `path`.
bool answers(const std::string& path) { return !path.empty() && static_cast<bool>(flick::runner::connect_unix(path)); }

int status(const StatusOptions& o) {
  auto host = open_host(o.host);
  if (!host) return fail(host.error());
  const fs::path state_dir = (*host)->options().state_dir;
  nlohmann::ordered_json out{{"running", false}, {"state_dir", state_dir.string()}};
  if (flick::flock_held(state_dir / "flickd.lock")) {
    nlohmann::json info = nlohmann::json::object();
    try {
      info = nlohmann::json::parse(std::ifstream(state_dir / "flickd.json"));
    } catch (const nlohmann::json::exception&) {  // it is starting, between the lock and the file
    }
    out["running"] = true;
    for (const char* key : {"pid", "version", "region", "started_at", "socket", "listen"})
      if (info.contains(key)) out[key] = info[key];
    out["answers"] = answers(info.value("socket", std::string()));
  }
  std::map<std::string, int> states;
  if (auto machines = (*host)->list())
    for (const auto& m : *machines) ++states[flick::to_string(m->state())];
  out["machines"] = states;
  if (o.json) {
    print_json(out);
  } else if (!out["running"]) {
    std::printf("flickd: not running for %s\n", state_dir.c_str());
  } else {
    std::string since = "?";
    if (out.contains("started_at"))
      since = rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(out["started_at"].get<int64_t>())));
    std::printf("flickd: running (pid %s, version %s, since %s)%s\n",
                out.contains("pid") ? out["pid"].dump().c_str() : "?",
                out.value("version", std::string("?")).c_str(), since.c_str(),
                out["answers"] ? "" : " but its socket does not answer");
    std::printf("  state:  %s\n", state_dir.c_str());
    if (out.contains("socket")) std::printf("  socket: unix:%s\n", out["socket"].get<std::string>().c_str());
    for (const auto& a : out.value("listen", nlohmann::ordered_json::array()))
      std::printf("  listen: http://%s\n", a.get<std::string>().c_str());
  }
  if (!o.json) {
    std::string summary;
    for (const auto& [state, n] : states) summary += (summary.empty() ? "" : ", ") + std::to_string(n) + " " + state;
    std::printf("  machines: %s\n", summary.empty() ? "none" : summary.c_str());
  }
  return out["running"] && out.value("answers", false) ? 0 : kNotRunning;
}

void add_daemon(CLI::App& flick) {
  auto* daemon = flick.add_subcommand("daemon", "flickd, the REST API over this host's machines");
  daemon->require_subcommand(1);
  auto o = std::make_shared<StatusOptions>();
  auto* cmd = daemon->add_subcommand("status", "whether flickd serves this state directory, and where");
  cmd->footer("Exit status 0 when flickd runs and answers on its socket, 3 when it does not.");
  add_json_flag(*cmd, &o->json);
  add_state_dir_option(*cmd, &o->host);
  set_action(cmd, [o] { return status(*o); });
}

const bool registered = register_command("daemon", add_daemon);

}  // namespace
