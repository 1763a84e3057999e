// Machines through a flickd (machines.h): each call one or two requests to Fly's paths under
// /v1/apps/{app}/machines, and Fly's Machine object read back into a MachineView.
#include "machines.h"

#include "fly_json/fly_json.h"
#include "runner/exec_channel.h"
#include "store/names.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <set>

namespace flick::cli {

namespace {

using ojson = nlohmann::ordered_json;
using std::chrono::milliseconds;

std::chrono::system_clock::time_point parse_time(const std::string& text) {
  std::tm tm{};
  if (!::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm)) return {};
  return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

std::chrono::system_clock::time_point from_unix_ms(int64_t ms) {
  return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(milliseconds(ms)));
}

MachineEventType parse_event_type(const std::string& s) {
  for (auto t : {MachineEventType::launch, MachineEventType::start, MachineEventType::exit, MachineEventType::stop,
                 MachineEventType::restart, MachineEventType::destroy, MachineEventType::update})
    if (s == to_string(t)) return t;
  return MachineEventType::launch;
}

MachineEvent event_from(const ojson& e) {
  MachineEvent event;
  event.type = parse_event_type(e.at("type").get<std::string>());
  event.status = fly::parse_state(e.at("status").get<std::string>()).value_or(MachineState::created);
  event.timestamp = from_unix_ms(e.at("timestamp").get<int64_t>());
  if (auto r = e.find("request"); r != e.end()) {
    if (auto x = r->find("exit_event"); x != r->end()) {
      ExitStatus exit;
      exit.exit_code = x->value("exit_code", -1);
      exit.signal = x->value("signal", 0);
      exit.oom_killed = x->value("oom_killed", false);
      exit.requested_stop = x->value("requested_stop", false);
      exit.error = x->value("error", "");
      event.exit = exit;
    }
    event.detail = r->value("detail", "");
  }
  return event;
}

// Fly's Machine object as flickd writes it (lib/fly_json), with its events unless `events`
// is false (then they are dropped, as the store's list prints machines).
Result<MachineView> view_from(ojson j, bool events) {
  MachineView v;
  try {
    v.id = j.at("id").get<std::string>();
    v.name = j.at("name").get<std::string>();
    v.app = j.value("app", "");
    v.region = j.value("region", "");
    v.instance_id = j.value("instance_id", "");
    const auto state = j.at("state").get<std::string>();
    v.state = fly::parse_state(state).value_or(MachineState::created);
    v.version = j.value("version", uint64_t{0});
    v.cordoned = j.value("cordoned", false);
    v.guest_address = j.value("private_ip", "");
    if (auto ref = j.find("image_ref"); ref != j.end()) v.image_digest = ref->value("digest", "");
    v.created_at = parse_time(j.value("created_at", ""));
    auto config = MachineConfig::from_json(j.at("config").dump());
    if (!config) return std::move(config).error().with_context("machine " + v.id + "'s config from flickd");
    v.config = std::move(config).value();
    if (auto list = j.find("events"); list != j.end())
      for (auto it = list->rbegin(); it != list->rend(); ++it) v.events.push_back(event_from(*it));  // newest first
  } catch (const nlohmann::json::exception& e) {
    return make_error(Errc::malformed, std::string("flickd's machine object: ") + e.what());
  }
  for (auto it = v.events.rbegin(); it != v.events.rend() && !v.last_exit; ++it) v.last_exit = it->exit;
  if (!events) {
    v.events.clear();
    j.erase("events");
  }
  v.json = std::move(j);
  return v;
}

Result<Lease> lease_from(const ojson& envelope) {
  try {
    const ojson& d = envelope.at("data");
    Lease l;
    l.nonce = d.at("nonce").get<std::string>();
    l.owner = d.value("owner", "");
    l.description = d.value("description", "");
    l.version = d.value("version", "");
    l.expires_at = std::chrono::system_clock::from_time_t(d.at("expires_at").get<std::time_t>());
    return l;
  } catch (const nlohmann::json::exception& e) {
    return make_error(Errc::malformed, std::string("flickd's lease: ") + e.what());
  }
}

// flickd's short 404s, named as the store names them.
Error named(Error e, const std::string& app, const std::string& machine = {}) {
  if (e.code != Errc::not_found) return e;
  if (e.message == "app not found") e.message = "app " + app + " not found";
  else if (e.message == "machine not found") e.message = "machine " + machine + " not found in app " + app;
  return e;
}

std::string apps_path(const std::string& app) { return "/apps/" + ApiClient::escape(app); }
std::string machines_path(const std::string& app) { return apps_path(app) + "/machines"; }

ojson stop_body(std::optional<int> signal, std::optional<milliseconds> timeout) {
  ojson body = ojson::object();
  if (signal) body["signal"] = *signal;
  if (timeout) body["timeout"] = store::format_duration(*timeout);
  return body;
}

class RemoteMachine final : public MachineRef {
 public:
  RemoteMachine(const ApiClient& api, std::string app, std::string id)
      : api_(api), app_(std::move(app)), id_(std::move(id)) {}

