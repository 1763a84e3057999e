#include "runner/guest_channel.h"

#include <nlohmann/json.hpp>

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

namespace flick::runner {

Result<GuestEvent> parse_guest_event(std::string_view line) {
  auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& why) {
    return make_error(Errc::malformed, "guest event " + std::string(line.substr(0, 200)) + ": " + why);
  };
  if (!j.is_object() || !j.contains("event") || !j["event"].is_string()) return bad("not an event object");
  auto integer = [&](const char* key) -> std::optional<int> {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<int>();
  };
  GuestEvent e;
  const auto& kind = j["event"].get_ref<const std::string&>();
  if (kind == "started") {
    e.kind = GuestEvent::Kind::started;
    e.pid = integer("pid").value_or(0);
  } else if (kind == "exited") {
    e.kind = GuestEvent::Kind::exited;
    e.exit_code = integer("exit_code");
    e.signal = integer("signal").value_or(0);
    if (!e.exit_code && e.signal <= 0) return bad("exited without exit_code or signal");
  } else if (kind == "oom") {
    e.kind = GuestEvent::Kind::oom;
  } else if (kind == "error") {
    e.kind = GuestEvent::Kind::error;
    e.exit_code = integer("exit_code");
    if (auto it = j.find("message"); it != j.end() && it->is_string()) e.message = it->get<std::string>();
  } else {
    return bad("unknown event");
  }
  return e;
}

std::vector<std::string> LineSplitter::feed(std::string_view bytes) {
  std::vector<std::string> lines;
  for (char c : bytes) {
    if (c == '\n') {
      lines.push_back(std::move(partial_));
      partial_.clear();
    } else if (partial_.size() == max_) {
      lines.push_back(std::move(partial_));
      partial_.assign(1, c);
    } else {
      partial_ += c;
    }
  }
  return lines;
}

std::string stop_command() { return "{\"command\":\"stop\"}\n"; }

std::string signal_command(int signo) {
  return "{\"command\":\"signal\",\"signal\":" + std::to_string(signo) + "}\n";
}

namespace {

Result<sockaddr_un> unix_address(const std::string& p) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (p.size() >= sizeof addr.sun_path)
    return make_error(Errc::invalid_argument,
                      "socket path " + p + " is longer than " + std::to_string(sizeof addr.sun_path - 1) +
                          " bytes: choose a shorter run directory");
  std::memcpy(addr.sun_path, p.data(), p.size());
  return addr;
}

}  // namespace

Result<UniqueFd> listen_unix(const std::filesystem::path& path, int backlog) {
  const std::string& p = path.native();
  FLICK_TRY_ASSIGN(sockaddr_un addr, unix_address(p));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return sys_error("creating a Unix socket for " + p, errno);
  ::unlink(p.c_str());  // a socket left by a VMM that was killed
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return sys_error("binding " + p, errno);
  if (::listen(fd.get(), backlog) != 0) return sys_error("listening on " + p, errno);
  return fd;
}

Result<UniqueFd> connect_unix(const std::filesystem::path& path) {
  const std::string& p = path.native();
  FLICK_TRY_ASSIGN(sockaddr_un addr, unix_address(p));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return sys_error("creating a Unix socket for " + p, errno);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return sys_error("connecting to " + p, errno);
  return fd;
}

}  // namespace flick::runner
