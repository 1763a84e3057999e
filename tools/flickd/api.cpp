// Api (api.h): authentication, the route table and its dispatch, /openapi.json, apps and
// volumes; machines are in machine_routes.cpp.
#include "api.h"

#include "api_support.h"
#include "fly_json/fly_json.h"
#include "openapi_json.h"

#include <openssl/crypto.h>

#include <cctype>
#include <exception>
#include <sstream>

namespace flick::flickd {

namespace {

using ojson = nlohmann::ordered_json;

std::vector<std::string> segments(const std::string& path) {
  std::vector<std::string> out;
  std::stringstream in(path);
  for (std::string part; std::getline(in, part, '/');)
    if (!part.empty()) out.push_back(part);
  return out;
}

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

bool same_token(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// Authorization: "Bearer TOKEN" or "FlyV1 TOKEN" (fly-go; tokens may be comma-joined). None
// is needed on the Unix socket, whose file mode guards it; one sent there is checked.
void authenticate(const HttpRequest& r, const std::string& token) {
  auto auth = r.header("authorization");
  if (!auth) {
    if (r.tcp) throw ApiError{401, "unauthorized: send Authorization: Bearer <token>"};
    return;
  }
  const auto space = auth->find(' ');
  std::string scheme = auth->substr(0, space);
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if ((scheme == "bearer" || scheme == "flyv1") && space != std::string::npos) {
    std::stringstream in(auth->substr(space + 1));
    for (std::string t; std::getline(in, t, ',');)
      if (same_token(trim(t), token)) return;
  }
  throw ApiError{401, "unauthorized: the token is not valid"};
}

AppInfo find_app(Host& host, const std::string& name) {
  auto a = host.get_app(name);
  if (!a && a.error().code == Errc::not_found) throw ApiError{404, "app not found"};
  return take(std::move(a));
}

void list_apps(RouteContext& ctx, const HttpRequest& r, const PathParams&, const Respond& respond) {
  auto org = r.query_value("org_slug");
  ojson list = ojson::array();
  for (const auto& a : take(ctx.host.list_apps()))
    if (!org || org->empty() || a.org_slug == *org) list.push_back(fly::app_json(a));
  respond(json_response(200, ojson{{"total_apps", list.size()}, {"apps", list}}));
}

void create_app(RouteContext& ctx, const HttpRequest& r, const PathParams&, const Respond& respond) {
  const auto body = body_object(r);
  check_fields(body, {"app_name", "name", "org_slug", "network", "app_role_id", "enable_subdomains"}, "app request");
  // Fly's spec and fly-go say `name`, Fly's docs and fly-admin `app_name`.
  auto name = string_field(body, "app_name");
  if (!name) name = string_field(body, "name");
  if (!name || name->empty()) throw ApiError{400, "app_name: required"};
  const auto org = string_field(body, "org_slug").value_or("");
  string_field(body, "network");
  string_field(body, "app_role_id");
  bool_field(body, "enable_subdomains");
  auto created = ctx.host.create_app(*name, org);
  if (!created && created.error().code == Errc::exists)
    throw ApiError{422, "Validation failed: Name has already been taken", "name_taken"};
  respond(json_response(201, fly::app_json(take(std::move(created)))));
}

void show_app(RouteContext& ctx, const HttpRequest&, const PathParams& p, const Respond& respond) {
  respond(json_response(200, fly::app_json(find_app(ctx.host, p[0]))));
}

void destroy_app(RouteContext& ctx, const HttpRequest& r, const PathParams& p, const Respond& respond) {
  find_app(ctx.host, p[0]);
  take(ctx.host.destroy_app(p[0], query_flag(r, "force")));
  respond({202, ""});
}

Volume find_volume(Host& host, const std::string& app, const std::string& id) {
  find_app(host, app);
  for (auto& v : take(host.list_volumes(app)))
    if (v.id == id) return v;
  throw ApiError{404, "volume not found"};
}

ojson volume_out(const Volume& v, const std::string& region) {
  ojson j = fly::volume_json(v);
  j["region"] = region;
  return j;
}

void list_volumes(RouteContext& ctx, const HttpRequest&, const PathParams& p, const Respond& respond) {
  find_app(ctx.host, p[0]);
  ojson out = ojson::array();
  for (const auto& v : take(ctx.host.list_volumes(p[0]))) out.push_back(volume_out(v, ctx.options.region));
  respond(json_response(200, out));
}

void create_volume(RouteContext& ctx, const HttpRequest& r, const PathParams& p, const Respond& respond) {
  find_app(ctx.host, p[0]);
  const auto body = body_object(r);
  check_fields(body,
               {"name", "region", "size_gb", "encrypted", "fstype", "snapshot_id", "source_volume_id",
                "require_unique_zone", "unique_zone_app_wide", "snapshot_retention", "auto_backup_enabled", "compute",
                "compute_image"},
               "volume request");
  VolumeConfig config;
  config.app = p[0];
  config.name = string_field(body, "name").value_or("");
  if (config.name.empty()) throw ApiError{400, "name: required"};
  config.size_gb = uint_field(body, "size_gb").value_or(3);
  if (auto region = string_field(body, "region"); region && !region->empty() && *region != ctx.options.region)
    throw ApiError{412, "insufficient_capacity: no capacity in region " + *region, "insufficient_capacity"};
  respond(json_response(200, volume_out(take(ctx.host.create_volume(config)), ctx.options.region)));
}

void show_volume(RouteContext& ctx, const HttpRequest&, const PathParams& p, const Respond& respond) {
  respond(json_response(200, volume_out(find_volume(ctx.host, p[0], p[1]), ctx.options.region)));
}

void destroy_volume(RouteContext& ctx, const HttpRequest&, const PathParams& p, const Respond& respond) {
  Volume v = find_volume(ctx.host, p[0], p[1]);
  if (!v.attached_machine.empty())
    throw ApiError{409, "failed_precondition: volume is currently bound to machine: " + v.attached_machine};
  take(ctx.host.destroy_volume(v.id, p[0]));
  ojson out = volume_out(v, ctx.options.region);
  out["state"] = "destroyed";
  respond(json_response(200, out));
}

// Fly's extend: {volume, needs_restart}, true while a machine runs on the volume (its file
// system grows when it is next mounted).
void extend_volume(RouteContext& ctx, const HttpRequest& r, const PathParams& p, const Respond& respond) {
  Volume v = find_volume(ctx.host, p[0], p[1]);
  const auto body = body_object(r);
  check_fields(body, {"size_gb"}, "extend request");
  const auto size_gb = uint_field(body, "size_gb");
  if (!size_gb) throw ApiError{400, "size_gb: required"};
  v = take(ctx.host.extend_volume(v.id, *size_gb, p[0]));
  bool running = false;
  if (!v.attached_machine.empty())
    if (auto m = ctx.host.get(v.attached_machine, {}, p[0])) {
      running = is_running((*m)->state());
    }
  respond(json_response(200, ojson{{"needs_restart", running}, {"volume", volume_out(v, ctx.options.region)}}));
}

void openapi(RouteContext&, const HttpRequest&, const PathParams&, const Respond& respond) {
  respond({200, std::string(openapi_json())});
}

// Every route, in the order dispatch tries them.
const std::vector<Route>& all_routes() {
  static const std::vector<Route> routes = [] {
    std::vector<Route> all = {
        {"GET", "/openapi.json", openapi},
        {"GET", "/v1/apps", list_apps},
        {"POST", "/v1/apps", create_app},
        {"GET", "/v1/apps/{app_name}", show_app},
        {"DELETE", "/v1/apps/{app_name}", destroy_app},
        {"GET", "/v1/apps/{app_name}/volumes", list_volumes},
        {"POST", "/v1/apps/{app_name}/volumes", create_volume},
        {"GET", "/v1/apps/{app_name}/volumes/{volume_id}", show_volume},
        {"DELETE", "/v1/apps/{app_name}/volumes/{volume_id}", destroy_volume},
        {"PUT", "/v1/apps/{app_name}/volumes/{volume_id}/extend", extend_volume},
    };
    const auto& machines = machine_routes();
    all.insert(all.end(), machines.begin(), machines.end());
    return all;
  }();
  return routes;
}

// Whether `path`'s segments fit `pattern`'s; the {...} segments' values go to *params.
bool matches(const char* pattern, const std::vector<std::string>& path, PathParams* params) {
  const auto want = segments(pattern);
  if (want.size() != path.size()) return false;
  params->clear();
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i].front() == '{') params->push_back(path[i]);
    else if (want[i] != path[i]) return false;
  }
  return true;
}

}  // namespace

