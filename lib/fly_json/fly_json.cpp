// Fly's Machines API objects as JSON (fly_json.h).
#include "fly_json/fly_json.h"

#include <flick/image.h>

#include <ctime>

namespace flick::fly {

std::optional<MachineState> parse_state(const std::string& s) {
  for (auto st : {MachineState::created, MachineState::starting, MachineState::started, MachineState::stopping,
                  MachineState::stopped, MachineState::failed, MachineState::destroying, MachineState::destroyed})
    if (s == to_string(st)) return st;
  return std::nullopt;
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace {

int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

nlohmann::ordered_json event_json(const MachineEvent& e) {
  nlohmann::ordered_json j{{"id", std::to_string(e.id)}, {"type", to_string(e.type)}, {"status", to_string(e.status)}, {"source", e.source}, {"timestamp", unix_ms(e.timestamp)}};
  nlohmann::ordered_json request = nlohmann::ordered_json::object();
  if (e.exit) {
    nlohmann::ordered_json x{{"exit_code", e.exit->exit_code},
                     {"signal", e.exit->signal},
                     {"oom_killed", e.exit->oom_killed},
                     {"requested_stop", e.exit->requested_stop}};
    if (e.exit->run_lost) x["run_lost"] = true;  // a flick extension
    if (!e.exit->error.empty()) x["error"] = e.exit->error;
    request["exit_event"] = std::move(x);
  }
  if (!e.detail.empty()) request["detail"] = e.detail;
  if (!request.empty()) j["request"] = std::move(request);
  return j;
}

namespace {

// Fly's image_ref: where the image came from, and the digest it resolved to. A local layout
// or archive has no registry; its repository is the path.
nlohmann::ordered_json image_ref_json(const std::string& image, const std::string& digest) {
  nlohmann::ordered_json j{{"registry", ""}, {"repository", image}, {"tag", ""}, {"digest", digest}};
  if (auto ref = ImageReference::parse(image)) {
    j["registry"] = ref->registry;
    j["repository"] = ref->transport == ImageTransport::registry ? ref->repository : ref->path;
    j["tag"] = ref->tag;
  }
  return j;
}

}  // namespace

nlohmann::ordered_json machine_json(const Machine& m, bool events) {
  nlohmann::ordered_json j{{"id", m.id()}, {"name", m.name()}, {"state", to_string(m.state())}, {"region", m.region()},
                   {"app", m.app()}, {"instance_id", m.instance_id()}, {"version", m.version()}};
  if (const auto& net = m.network()) j["private_ip"] = net->guest_address;
  j["config"] = nlohmann::ordered_json::parse(m.config().to_json());
  j["image_ref"] = image_ref_json(m.config().image, m.image().image_digest);
  j["created_at"] = rfc3339(m.created_at());
  j["updated_at"] = rfc3339(m.updated_at());
  j["cordoned"] = m.cordoned();
  if (events) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    auto all = m.events();
    for (auto it = all.rbegin(); it != all.rend(); ++it) list.push_back(event_json(*it));
    j["events"] = std::move(list);
  }
  return j;
}

nlohmann::ordered_json volume_json(const Volume& v) {
  constexpr uint64_t kGiB = uint64_t{1} << 30;
  nlohmann::ordered_json j{{"id", v.id},
                   {"name", v.name},
                   {"state", "created"},
                   {"size_gb", (v.size_bytes + kGiB - 1) / kGiB},
                   {"attached_machine_id", nullptr},
                   {"app", v.app},
                   {"path", v.path.string()}};
  if (!v.attached_machine.empty()) j["attached_machine_id"] = v.attached_machine;
  return j;
}

nlohmann::ordered_json app_json(const AppInfo& a) {
  return {{"id", a.name},
          {"name", a.name},
          {"organization", {{"slug", a.org_slug}}},
          {"machine_count", a.machine_count},
          {"volume_count", a.volume_count},
          {"created_at", rfc3339(a.created_at)}};
}

nlohmann::ordered_json lease_json(const Lease& l) {
  using namespace std::chrono;
  return {{"nonce", l.nonce},
          {"expires_at", duration_cast<seconds>(l.expires_at.time_since_epoch()).count()},
          {"owner", l.owner},
          {"description", l.description},
          {"version", l.version}};
}

nlohmann::ordered_json process_json(const ProcessInfo& p) {
  nlohmann::ordered_json sockets = nlohmann::ordered_json::array();
  for (const auto& l : p.listen_sockets) sockets.push_back({{"proto", l.proto}, {"address", l.address}});
  return {{"pid", p.pid},
          {"stime", std::chrono::duration_cast<std::chrono::seconds>(p.started_at.time_since_epoch()).count()},
          {"rtime", p.run_time.count()},
          {"command", p.command},
          {"directory", p.directory},
          {"cpu", p.cpu_percent},
          {"rss", p.rss_bytes},
          {"listen_sockets", sockets}};
}

}  // namespace flick::fly
