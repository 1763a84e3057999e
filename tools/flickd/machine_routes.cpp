// /v1/apps/{app}/machines/...: Fly's machine calls (machines, wait, leases, exec) over Host and
// Machine. Calls that change a machine carry the fly-machine-lease-nonce header into
// the Machine handle, so the store's lease check answers them as Fly's would.
#include "api.h"
#include "api_support.h"
#include "fly_json/fly_json.h"

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

namespace flick::flickd {

namespace {

using ojson = nlohmann::ordered_json;

constexpr std::chrono::seconds kDefaultLeaseTtl{30};
constexpr uint64_t kMaxWaitSeconds = 60;

void require_app(Host& host, const std::string& app) {
  auto a = host.get_app(app);
  if (!a && a.error().code == Errc::not_found) throw ApiError{404, "app not found"};
  take(std::move(a));
}

std::unique_ptr<Machine> find(RouteContext& ctx, const HttpRequest& r, const std::string& app, const std::string& id) {
  require_app(ctx.host, app);
  auto m = ctx.host.get(id, {}, app);
  if (!m && m.error().code == Errc::not_found) throw ApiError{404, "machine not found"};
  auto machine = take(std::move(m));
  if (auto nonce = r.header("fly-machine-lease-nonce")) machine->set_lease_nonce(*nonce);
  return machine;
}

// Fly's `config` of a create or update request, read and validated.
MachineConfig config_from(const nlohmann::json& body) {
  auto it = body.find("config");
  if (it == body.end() || !it->is_object()) throw ApiError{400, "config: required, a JSON object"};
  std::vector<std::string> warnings;
  auto config = MachineConfig::from_json(it->dump(), &warnings);
  if (!config) throw ApiError{400, config.error().message};
  take(config->validate());
  return std::move(*config);
}

std::vector<MachineState> all_states() {
  return {MachineState::created, MachineState::starting, MachineState::started,    MachineState::stopping,
          MachineState::stopped, MachineState::failed,   MachineState::destroying, MachineState::destroyed};
}

// Values of a query parameter, repeated or comma-separated.
std::vector<std::string> query_list(const HttpRequest& r, const std::string& name) {
  std::vector<std::string> out;
  for (const auto& [k, v] : r.query) {
    if (k != name) continue;
    std::stringstream in(v);
    for (std::string part; std::getline(in, part, ',');)
      if (!part.empty()) out.push_back(part);
  }
  return out;
}

ojson machine_out(const Machine& m, bool summary = false) {
  ojson j = fly::machine_json(m, !summary);
  if (summary) j["config"] = ojson{{"image", m.config().image}, {"metadata", m.config().metadata}};
  return j;
}

void list(RouteContext& ctx, const HttpRequest& r, const PathParams& p, const Respond& respond) {
  const std::string& app = p[0];
  require_app(ctx.host, app);
  Host::ListFilter filter;
  filter.app = app;
  if (query_flag(r, "include_deleted")) filter.states = all_states();
  if (auto wanted = query_list(r, "state"); !wanted.empty()) {
    filter.states.clear();
    for (const auto& name : wanted) {
      auto s = fly::parse_state(name);
      if (!s) throw ApiError{400, "state: '" + name + "' is not a machine state"};
      filter.states.push_back(*s);
    }
  }
  for (const auto& [k, v] : r.query)
    if (k.rfind("metadata.", 0) == 0) filter.metadata[k.substr(9)] = v;
  ojson out = ojson::array();
  auto region = r.query_value("region");
  if (!region || region->empty() || *region == ctx.options.region) {
    const bool summary = query_flag(r, "summary");
    for (const auto& m : take(ctx.host.list(filter))) out.push_back(machine_out(*m, summary));
  }
  respond(json_response(200, out));
}

void create(RouteContext& ctx, const HttpRequest& r, const PathParams& p, const Respond& respond) {
  const std::string& app = p[0];
  const auto body = body_object(r);
  check_fields(body,
               {"name", "region", "config", "skip_launch", "lease_ttl", "skip_service_registration", "skip_secrets",
                "min_secrets_version", "lsvd"},
               "create request");
  const auto name = string_field(body, "name").value_or("");
  const auto region = string_field(body, "region").value_or("");
  const bool skip_launch = bool_field(body, "skip_launch").value_or(false);
  const auto lease_ttl = uint_field(body, "lease_ttl");
  bool_field(body, "skip_service_registration");
  bool_field(body, "skip_secrets");
  bool_field(body, "lsvd");
  MachineConfig config = config_from(body);
  if (!region.empty() && region != ctx.options.region)
    throw ApiError{412, "insufficient_capacity: no capacity in region " + region + " (this host serves " +
                            ctx.options.region + ")",
                   "insufficient_capacity"};
  require_app(ctx.host, app);
  std::optional<Placement::Reservation> room;  // checked before anything is made
  if (!skip_launch) room.emplace(ctx.placement.reserve("", config.guest));
  auto m = take(ctx.host.create(config, {}, name, app));
  std::string nonce;
  if (lease_ttl) nonce = take(m->acquire_lease(std::chrono::seconds(std::max<uint64_t>(*lease_ttl, 1)))).nonce;
  if (!skip_launch) {
    if (auto started = m->start(); !started) {
      (void)m->destroy(true);  // nothing half-made: the client retries the whole create
      throw api_error(started.error());
    }
  }
  ojson out = machine_out(*find(ctx, r, app, m->id()));
  if (!nonce.empty()) out["nonce"] = nonce;
  respond(json_response(200, out));
}

void update(RouteContext& ctx, const HttpRequest& r, Machine& m, const Respond& respond) {
  const auto body = body_object(r);
  check_fields(body,
               {"name", "region", "config", "skip_launch", "current_version", "lease_ttl", "skip_service_registration",
                "skip_secrets", "min_secrets_version", "lsvd"},
               "update request");
  if (auto name = string_field(body, "name"); name && !name->empty() && *name != m.name())
    throw ApiError{400, "name: a machine's name cannot change"};
  if (auto region = string_field(body, "region"); region && !region->empty() && *region != m.region())
    throw ApiError{400, "region: a machine's region cannot change"};
  UpdateOptions options;
  options.skip_launch = bool_field(body, "skip_launch").value_or(false);
  // fly-go sends current_version as a string (an instance id or a number).
  if (auto it = body.find("current_version"); it != body.end() && !it->is_null()) {
    if (it->is_number_unsigned()) options.current_version = it->get<uint64_t>();
    else if (!it->is_string()) throw ApiError{400, "current_version: expected a version number"};
    else if (const auto v = it->get<std::string>(); !v.empty()) {
      if (v == m.instance_id()) options.current_version = m.version();
      else if (v.find_first_not_of("0123456789") == std::string::npos && v.size() < 19) options.current_version = std::stoull(v);
      else throw ApiError{412, "failed_precondition: machine is not at version " + v};
    }
  }
  MachineConfig config = config_from(body);
  std::optional<Placement::Reservation> room;
  const MachineState now = m.state();  // a running machine restarts on its new config
  take(m.check_lease());  // a call another's lease refuses is 409, whatever room there is
  if (!options.skip_launch || now == MachineState::started || now == MachineState::starting)
    room.emplace(ctx.placement.reserve(m.id(), config.guest));
  take(m.update(config, options));
  respond(json_response(200, machine_out(*take(ctx.host.get(m.id(), {}, m.app())))));
}

StopConfig stop_config(const Machine& m, const nlohmann::json& body) {
  StopConfig how = m.config().stop_config;
  if (auto s = signal_field(body, "signal")) how.signal = *s;
  if (auto t = duration_field(body, "timeout")) how.timeout = *t;
  return how;
}

// wait's `instance_id` (or `version`, as fly-go names it): one of the machine's versions, by
// its instance_id or its number; 0 when not asked.
uint64_t waited_version(const HttpRequest& r, const Machine& m) {
  auto v = r.query_value("instance_id");
  if (!v || v->empty()) v = r.query_value("version");
  if (!v || v->empty()) return 0;
  if (*v == m.instance_id()) return m.version();
  for (const auto& each : take(m.versions()))
    if (*v == each.instance_id || *v == std::to_string(each.version)) return each.version;
  throw ApiError{400, "instance_id: '" + *v + "' is not a version of machine " + m.id()};
}

void wait(RouteContext& ctx, const HttpRequest& r, Machine& m, const Respond& respond) {
  auto states = query_list(r, "state");
  if (states.empty()) states = {"started"};
  for (const auto& s : states)
    if (s != "settled" && s != "suspended" && !fly::parse_state(s))
      throw ApiError{400, "state: '" + s + "' is not a state to wait for"};
  uint64_t timeout = kMaxWaitSeconds;
  if (auto t = r.query_value("timeout"); t && !t->empty()) {
    if (t->find_first_not_of("0123456789") != std::string::npos || t->size() > 9)
      throw ApiError{400, "timeout: '" + *t + "' is not a number of seconds"};
    timeout = std::clamp<uint64_t>(std::stoull(*t), 1, kMaxWaitSeconds);
  }
  PendingWait w;
  w.app = m.app();
  w.machine = m.id();
  w.states = std::move(states);
  w.version = waited_version(r, m);
  if (auto from = r.query_value("from_event_id"); from && !from->empty()) {
    if (from->find_first_not_of("0123456789") != std::string::npos || from->size() > 18)
      throw ApiError{400, "from_event_id: '" + *from + "' is not an event id"};
    w.after_event = std::stoull(*from);
  }
  w.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
  w.respond = respond;
  ctx.waits.add(std::move(w));
}

ojson lease_envelope(const Lease& l) { return {{"status", "success"}, {"data", fly::lease_json(l)}}; }

void show_lease(RouteContext&, const HttpRequest&, Machine& m, const Respond& respond) {
  auto l = m.lease();
  if (!l && l.error().code == Errc::not_found) throw ApiError{404, "lease not found"};
  respond(json_response(200, lease_envelope(take(std::move(l)))));
}

void release_lease(RouteContext&, const HttpRequest& r, Machine& m, const Respond& respond) {
  auto nonce = r.header("fly-machine-lease-nonce");
  if (!nonce) throw ApiError{400, "fly-machine-lease-nonce: required to release a lease"};
  take(m.release_lease(*nonce));
  respond(json_response(200, ojson{{"status", "success"}, {"data", {{"ok", true}}}}));
}

void acquire_lease(RouteContext&, const HttpRequest& r, Machine& m, const Respond& respond) {
  // flyctl sends ?ttl= and no body; other clients {ttl, description}.
  const auto body = body_object(r);
  check_fields(body, {"ttl", "description"}, "lease request");
  std::chrono::seconds ttl = kDefaultLeaseTtl;
  if (auto t = uint_field(body, "ttl")) ttl = std::chrono::seconds(*t);
  else if (auto q = r.query_value("ttl"); q && !q->empty()) {
    if (q->find_first_not_of("0123456789") != std::string::npos || q->size() > 9)
      throw ApiError{400, "ttl: '" + *q + "' is not a number of seconds"};
    ttl = std::chrono::seconds(std::stoull(*q));
  }
  if (ttl.count() < 1) throw ApiError{400, "ttl: a lease lasts at least 1 second"};
  auto l = m.acquire_lease(ttl, string_field(body, "description").value_or(""));
  if (!l && l.error().code == Errc::lease_held)
    return respond(json_response(409, ojson{{"status", "error"}, {"message", l.error().message}, {"code", "invalid"}}));
  respond(json_response(201, lease_envelope(take(std::move(l)))));
}

void show_metadata(RouteContext&, const HttpRequest&, Machine& m, const Respond& respond) {
  respond(json_response(200, ojson(take(m.metadata()))));
}

// PUT or PATCH of the whole map: a null or empty value deletes its key.
void set_metadata(RouteContext&, const HttpRequest& r, Machine& m, const Respond& respond) {
  const auto body = body_object(r);
  check_fields(body, {"metadata", "machine_version", "updated_at"}, "metadata request");
  auto it = body.find("metadata");
  if (it == body.end() || !it->is_object()) throw ApiError{400, "metadata: required, a JSON object"};
  for (const auto& [k, v] : it->items())
    if (!v.is_null() && !v.is_string()) throw ApiError{400, "metadata." + k + ": expected a string"};
  for (const auto& [k, v] : it->items()) {
    if (v.is_null() || v.get<std::string>().empty()) take(m.delete_metadata(k));
    else take(m.set_metadata(k, v.get<std::string>()));
  }
  respond({204, ""});
}

// .../metadata/{key}: the machine is p[1], the key p[2].
void show_metadata_key(RouteContext& ctx, const HttpRequest& r, const PathParams& p, const Respond& respond) {
  auto all = take(find(ctx, r, p[0], p[1])->metadata());
  auto it = all.find(p[2]);
  if (it == all.end()) throw ApiError{404, "metadata key not found"};
  respond(json_response(200, ojson{{"value", it->second}}));
}

void delete_metadata_key(RouteContext& ctx, const HttpRequest& r, const PathParams& p, const Respond& respond) {
  take(find(ctx, r, p[0], p[1])->delete_metadata(p[2]));
  respond({204, ""});
}

void set_metadata_key(RouteContext& ctx, const HttpRequest& r, const PathParams& p, const Respond& respond) {
  auto m = find(ctx, r, p[0], p[1]);
  const auto body = body_object(r);
  check_fields(body, {"value", "updated_at"}, "metadata request");
  auto value = string_field(body, "value");
  if (!value) throw ApiError{400, "value: required, a string"};
  take(m->set_metadata(p[2], *value));
  respond({204, ""});
}

void exec(RouteContext&, const HttpRequest& r, Machine& m, const Respond& respond) {
  const auto body = body_object(r);
  check_fields(body, {"command", "cmd", "timeout", "stdin", "container", "machine"}, "exec request");
  ExecRequest request;
  if (auto it = body.find("command"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) throw ApiError{400, "command: expected an array of strings"};
    for (const auto& a : *it) {
      if (!a.is_string()) throw ApiError{400, "command: expected an array of strings"};
      request.cmd.push_back(a.get<std::string>());
    }
  } else if (auto cmd = string_field(body, "cmd")) {  // flyctl's: words separated by spaces
    std::stringstream in(*cmd);
    for (std::string word; in >> word;) request.cmd.push_back(word);
  }
  if (request.cmd.empty()) throw ApiError{400, "command: required, a non-empty array of strings"};
  request.stdin_data = string_field(body, "stdin").value_or("");
  if (auto t = uint_field(body, "timeout")) request.timeout = std::chrono::seconds(*t);
  string_field(body, "container");
  auto result = take(m.exec(request));
  respond(json_response(200, ojson{{"stdout", result.stdout_data},
                                   {"stderr", result.stderr_data},
                                   {"exit_code", result.exit_code},
                                   {"exit_signal", result.exit_signal}}));
}

void events(RouteContext&, const HttpRequest& r, Machine& m, const Respond& respond) {
  uint64_t limit = 20;
  if (auto l = r.query_value("limit"); l && !l->empty()) {
    if (l->find_first_not_of("0123456789") != std::string::npos || l->size() > 9)
      throw ApiError{400, "limit: '" + *l + "' is not a number"};
    limit = std::clamp<uint64_t>(std::stoull(*l), 1, 50);
  }
  ojson out = ojson::array();
  auto all = m.events();
  for (auto it = all.rbegin(); it != all.rend() && out.size() < limit; ++it) out.push_back(fly::event_json(*it));
  respond(json_response(200, out));
}

void versions(RouteContext&, const HttpRequest&, Machine& m, const Respond& respond) {
  ojson out = ojson::array();
  for (const auto& v : take(m.versions()))
    out.push_back({{"version", std::to_string(v.version)},
                   {"instance_id", v.instance_id},
                   {"created_at", fly::rfc3339(v.created_at)},
                   {"user_config", ojson::parse(v.config.to_json())}});
  respond(json_response(200, out));
}

void show(RouteContext&, const HttpRequest&, Machine& m, const Respond& respond) {
  respond(json_response(200, machine_out(m)));
}

void destroy(RouteContext&, const HttpRequest& r, Machine& m, const Respond& respond) {
  take(m.destroy(query_flag(r, "force") || query_flag(r, "kill")));
  respond(ok_response());
}

void start(RouteContext& ctx, const HttpRequest&, Machine& m, const Respond& respond) {
  const std::string previous = to_string(m.state());
  take(m.check_lease());
  auto room = ctx.placement.reserve(m.id(), m.config().guest);
  take(m.start());
  respond(json_response(200, ojson{{"previous_state", previous}, {"migrated", false}, {"new_host", ""}}));
}

void stop(RouteContext&, const HttpRequest& r, Machine& m, const Respond& respond) {
  const auto body = body_object(r);
  check_fields(body, {"signal", "timeout"}, "stop request");
  take(m.stop(stop_config(m, body)));
  respond(ok_response());
}

void restart(RouteContext& ctx, const HttpRequest& r, Machine& m, const Respond& respond) {
  auto body = body_object(r);
  check_fields(body, {"signal", "timeout", "force_stop"}, "restart request");
  for (const char* q : {"signal", "timeout"})  // fly-go sends them in the query
    if (auto v = r.query_value(q); v && !v->empty() && !body.contains(q)) {
      const bool number = v->find_first_not_of("0123456789") == std::string::npos && v->size() < 10;
      body[q] = number ? nlohmann::json(std::stoull(*v)) : nlohmann::json(*v);
    }
  take(m.stop(stop_config(m, body)));
  auto room = ctx.placement.reserve(m.id(), m.config().guest);
  take(m.start());
  respond(ok_response());
}

void send_signal(RouteContext&, const HttpRequest& r, Machine& m, const Respond& respond) {
  const auto body = body_object(r);
  check_fields(body, {"signal"}, "signal request");
  auto signo = signal_field(body, "signal");
  if (!signo) throw ApiError{400, "signal: required"};
  take(m.signal(*signo));
  respond(ok_response());
}

void cordon(RouteContext&, const HttpRequest&, Machine& m, const Respond& respond) {
  take(m.cordon());
  respond(ok_response());
}

void uncordon(RouteContext&, const HttpRequest&, Machine& m, const Respond& respond) {
  take(m.uncordon());
  respond(ok_response());
}

void suspend(RouteContext&, const HttpRequest&, Machine&, const Respond&) {
  throw ApiError{501, "unimplemented: flick does not suspend machines yet"};
}

void ps(RouteContext&, const HttpRequest& r, Machine& m, const Respond& respond) {
  const std::string by = r.query_value("sort_by").value_or("");
  const std::string order = r.query_value("order").value_or("");
  if (order != "" && order != "asc" && order != "desc") throw ApiError{400, "order: '" + order + "' is neither asc nor desc"};
  // Each key sorts, with the pid breaking ties, so the order is the same from call to call.
  using Key = std::function<bool(const ProcessInfo&, const ProcessInfo&)>;
  auto by_field = [](auto field) -> Key {
    return [field](const ProcessInfo& a, const ProcessInfo& b) { return std::pair(field(a), a.pid) < std::pair(field(b), b.pid); };
  };
  const std::map<std::string, Key> keys = {
      {"pid", by_field([](const ProcessInfo&) { return 0; })},
      {"cpu", by_field([](const ProcessInfo& p) { return p.cpu_percent; })},
      {"rss", by_field([](const ProcessInfo& p) { return p.rss_bytes; })},
      {"rtime", by_field([](const ProcessInfo& p) { return p.run_time; })},
      {"stime", by_field([](const ProcessInfo& p) { return p.started_at; })},
      {"command", by_field([](const ProcessInfo& p) { return p.command; })}};
  auto key = keys.find(by.empty() ? "pid" : by);
  if (key == keys.end()) throw ApiError{400, "sort_by: '" + by + "' is not one of pid, cpu, rss, rtime, stime, command"};
  auto list = take(m.processes());
  std::stable_sort(list.begin(), list.end(), key->second);
  if (order == "desc") std::reverse(list.begin(), list.end());
  ojson out = ojson::array();
  for (const auto& p : list) out.push_back(fly::process_json(p));
  respond(json_response(200, out));
}

// A route on one machine (p[0] the app, p[1] its id or name), found first.
using MachineHandler = void (*)(RouteContext&, const HttpRequest&, Machine&, const Respond&);
template <MachineHandler serve>
void on_machine(RouteContext& ctx, const HttpRequest& r, const PathParams& p, const Respond& respond) {
  serve(ctx, r, *find(ctx, r, p[0], p[1]), respond);
}

}  // namespace

const std::vector<Route>& machine_routes() {
  static const std::vector<Route> routes = {
      {"GET", "/v1/apps/{app_name}/machines", list},
      {"POST", "/v1/apps/{app_name}/machines", create},
      {"GET", "/v1/apps/{app_name}/machines/{machine_id}", on_machine<show>},
      {"POST", "/v1/apps/{app_name}/machines/{machine_id}", on_machine<update>},
      {"DELETE", "/v1/apps/{app_name}/machines/{machine_id}", on_machine<destroy>},
      {"POST", "/v1/apps/{app_name}/machines/{machine_id}/start", on_machine<start>},
      {"POST", "/v1/apps/{app_name}/machines/{machine_id}/stop", on_machine<stop>},
      {"POST", "/v1/apps/{app_name}/machines/{machine_id}/restart", on_machine<restart>},
      {"POST", "/v1/apps/{app_name}/machines/{machine_id}/signal", on_machine<send_signal>},
      {"POST", "/v1/apps/{app_name}/machines/{machine_id}/exec", on_machine<exec>},
      {"POST", "/v1/apps/{app_name}/machines/{machine_id}/cordon", on_machine<cordon>},
      {"POST", "/v1/apps/{app_name}/machines/{machine_id}/uncordon", on_machine<uncordon>},
      {"POST", "/v1/apps/{app_name}/machines/{machine_id}/suspend", on_machine<suspend>},
      {"GET", "/v1/apps/{app_name}/machines/{machine_id}/ps", on_machine<ps>},
      {"GET", "/v1/apps/{app_name}/machines/{machine_id}/wait", on_machine<wait>},
      {"GET", "/v1/apps/{app_name}/machines/{machine_id}/events", on_machine<events>},
      {"GET", "/v1/apps/{app_name}/machines/{machine_id}/versions", on_machine<versions>},
      {"GET", "/v1/apps/{app_name}/machines/{machine_id}/lease", on_machine<show_lease>},
      {"POST", "/v1/apps/{app_name}/machines/{machine_id}/lease", on_machine<acquire_lease>},
      {"DELETE", "/v1/apps/{app_name}/machines/{machine_id}/lease", on_machine<release_lease>},
      {"GET", "/v1/apps/{app_name}/machines/{machine_id}/metadata", on_machine<show_metadata>},
      {"PUT", "/v1/apps/{app_name}/machines/{machine_id}/metadata", on_machine<set_metadata>},
      {"PATCH", "/v1/apps/{app_name}/machines/{machine_id}/metadata", on_machine<set_metadata>},
      {"GET", "/v1/apps/{app_name}/machines/{machine_id}/metadata/{key}", show_metadata_key},
      {"POST", "/v1/apps/{app_name}/machines/{machine_id}/metadata/{key}", set_metadata_key},
      {"PUT", "/v1/apps/{app_name}/machines/{machine_id}/metadata/{key}", set_metadata_key},
      {"DELETE", "/v1/apps/{app_name}/machines/{machine_id}/metadata/{key}", delete_metadata_key},
  };
  return routes;
}

}  // namespace flick::flickd
