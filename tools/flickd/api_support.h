// What flickd's routes share: Fly's error bodies, flick errors as HTTP statuses, and strict
// reading of request bodies (an unknown field or a value of the wrong type is a 400 that
// names it). A route throws ApiError to answer with an error.
#pragma once

#include "http_server.h"
#include "placement.h"
#include "waits.h"

#include <flick/machine.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace flick::flickd {

struct ApiOptions;

// An answer that ends the route: {"error": message} (and "status" when given).
struct ApiError {
  int status;
  std::string message;
  std::string fly_status{};
};

// Fly's error body.
HttpResponse error_response(int status, const std::string& message, const std::string& fly_status = {});
HttpResponse json_response(int status, const nlohmann::ordered_json& body);
HttpResponse ok_response();  // 200 {"ok": true}

// A flick error as Fly would answer it: not_found 404, invalid_argument/malformed 400,
// lease_held 409 "aborted: ...", exists 409, busy 412 "failed_precondition: ...", timeout
// 408 "deadline_exceeded: ...", no_memory 503 (insufficient_capacity), others 500.
ApiError api_error(const Error& e);
// Unwraps a result or throws api_error(its error).
template <class T>
T take(Result<T> r) {
  if (!r) throw api_error(r.error());
  return std::move(*r);
}
inline void take(Result<void> r) {
  if (!r) throw api_error(r.error());
}

// The request's body as a JSON object (an empty body is {}): 400 for anything else.
nlohmann::json body_object(const HttpRequest& r);
// 400 "<what>: <field>: unknown field" for a key of `body` not in `known`.
void check_fields(const nlohmann::json& body, std::initializer_list<const char*> known, const std::string& what);
// A field of the wrong type is 400 "<key>: expected <type>"; absent and null give nullopt.
std::optional<std::string> string_field(const nlohmann::json& body, const char* key);
std::optional<bool> bool_field(const nlohmann::json& body, const char* key);
std::optional<uint64_t> uint_field(const nlohmann::json& body, const char* key);
// A signal: "SIGTERM", "TERM" or a number (as fly-go's kill sends it).
std::optional<int> signal_field(const nlohmann::json& body, const char* key);
// A duration: Go's string ("10s") or a number of seconds.
std::optional<std::chrono::milliseconds> duration_field(const nlohmann::json& body, const char* key);
// A query parameter that is true: "true", "1" or present without a value.
bool query_flag(const HttpRequest& r, const std::string& name);

// What a route needs besides the request.
struct RouteContext {
  Host& host;
  const ApiOptions& options;
  WaitList& waits;
  Placement& placement;
};

// One route: what dispatch matches a request against. Api::handle serves nothing else, and
// tools/flickd/openapi.json documents exactly these (a test compares them).
using PathParams = std::vector<std::string>;  // the values of the path's {...} segments, in order
using RouteHandler = void (*)(RouteContext&, const HttpRequest&, const PathParams&, const Respond&);
struct Route {
  const char* method;
  const char* path;  // "/v1/apps/{app_name}": a {...} segment matches any one segment
  RouteHandler serve;
};

// The routes under /v1/apps/{app_name}/machines.
const std::vector<Route>& machine_routes();

}  // namespace flick::flickd
