// Api: Fly's Machines REST API (/v1/...) over one flick Host, as an HttpHandler. Paths,
// bodies, status codes and the error shape {"error": "..."} follow Fly's
// (https://fly.io/docs/machines/api/); where Fly's clients disagree, both forms are taken.
#pragma once

#include "http_server.h"
#include "placement.h"
#include "waits.h"

#include <flick/machine.h>

#include <string>
#include <vector>

namespace flick::flickd {

struct ApiOptions {
  std::string token;             // what Authorization must carry (required on TCP)
  std::string region = "local";  // where this host's machines are
  Capacity capacity = Capacity::of_this_host();
};

class Api {
 public:
  Api(Host& host, ApiOptions options);
  ~Api();

  // Answers `request` (on the calling worker, or later for a wait).
  void handle(HttpRequest request, Respond respond);
  // Every route it serves, "METHOD /path/{param}", in the order they are matched
  // (flickd --routes); tools/flickd/openapi.json documents exactly these.
  static std::vector<std::string> routes();
  // Answers every pending wait (503) and takes no more: before the server stops.
  void shutdown();

 private:
  Host& host_;
  ApiOptions options_;
  WaitList waits_;
  Placement placement_;
};

}  // namespace flick::flickd
