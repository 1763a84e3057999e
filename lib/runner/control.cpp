#include "runner/control.h"

#include <flick/version.h>

#include "runner/guest_channel.h"

#include <nlohmann/json.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace flick::runner {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string control_hello_reply(int client_min, int client_max, int* agreed) {
  int v = std::min(client_max, kControlProtocolMax);
  if (v < std::max(client_min, kControlProtocolMin)) {
    *agreed = 0;
    return json{{"ok", false},
                {"error", "protocol versions " + std::to_string(client_min) + ".." + std::to_string(client_max) +
                              " are not spoken here: this flick-vmm speaks " + std::to_string(kControlProtocolMin) +
                              ".." + std::to_string(kControlProtocolMax)}}
        .dump();
  }
  *agreed = v;
  return json{{"ok", true}, {"version", v}, {"program", "flick-vmm " FLICK_VERSION_STRING}}.dump();
}

Result<ControlClient> ControlClient::connect(const std::filesystem::path& socket, int min_version, int max_version,
                                             std::chrono::milliseconds timeout) {
  const std::string& p = socket.native();
  auto connected = connect_unix(socket);
  if (!connected) {
    const Error& e = connected.error();
    if (e.sys_errno == ENOENT || e.sys_errno == ECONNREFUSED)
      return make_error(Errc::not_found, "no run listens on " + p + " (the machine is not running)");
    return std::move(connected).error();
  }
  ControlClient c(std::move(connected).value(), timeout);
  auto reply = c.call(json{{"op", "hello"}, {"min", min_version}, {"max", max_version}}.dump());
  if (!reply) {
    Error e = std::move(reply).error();
    if (e.code == Errc::invalid_argument) e.code = Errc::unsupported;  // the run refused our versions
    return std::move(e).with_context("control socket " + p);
  }
  try {
    c.version_ = json::parse(*reply).at("version").get<int>();
  } catch (const json::exception& e) {
    return make_error(Errc::malformed, "control socket " + p + ": a hello reply without a version: " + e.what());
  }
  return c;
}

Result<std::string> ControlClient::call(std::string_view request) {
  std::string out(request);
  out += '\n';
  const auto deadline = Clock::now() + timeout_;
  for (size_t sent = 0; sent < out.size();) {
    ssize_t n = ::send(fd_.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("sending a control request", errno);
    sent += static_cast<size_t>(n);
  }
  size_t nl;
  while ((nl = buffered_.find('\n')) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return make_error(Errc::timeout, "the run did not answer within " + std::to_string(timeout_.count()) + " ms");
    pollfd pfd{fd_.get(), POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left)) < 0 && errno != EINTR) return sys_error("waiting for the run", errno);
    char buf[4096];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return make_error(Errc::not_found, "the run closed its control connection (it has ended)");
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return sys_error("reading the run's reply", errno);
    buffered_.append(buf, static_cast<size_t>(n));
    if (buffered_.size() > (1u << 20)) return make_error(Errc::malformed, "the run's reply is longer than 1 MiB");
  }
  std::string line = buffered_.substr(0, nl);
  buffered_.erase(0, nl + 1);
  try {
    json j = json::parse(line);
    if (!j.at("ok").get<bool>())
      return make_error(j.value("code", "") == "busy"         ? Errc::busy
                        : j.value("code", "") == "lease_held" ? Errc::lease_held
                                                              : Errc::invalid_argument,
                        j.value("error", std::string("the run refused the request")));
  } catch (const json::exception& e) {
    return make_error(Errc::malformed, std::string("the run's reply is not JSON: ") + e.what());
  }
  return line;
}

Result<RunStatus> ControlClient::status() {
  FLICK_TRY_ASSIGN(auto reply, call(R"({"op":"status"})"));
  try {
    json j = json::parse(reply);
    return RunStatus{j.at("state"), j.at("monitor_pid"), j.at("vmm_pid"), j.at("restarts")};
  } catch (const json::exception& e) {
    return make_error(Errc::malformed, std::string("the run's status: ") + e.what());
  }
}

Result<void> ControlClient::stop(const StopConfig& how, const std::optional<std::string>& lease_nonce) {
  json req{{"op", "stop"}, {"signal", how.signal}, {"timeout_ms", how.timeout.count()}};
  if (lease_nonce) req["lease_nonce"] = *lease_nonce;
  FLICK_TRY(call(req.dump()));
  return {};
}

Result<void> ControlClient::signal(int signo) {
  FLICK_TRY(call(json{{"op", "signal"}, {"signal", signo}}.dump()));
  return {};
}

Result<void> ControlClient::kill(const std::optional<std::string>& lease_nonce) {
  json req{{"op", "kill"}};
  if (lease_nonce) req["lease_nonce"] = *lease_nonce;
  FLICK_TRY(call(req.dump()));
  return {};
}

}  // namespace flick::runner