  const std::string& id() const override { return id_; }
  void set_lease_nonce(const std::string& nonce) override { nonce_ = nonce; }

  Result<MachineView> read(bool events) override {
    FLICK_TRY_ASSIGN(auto j, call("GET", ""));
    return view_from(std::move(j), events);
  }
  Result<void> start() override { return done(call("POST", "/start")); }
  Result<void> stop(std::optional<int> signal, std::optional<milliseconds> timeout) override {
    return done(call("POST", "/stop", stop_body(signal, timeout)));
  }
  Result<void> restart(std::optional<int> signal, std::optional<milliseconds> timeout) override {
    return done(call("POST", "/restart", stop_body(signal, timeout)));
  }
  Result<void> signal(int signo) override { return done(call("POST", "/signal", ojson{{"signal", signo}})); }

  // flickd answers a wait within 60 s: ask again until `timeout` has passed.
  Result<void> wait(MachineState state, milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - std::chrono::steady_clock::now() +
                                                                    std::chrono::milliseconds(999));
      const auto seconds = std::clamp<int64_t>(left.count(), 1, 60);
      auto r = call("GET", std::string("/wait?state=") + to_string(state) + "&timeout=" + std::to_string(seconds));
      if (r || r.error().code != Errc::timeout || std::chrono::steady_clock::now() >= deadline) return done(std::move(r));
    }
  }
  Result<void> destroy(bool force) override { return done(call("DELETE", force ? "?force=true" : "")); }
  Result<void> update(const MachineConfig& config, const UpdateOptions& how) override {
    return done(call("POST", "", ojson{{"config", ojson::parse(config.to_json())}, {"skip_launch", how.skip_launch}}));
  }
  Result<std::map<std::string, std::string>> metadata() override {
    FLICK_TRY_ASSIGN(auto j, call("GET", "/metadata"));
    try {
      return j.get<std::map<std::string, std::string>>();
    } catch (const nlohmann::json::exception& e) {
      return make_error(Errc::malformed, std::string("flickd's metadata: ") + e.what());
    }
  }
  Result<void> set_metadata(const std::string& key, const std::string& value) override {
    return done(call("POST", "/metadata/" + ApiClient::escape(key), ojson{{"value", value}}));
  }
  Result<void> delete_metadata(const std::string& key) override {
    return done(call("DELETE", "/metadata/" + ApiClient::escape(key)));
  }
  Result<void> cordon(bool cordoned) override { return done(call("POST", cordoned ? "/cordon" : "/uncordon")); }
  Result<Lease> acquire_lease(std::chrono::seconds ttl, const std::string& description) override {
    FLICK_TRY_ASSIGN(auto j, call("POST", "/lease", ojson{{"ttl", ttl.count()}, {"description", description}}));
    return lease_from(j);
  }
  Result<Lease> lease() override {
    auto j = call("GET", "/lease");
    if (!j && j.error().code == Errc::not_found)
      return make_error(Errc::not_found, "lease not found: machine " + id_ + " has no live lease");
    if (!j) return std::move(j).error();
    return lease_from(*j);
  }
  Result<void> release_lease(const std::string& nonce) override {
    auto r = api_.request("DELETE", path() + "/lease", nullptr, nonce);
    if (!r && r.error().code == Errc::not_found)
      return make_error(Errc::not_found, "lease not found: machine " + id_ + " holds no lease with that nonce");
    return done(std::move(r));
  }
  Result<ExecResult> exec(const ExecRequest& request) override {
    if (!request.env.empty() || !request.user.empty() || !request.workdir.empty() || request.tty)
      return make_error(Errc::unsupported, "exec through --api takes no --env, --user, --workdir or -t (flickd's exec has none)");
    const auto ms = request.timeout.count();
    ojson body{{"command", request.cmd}, {"timeout", (ms + 999) / 1000}};
    if (!request.stdin_data.empty()) body["stdin"] = request.stdin_data;
    FLICK_TRY_ASSIGN(auto j, call("POST", "/exec", body));
    ExecResult r;
    try {
      r.stdout_data = j.value("stdout", "");
      r.stderr_data = j.value("stderr", "");
      r.exit_code = j.value("exit_code", -1);
      r.exit_signal = j.value("exit_signal", 0);
    } catch (const nlohmann::json::exception& e) {
      return make_error(Errc::malformed, std::string("flickd's exec answer: ") + e.what());
    }
    return r;
  }
  Result<std::vector<ProcessInfo>> processes() override {
    FLICK_TRY_ASSIGN(auto j, call("GET", "/ps"));
    if (!j.is_array()) return make_error(Errc::malformed, "flickd's ps answer is not an array");
    std::vector<ProcessInfo> list;
    for (const auto& p : j) {
      FLICK_TRY_ASSIGN(auto info, runner::parse_process(p.dump()));
      list.push_back(std::move(info));
    }
    return list;
  }

 private:
  std::string path() const { return machines_path(app_) + "/" + ApiClient::escape(id_); }
  Result<ojson> call(const std::string& method, const std::string& rest, const ojson& body = nullptr) {
    auto r = api_.request(method, path() + rest, body, nonce_);
    if (!r) return named(std::move(r).error(), app_, id_);
    return r;
  }
  static Result<void> done(Result<ojson> r) {
    if (!r) return std::move(r).error();
    return {};
  }

  const ApiClient& api_;
  std::string app_, id_, nonce_;
};