Api::Api(Host& host, ApiOptions options) : host_(host), options_(std::move(options)), waits_(host), placement_(host, options_.capacity) {}

Api::~Api() = default;

void Api::shutdown() { waits_.shutdown(); }

std::vector<std::string> Api::routes() {
  std::vector<std::string> out;
  for (const Route& r : all_routes()) out.push_back(std::string(r.method) + " " + r.path);
  return out;
}

void Api::handle(HttpRequest request, Respond respond) {
  RouteContext ctx{host_, options_, waits_, placement_};
  try {
    const auto path = segments(request.path);
    PathParams params;
    const Route* found = nullptr;
    bool path_known = false;
    for (const Route& route : all_routes()) {
      if (!matches(route.path, path, &params)) continue;
      path_known = true;
      if (request.method == route.method) {
        found = &route;
        break;
      }
    }
    // The API's description is public, as Fly's is; everything else needs the token on TCP.
    if (!found || found->serve != openapi) authenticate(request, options_.token);
    if (!found && path_known) throw ApiError{405, "method not allowed"};
    if (!found) throw ApiError{404, "not found: " + request.path};
    found->serve(ctx, request, params, respond);
  } catch (const ApiError& e) {
    respond(error_response(e.status, e.message, e.fly_status));
  } catch (const std::exception& e) {
    respond(error_response(500, std::string("internal error: ") + e.what()));
  }
}

}  // namespace flick::flickd
