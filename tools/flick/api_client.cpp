// ApiClient (api_client.h): libcurl's easy interface, one handle per request.
#include "api_client.h"

#include <curl/curl.h>

#include <memory>
#include <string_view>

namespace flick::cli {

namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

size_t append_body(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

bool take_prefix(std::string& s, std::string_view prefix) {
  if (s.rfind(prefix, 0) != 0) return false;
  s.erase(0, prefix.size());
  return true;
}

// flickd's error answer as an Error (api_client.h says which code for which status).
Error api_error(long status, const std::string& text, const std::string& endpoint) {
  std::string message;
  try {
    auto body = nlohmann::ordered_json::parse(text);
    if (body.is_object() && body.contains("error") && body["error"].is_string()) message = body["error"];
    else if (body.is_object() && body.contains("message") && body["message"].is_string()) message = body["message"];
  } catch (const nlohmann::ordered_json::exception&) {
  }
  if (message.empty()) message = "flickd at " + endpoint + " answered HTTP " + std::to_string(status);
  Errc code = Errc::io;
  switch (status) {
    case 400: code = Errc::invalid_argument; break;
    case 401:
      return make_error(Errc::invalid_argument,
                        "flickd at " + endpoint + " refused the token (" + message + "): set FLICK_API_TOKEN");
    case 404: code = Errc::not_found; break;
    case 405: code = Errc::unsupported; break;
    case 408: code = Errc::timeout; take_prefix(message, "deadline_exceeded: "); break;
    case 409: code = take_prefix(message, "aborted: ") ? Errc::lease_held : Errc::exists; break;
    case 412: code = Errc::busy; take_prefix(message, "failed_precondition: "); break;
    case 413: code = Errc::limit; break;
    case 422: code = Errc::exists; break;
    case 501: code = Errc::unsupported; take_prefix(message, "unimplemented: "); break;
    case 503:
      if (take_prefix(message, "insufficient_capacity: ")) code = Errc::no_memory;
      else if (take_prefix(message, "unavailable: ")) code = Errc::kvm_unavailable;
      break;
    default: break;
  }
  if (code == Errc::lease_held && message.find("lease currently held") != std::string::npos)
    message += " (pass its --lease-nonce)";
  return make_error(code, message);
}

}  // namespace

Result<ApiClient> ApiClient::open(const std::string& endpoint, std::string token) {
  ApiClient c;
  c.endpoint_ = endpoint;
  c.token_ = std::move(token);
  if (endpoint.rfind("unix:", 0) == 0) {
    c.socket_path_ = endpoint.substr(5);
    if (c.socket_path_.empty()) return make_error(Errc::invalid_argument, "--api unix:PATH needs the socket's path");
    c.base_url_ = "http://localhost";
  } else if (endpoint.rfind("http://", 0) == 0 || endpoint.rfind("https://", 0) == 0) {
    c.base_url_ = endpoint;
    while (c.base_url_.ends_with('/')) c.base_url_.pop_back();
  } else {
    return make_error(Errc::invalid_argument,
                      "--api takes http://HOST:PORT, https://HOST:PORT or unix:PATH, not '" + endpoint + "'");
  }
  return c;
}

std::string ApiClient::escape(const std::string& segment) {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  char* escaped = curl ? curl_easy_escape(curl.get(), segment.data(), static_cast<int>(segment.size())) : nullptr;
  if (!escaped) return segment;
  std::string out = escaped;
  curl_free(escaped);
  return out;
}

Result<nlohmann::ordered_json> ApiClient::request(const std::string& method, const std::string& path,
                                          const nlohmann::ordered_json& body, const std::string& lease_nonce) const {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return make_error(Errc::io, "cannot make an HTTP request (curl_easy_init failed)");
  CURL* h = curl.get();
  const std::string url = base_url_ + "/v1" + path;
  curl_slist* list = nullptr;
  auto header = [&list](const std::string& line) {
    if (auto* l = curl_slist_append(list, line.c_str())) list = l;
  };
  header("Accept: application/json");
  if (!token_.empty()) header("Authorization: Bearer " + token_);
  if (!lease_nonce.empty()) header("fly-machine-lease-nonce: " + lease_nonce);
  if (!body.is_null()) header("Content-Type: application/json");
  std::unique_ptr<curl_slist, CurlDeleter> headers(list);
  const std::string payload = body.is_null() ? "" : body.dump();
  std::string answer;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "GET") curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  if (!body.is_null() || method == "POST") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  if (!socket_path_.empty()) curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, socket_path_.c_str());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
  char why[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, why);
  if (CURLcode rc = curl_easy_perform(h); rc != CURLE_OK)
    return make_error(Errc::network, "cannot reach flickd at " + endpoint_ + ": " +
                                         (why[0] ? std::string(why) : curl_easy_strerror(rc)));
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) return api_error(status, answer, endpoint_);
  if (answer.find_first_not_of(" \t\r\n") == std::string::npos) return nlohmann::ordered_json(nullptr);
  try {
    return nlohmann::ordered_json::parse(answer);
  } catch (const nlohmann::ordered_json::parse_error& e) {
    return make_error(Errc::malformed, "flickd at " + endpoint_ + " answered " + method + " " + path +
                                           " with invalid JSON: " + e.what());
  }
}

}  // namespace flick::cli