class ApiMachines final : public Machines {
 public:
  explicit ApiMachines(ApiClient api) : api_(std::move(api)) {}

  Result<void> check_app(const std::string& app) override {
    if (app.empty()) return {};
    auto r = api_.request("GET", apps_path(app));
    if (!r) return named(std::move(r).error(), app);
    return {};
  }

  Result<std::unique_ptr<MachineRef>> get(const std::string& key, const std::string& scope) override {
    std::vector<std::string> apps{scope};
    if (scope.empty()) {  // any app, as the store looks up: ids are unique, names may not be
      apps.clear();
      FLICK_TRY_ASSIGN(auto all, list_apps());
      for (const auto& a : all) apps.push_back(a.name);
    } else {
      FLICK_TRY(check_app(scope));
    }
    std::vector<std::pair<std::string, std::string>> hits;  // app, id
    std::set<std::string> ids;
    for (const auto& app : apps) {
      auto m = api_.request("GET", machines_path(app) + "/" + ApiClient::escape(key));
      if (!m && m.error().code == Errc::not_found) continue;
      if (!m) return std::move(m).error();
      const auto id = m->value("id", "");
      if (ids.insert(id).second) hits.emplace_back(m->value("app", app), id);
    }
    if (hits.empty())
      return make_error(Errc::not_found, "machine " + key + " not found" + (scope.empty() ? "" : " in app " + scope));
    if (hits.size() > 1) {
      std::string names;
      for (const auto& [app, id] : hits) names += (names.empty() ? "" : ", ") + app;
      return make_error(Errc::invalid_argument, "machine name " + key + " is ambiguous: apps " + names +
                                                    " each have one; name the app or use the id");
    }
    return std::unique_ptr<MachineRef>(std::make_unique<RemoteMachine>(api_, hits[0].first, hits[0].second));
  }

  Result<std::vector<MachineView>> list(const std::string& app, const std::vector<MachineState>& states) override {
    std::string query;
    for (auto s : states) query += (query.empty() ? "?state=" : ",") + std::string(to_string(s));
    auto r = api_.request("GET", machines_path(app) + query);
    if (!r) return named(std::move(r).error(), app);
    std::vector<MachineView> out;
    for (auto& m : *r) {
      FLICK_TRY_ASSIGN(auto v, view_from(std::move(m), false));
      out.push_back(std::move(v));
    }
    return out;
  }

