// What flickd's routes share (api_support.h).
#include "api_support.h"

#include "store/names.h"

#include <limits>

namespace flick::flickd {

HttpResponse error_response(int status, const std::string& message, const std::string& fly_status) {
  nlohmann::ordered_json body{{"error", message}};
  if (!fly_status.empty()) body["status"] = fly_status;
  return {status, body.dump()};
}

HttpResponse json_response(int status, const nlohmann::ordered_json& body) { return {status, body.dump()}; }

HttpResponse ok_response() { return {200, R"({"ok":true})"}; }

ApiError api_error(const Error& e) {
  const std::string message = e.describe();
  switch (e.code) {
    case Errc::not_found: return {404, message};
    case Errc::invalid_argument:
    case Errc::malformed: return {400, message};
    case Errc::lease_held: return {409, "aborted: " + message};
    case Errc::exists: return {409, message};
    case Errc::busy: return {412, "failed_precondition: " + message};
    case Errc::timeout: return {408, "deadline_exceeded: " + message};
    case Errc::no_memory: return {503, "insufficient_capacity: " + message, "insufficient_capacity"};
    case Errc::kvm_unavailable: return {503, "unavailable: " + message};
    case Errc::unsupported: return {501, "unimplemented: " + message};
    default: return {500, message};
  }
}

nlohmann::json body_object(const HttpRequest& r) {
  if (r.body.find_first_not_of(" \t\r\n") == std::string::npos) return nlohmann::json::object();
  nlohmann::json body;
  try {
    body = nlohmann::json::parse(r.body);
  } catch (const nlohmann::json::parse_error& e) {
    throw ApiError{400, std::string("invalid JSON in the request body: ") + e.what()};
  }
  if (!body.is_object()) throw ApiError{400, "request body: expected a JSON object"};
  return body;
}

void check_fields(const nlohmann::json& body, std::initializer_list<const char*> known, const std::string& what) {
  for (const auto& [key, value] : body.items()) {
    bool found = false;
    for (const char* k : known) found |= key == k;
    if (!found) throw ApiError{400, what + ": " + key + ": unknown field"};
  }
}

namespace {

const nlohmann::json* field(const nlohmann::json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

[[noreturn]] void wrong_type(const char* key, const char* expected) {
  throw ApiError{400, std::string(key) + ": expected " + expected};
}

}  // namespace

std::optional<std::string> string_field(const nlohmann::json& body, const char* key) {
  const auto* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(key, "a string");
  return v->get<std::string>();
}

std::optional<bool> bool_field(const nlohmann::json& body, const char* key) {
  const auto* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(key, "true or false");
  return v->get<bool>();
}

std::optional<uint64_t> uint_field(const nlohmann::json& body, const char* key) {
  const auto* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_number_unsigned()) wrong_type(key, "a whole number, 0 or more");
  return v->get<uint64_t>();
}

std::optional<int> signal_field(const nlohmann::json& body, const char* key) {
  const auto* v = field(body, key);
  if (!v) return std::nullopt;
  std::optional<int> signo;
  if (v->is_number_unsigned()) signo = store::signal_from_string(std::to_string(v->get<uint64_t>()));
  else if (v->is_string()) signo = store::signal_from_string(v->get<std::string>());
  else wrong_type(key, "a signal name or number");
  if (!signo) throw ApiError{400, std::string(key) + ": " + v->dump() + " is not a signal"};
  return signo;
}

std::optional<std::chrono::milliseconds> duration_field(const nlohmann::json& body, const char* key) {
  const auto* v = field(body, key);
  if (!v) return std::nullopt;
  if (v->is_number_unsigned()) {
    const uint64_t s = v->get<uint64_t>();
    if (s > 100u * 86400) throw ApiError{400, std::string(key) + ": " + std::to_string(s) + " seconds is too long"};
    return std::chrono::seconds(s);
  }
  if (!v->is_string()) wrong_type(key, "a duration (\"10s\") or a number of seconds");
  auto d = store::parse_duration(v->get<std::string>());
  if (!d) throw ApiError{400, std::string(key) + ": " + d.error().message};
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
}

bool query_flag(const HttpRequest& r, const std::string& name) {
  auto v = r.query_value(name);
  return v && (v->empty() || *v == "true" || *v == "1");
}

}  // namespace flick::flickd
