// A flickd's Fly Machines API as `flick --api` reaches it: one HTTP request at a time over
// libcurl, to http(s)://HOST:PORT or to a Unix socket (unix:PATH), with flickd's
// {"error": ...} answers turned back into flick Errors.
#pragma once

#include <flick/result.h>

#include <nlohmann/json.hpp>

#include <string>

namespace flick::cli {

class ApiClient {
 public:
  // `endpoint`: "http://127.0.0.1:4280" (a path prefix is kept), "https://...", or
  // "unix:/run/flick/api.sock". `token` goes as `Authorization: Bearer` (none when empty).
  static Result<ApiClient> open(const std::string& endpoint, std::string token);

  // METHOD /v1<path> with `body` as JSON (no body when it is null), and the
  // fly-machine-lease-nonce header when `lease_nonce` is set. The answer's JSON (null when it
  // has no body) for a 2xx; else an Error from flickd's message, its code from the status:
  // 400 invalid_argument, 401 invalid_argument (naming the token), 404 not_found, 408 timeout,
  // 409 lease_held (or exists), 412 busy, 501 unsupported, 503 kvm_unavailable or no_memory.
  // Fly's prefixes ("aborted: ", "failed_precondition: ", ...) are taken off the message, so
  // it reads as the store's own.
  Result<nlohmann::ordered_json> request(const std::string& method, const std::string& path,
                                 const nlohmann::ordered_json& body = nullptr, const std::string& lease_nonce = {}) const;

  // A path segment (an app, a machine, a metadata key) escaped for a URL.
  static std::string escape(const std::string& segment);

  const std::string& endpoint() const { return endpoint_; }

 private:
  std::string endpoint_;     // as given, for messages
  std::string base_url_;     // what paths are appended to
  std::string socket_path_;  // unix:PATH
  std::string token_;
};

}  // namespace flick::cli