  Result<MachineView> create(const MachineConfig& config, const std::string& name, const std::string& app) override {
    FLICK_TRY(check_app(app));
    if (!name.empty())
      if (auto existing = api_.request("GET", machines_path(app) + "/" + ApiClient::escape(name));
          existing && existing->value("name", "") == name)
        return make_error(Errc::exists, "machine name " + name + " is taken in app " + app + " (by machine " +
                                            existing->value("id", "") + ")");
    FLICK_TRY(ensure_volumes(config, app));
    return made(config, name, app, true);
  }

  Result<MachineView> clone(MachineRef& source, const CloneOptions& how) override {
    FLICK_TRY_ASSIGN(auto from, source.read(false));
    const MachineConfig config = how.config ? *how.config : from.config;
    if (!how.config && !config.mounts.empty())
      return make_error(Errc::invalid_argument,
                        "cloning machine " + from.id + ": it mounts volume " + config.mounts[0].volume + " at " +
                            config.mounts[0].path +
                            ", and volumes are not shared: give the clone a config whose mounts name other volumes");
    auto r = made(config, how.name, from.app, how.skip_launch);
    if (!r && !how.skip_launch) return std::move(r).error().with_context("starting the clone of machine " + from.id);
    return r;
  }

  Result<AppInfo> create_app(const std::string& name, const std::string& org) override {
    ojson body{{"app_name", name}};
    if (!org.empty()) body["org_slug"] = org;
    auto r = api_.request("POST", "/apps", body);
    if (!r && r.error().code == Errc::exists) return make_error(Errc::exists, "app name " + name + " has already been taken");
    if (!r) return std::move(r).error();
    return app_from(*r);
  }

  Result<std::vector<AppInfo>> list_apps() override {
    FLICK_TRY_ASSIGN(auto j, api_.request("GET", "/apps"));
    std::vector<AppInfo> out;
    if (!j.contains("apps") || !j["apps"].is_array()) return make_error(Errc::malformed, "flickd's app list has no apps");
    for (const auto& a : j["apps"]) {
      FLICK_TRY_ASSIGN(auto app, app_from(a));
      out.push_back(std::move(app));
    }
    return out;
  }

  Result<void> destroy_app(const std::string& name, bool force) override {
    auto r = api_.request("DELETE", apps_path(name) + (force ? "?force=true" : ""));
    if (!r) return named(std::move(r).error(), name);
    return {};
  }

 private:
  Result<MachineView> made(const MachineConfig& config, const std::string& name, const std::string& app,
                           bool skip_launch) {
    ojson body{{"config", ojson::parse(config.to_json())}, {"skip_launch", skip_launch}};
    if (!name.empty()) body["name"] = name;
    auto r = api_.request("POST", machines_path(app), body);
    if (!r) return named(std::move(r).error(), app);
    return view_from(std::move(*r), false);
  }

  // As the store's create: a volume named in mounts that does not exist is made (1 GB).
  Result<void> ensure_volumes(const MachineConfig& config, const std::string& app) {
    if (config.mounts.empty()) return {};
    FLICK_TRY_ASSIGN(auto existing, api_.request("GET", apps_path(app) + "/volumes"));
    for (const auto& m : config.mounts) {
      bool found = false;
      for (const auto& v : existing) found = found || v.value("name", "") == m.volume || v.value("id", "") == m.volume;
      if (found) continue;
      FLICK_TRY_ASSIGN(auto v, api_.request("POST", apps_path(app) + "/volumes", ojson{{"name", m.volume}, {"size_gb", 1}}));
      std::fprintf(stderr, "flick: created volume %s (%s, 1 GB)\n", m.volume.c_str(), v.value("id", "").c_str());
      existing.push_back(std::move(v));
    }
    return {};
  }

  static Result<AppInfo> app_from(const ojson& j) {
    try {
      AppInfo a;
      a.name = j.at("name").get<std::string>();
      if (auto org = j.find("organization"); org != j.end()) a.org_slug = org->value("slug", "");
      a.machine_count = j.value("machine_count", uint64_t{0});
      a.volume_count = j.value("volume_count", uint64_t{0});
      a.created_at = parse_time(j.value("created_at", ""));
      return a;
    } catch (const nlohmann::json::exception& e) {
      return make_error(Errc::malformed, std::string("flickd's app object: ") + e.what());
    }
  }

  ApiClient api_;
};

}  // namespace

std::unique_ptr<Machines> api_machines(ApiClient client) { return std::make_unique<ApiMachines>(std::move(client)); }

}  // namespace flick::cli
