// HttpServer: flickd's HTTP/1.1 front (libmicrohttpd), on listening sockets it is handed (a
// Unix socket, TCP). The library parses HTTP, keeps connections alive and bounds headers and
// idle time; this class bounds bodies and moves every request off the polling thread: the
// connection is suspended, the handler runs on a worker and answers through Respond, from any
// thread, whenever it likes. A handler that answers later (a long-polling `wait`) returns at
// once and holds neither a worker nor the polling thread meanwhile.
#pragma once

#include "base/fd.h"

#include <flick/result.h>

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace flick::flickd {

struct HttpRequest {
  std::string method;
  std::string path;  // decoded, without the query
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order, repeats kept
  std::map<std::string, std::string> headers;               // names in lower case
  std::string body;
  bool tcp = false;  // arrived on a TCP listener

  // The first value of a query parameter or a header (by its lower-case name).
  std::optional<std::string> query_value(const std::string& name) const;
  std::optional<std::string> header(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string body;  // empty: no body
  std::string content_type = "application/json";
};

// Answers a request: exactly once, from any thread.
using Respond = std::function<void(HttpResponse)>;
// Runs on a worker thread.
using HttpHandler = std::function<void(HttpRequest, Respond)>;

struct HttpListener {
  UniqueFd fd;  // bound and listening
  bool tcp = false;
};

struct HttpServerOptions {
  size_t workers = 8;
  size_t max_body = 1u << 20;        // larger bodies get 413 without reaching the handler
  unsigned idle_timeout_s = 120;     // a connection silent this long is closed
  size_t max_connections = 1024;     // per listener
};

class HttpServer {
 public:
  // Serves every listener with one polling thread each and `workers` handler threads.
  static Result<std::unique_ptr<HttpServer>> start(std::vector<HttpListener> listeners, HttpHandler handler,
                                                   HttpServerOptions options = {});
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Stops accepting, waits until every request taken has been answered (whoever holds a
  // Respond must answer it), then closes every connection.
  void stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flick::flickd
