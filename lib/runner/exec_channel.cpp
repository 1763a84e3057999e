#include "runner/exec_channel.h"

#include "base/fd.h"
#include "runner/guest_channel.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace flick::runner {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kConnectWait = 10s;  // for the guest to accept, when the request has no timeout
constexpr auto kProcessesWait = 10s;  // for the whole process list
constexpr size_t kMaxListenSockets = 64;  // per process, as flick-init names them
constexpr int64_t kMaxPid = 4194304;  // PID_MAX_LIMIT (include/linux/threads.h)
constexpr uint64_t kMaxSeconds = uint64_t{1} << 33;  // past year 2200: time_point safe
constexpr uint64_t kMaxCpuPercent = 100 * 1024;  // every vCPU busy all its life

bool guest_to_host(uint8_t t) { return t >= 1 && t <= 6; }

Error guest_error(Errc code, const std::string& what) { return make_error(code, "exec: " + what); }

// Connects to the VM's vsock socket and asks for the guest's exec port.
Result<UniqueFd> connect_exec_port(const std::filesystem::path& uds_path, Clock::time_point deadline) {
  const std::string& p = uds_path.native();
  auto connected = connect_unix(uds_path);
  if (!connected) return std::move(connected).error().with_context("exec: the machine's vsock socket (is the machine running?)");
  UniqueFd fd = std::move(connected).value();
  std::string hello = "CONNECT " + std::to_string(kExecPort) + "\n";
  if (::send(fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(hello.size()))
    return sys_error("exec: writing to " + p, errno);
  // "OK <port>\n", one byte at a time: what follows is the guest's.
  std::string line;
  while (line.size() < 32) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd pf{fd.get(), POLLIN, 0};
    int r = left.count() > 0 ? ::poll(&pf, 1, static_cast<int>(left.count())) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return make_error(Errc::timeout, "exec: the guest did not accept a connection to vsock port " + std::to_string(kExecPort));
    char c;
    ssize_t n = ::recv(fd.get(), &c, 1, 0);
    if (n <= 0)
      return make_error(Errc::unsupported, "exec: the guest refused vsock port " + std::to_string(kExecPort) +
                                               " (its flick-init does not serve exec, or the machine is stopping)");
    if (c == '\n') break;
    line += c;
  }
  if (line.rfind("OK ", 0) != 0) return guest_error(Errc::malformed, "unexpected answer from the vsock socket: " + line.substr(0, 32));
  if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK) != 0) return sys_error("exec: fcntl", errno);
  return fd;
}

std::string describe_cmd(const std::vector<std::string>& cmd) {
  std::string s;
  for (const auto& a : cmd) s += (s.empty() ? "" : " ") + a;
  return s.size() > 200 ? s.substr(0, 200) + "..." : s;
}

}  // namespace

std::string encode_exec_frame(ExecFrameType type, std::string_view payload) {
  std::string f(kExecFrameHeader, '\0');
  auto len = static_cast<uint32_t>(payload.size());
  f[0] = static_cast<char>(type);
  f[1] = static_cast<char>(len >> 24);
  f[2] = static_cast<char>(len >> 16);
  f[3] = static_cast<char>(len >> 8);
  f[4] = static_cast<char>(len);
  f.append(payload);
  return f;
}

std::string exec_request_json(const ExecRequest& r) {
  nlohmann::json j;
  j["cmd"] = r.cmd;
  if (!r.env.empty()) j["env"] = r.env;
  if (!r.user.empty()) j["user"] = r.user;
  if (!r.workdir.empty()) j["workdir"] = r.workdir;
  if (r.tty) {
    j["tty"] = true;
    if (r.rows && r.cols) {
      j["rows"] = r.rows;
      j["cols"] = r.cols;
    }
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<std::vector<ExecFrame>> ExecFrameDecoder::feed(std::string_view bytes) {
  if (failed_) return guest_error(Errc::malformed, "the guest's frames were already malformed");
  buffered_.append(bytes);
  std::vector<ExecFrame> frames;
  size_t off = 0;
  while (buffered_.size() - off >= kExecFrameHeader) {
    auto b = [&](size_t i) { return static_cast<uint8_t>(buffered_[off + i]); };
    uint8_t type = b(0);
    uint32_t len = uint32_t{b(1)} << 24 | uint32_t{b(2)} << 16 | uint32_t{b(3)} << 8 | b(4);
    if (!guest_to_host(type) || len > kExecMaxPayload) {
      failed_ = true;
      buffered_.clear();
      return guest_error(Errc::malformed, "the guest sent a frame of type " + std::to_string(type) + " and " +
                                              std::to_string(len) + " bytes");
    }
    if (buffered_.size() - off - kExecFrameHeader < len) break;
    frames.push_back({static_cast<ExecFrameType>(type), buffered_.substr(off + kExecFrameHeader, len)});
    off += kExecFrameHeader + len;
  }
  buffered_.erase(0, off);
  return frames;
}

Result<ExecExit> parse_exec_exit(std::string_view payload) {
  auto j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  auto bad = [&] {
    return guest_error(Errc::malformed, "the guest's exit frame " + std::string(payload.substr(0, 100)) +
                                            " is neither {\"exit_code\":0..255} nor {\"signal\":1..64}");
  };
  if (!j.is_object() || j.size() != 1) return bad();
  ExecExit e;
  if (auto it = j.find("exit_code"); it != j.end() && it->is_number_integer() && *it >= 0 && *it <= 255)
    e.exit_code = it->get<int>();
  else if (auto s = j.find("signal"); s != j.end() && s->is_number_integer() && *s >= 1 && *s <= 64)
    e.signal = s->get<int>();
  else
    return bad();
  return e;
}

Result<ProcessInfo> parse_process(std::string_view payload) {
  auto j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& why) {
    return make_error(Errc::malformed, "ps: the guest's process entry " + std::string(payload.substr(0, 100)) + ": " + why);
  };
  if (!j.is_object()) return bad("not a JSON object");
  ProcessInfo p;
  auto number = [&](const nlohmann::json& v, uint64_t max, uint64_t& out) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() > max) return false;
    out = v.get<uint64_t>();
    return true;
  };
  auto text = [&](const nlohmann::json& v, size_t max, std::string& out) {
    if (!v.is_string() || v.get_ref<const std::string&>().size() > max) return false;
    out = v.get<std::string>();
    return true;
  };
  bool has_pid = false;
  for (const auto& [key, v] : j.items()) {
    uint64_t n = 0;
    bool ok = false;
    if (key == "pid") {
      ok = has_pid = number(v, kMaxPid, n) && n > 0;
      p.pid = static_cast<int>(n);
    } else if (key == "ppid") {
      ok = number(v, kMaxPid, n);
      p.ppid = static_cast<int>(n);
    } else if (key == "command") {
      ok = text(v, kMaxProcessText + 2, p.command);  // room for a zombie's "[comm]"
    } else if (key == "directory") {
      ok = text(v, kMaxProcessText, p.directory);
    } else if (key == "stime") {
      ok = number(v, kMaxSeconds, n);
      p.started_at = std::chrono::system_clock::time_point(std::chrono::seconds(n));
    } else if (key == "rtime") {
      ok = number(v, kMaxSeconds, n);
      p.run_time = std::chrono::seconds(n);
    } else if (key == "cpu") {
      ok = number(v, kMaxCpuPercent, n);
      p.cpu_percent = static_cast<uint32_t>(n);
    } else if (key == "rss") {
      ok = number(v, uint64_t{1} << 52, p.rss_bytes);
    } else if (key == "listen_sockets") {
      ok = v.is_array() && v.size() <= kMaxListenSockets;
      for (size_t i = 0; ok && i < v.size(); ++i) {
        const auto& s = v[i];
        ListenSocket l;
        ok = s.is_object() && s.size() == 2 && s.contains("proto") && s.contains("address") &&
             text(s["proto"], 3, l.proto) && (l.proto == "tcp" || l.proto == "udp") &&
             text(s["address"], 64, l.address) && !l.address.empty();
        if (ok) p.listen_sockets.push_back(std::move(l));
      }
    } else {
      return bad("unknown member \"" + key.substr(0, 40) + "\"");
    }
    if (!ok) return bad("\"" + key + "\" is out of range or of the wrong type");
  }
  if (!has_pid) return bad("no pid");
  return p;
}

Result<std::vector<ProcessInfo>> list_guest_processes(const std::filesystem::path& uds_path) {
  const auto deadline = Clock::now() + kProcessesWait;
  FLICK_TRY_ASSIGN(UniqueFd fd, connect_exec_port(uds_path, deadline));
  const std::string ask = encode_exec_frame(ExecFrameType::ps, {});
  if (::send(fd.get(), ask.data(), ask.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(ask.size()))
    return sys_error("ps: writing to the guest", errno);
  ExecFrameDecoder decoder;
  std::vector<ProcessInfo> list;
  std::string buf(kExecMaxPayload, '\0');
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return make_error(Errc::timeout, "ps: the guest did not list its processes within " +
                                           std::to_string(kProcessesWait.count()) + " s");
    pollfd pf{fd.get(), POLLIN, 0};
    int r = ::poll(&pf, 1, static_cast<int>(left.count()));
    if (r < 0 && errno != EINTR) return sys_error("ps: poll", errno);
    if (r <= 0) continue;
    ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return make_error(Errc::io, "ps: the connection to the guest closed before the list ended (did the machine stop?)");
    FLICK_TRY_ASSIGN(auto frames, decoder.feed(std::string_view(buf.data(), static_cast<size_t>(n))));
    for (const ExecFrame& f : frames) {
      switch (f.type) {
        case ExecFrameType::process: {
          if (list.size() == kMaxProcesses)
            return make_error(Errc::malformed, "ps: the guest listed more than " + std::to_string(kMaxProcesses) + " processes");
          FLICK_TRY_ASSIGN(auto p, parse_process(f.payload));
          if (!list.empty() && p.pid <= list.back().pid)
            return make_error(Errc::malformed, "ps: the guest's processes are not in pid order");
          list.push_back(std::move(p));
          break;
        }
        case ExecFrameType::process_end:
          if (!f.payload.empty()) return make_error(Errc::malformed, "ps: the guest's end of the process list is not empty");
          return list;
        case ExecFrameType::error:  // an older flick-init refuses the frame it does not know
          return make_error(Errc::unsupported, "ps: the guest's flick-init does not list processes (" +
                                                   f.payload.substr(0, 200) + ")");
        default:
          return make_error(Errc::malformed, "ps: the guest sent output or an exit status in answer to ps");
      }
    }
  }
}

Result<ExecResult> exec_in_guest(const std::filesystem::path& uds_path, const ExecRequest& request,
                                 const ExecOutput& output) {
  const auto start = Clock::now();
  const auto deadline = request.timeout.count() > 0 ? start + request.timeout : Clock::time_point::max();
  auto timed_out = [&] {
    return make_error(Errc::timeout, "exec: " + describe_cmd(request.cmd) + " did not finish within " +
                                         std::to_string(request.timeout.count()) + " ms and was killed");
  };
  FLICK_TRY_ASSIGN(UniqueFd fd, connect_exec_port(uds_path, std::min(deadline, start + kConnectWait)));

  std::string out = encode_exec_frame(ExecFrameType::request, exec_request_json(request));
  if (out.size() > kExecFrameHeader + kExecMaxPayload)
    return make_error(Errc::limit, "exec: the request (cmd, env) is larger than " + std::to_string(kExecMaxPayload) + " bytes");
  for (size_t at = 0; at < request.stdin_data.size(); at += kExecMaxPayload / 2)
    out += encode_exec_frame(ExecFrameType::stdin_data, std::string_view(request.stdin_data).substr(at, kExecMaxPayload / 2));
  int stdin_fd = output.stdin_fd;
  if (stdin_fd < 0) out += encode_exec_frame(ExecFrameType::stdin_eof, {});
  size_t sent = 0;
  bool guest_reads = true;  // false once the guest stopped taking what we send
  auto read_stdin = [&] {
    char in[kExecMaxPayload / 2];
    ssize_t n = ::read(stdin_fd, in, sizeof in);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n > 0) {
      out += encode_exec_frame(ExecFrameType::stdin_data, std::string_view(in, static_cast<size_t>(n)));
      return;
    }
    out += encode_exec_frame(ExecFrameType::stdin_eof, {});
    stdin_fd = -1;
  };
  auto resized = [&] {
    char drain[64];
    while (::read(output.resize_fd, drain, sizeof drain) > 0) {
    }
    if (!output.window_size) return;
    auto [rows, cols] = output.window_size();
    const char size[4] = {static_cast<char>(rows >> 8), static_cast<char>(rows), static_cast<char>(cols >> 8),
                          static_cast<char>(cols)};
    out += encode_exec_frame(ExecFrameType::resize, std::string_view(size, 4));
  };

  ExecFrameDecoder decoder;
  ExecResult result;
  std::string buf(kExecMaxPayload, '\0');
  for (;;) {
    int wait_ms = -1;
    if (deadline != Clock::time_point::max()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        // The guest kills the command when the connection closes; a kill frame says it first
        // when it can go out whole.
        if (sent == out.size()) {
          auto kill = encode_exec_frame(ExecFrameType::kill, {});
          (void)::send(fd.get(), kill.data(), kill.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        return timed_out();
      }
      wait_ms = static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
    }
    bool writing = guest_reads && sent < out.size();
    bool room = out.size() - sent < 4 * kExecMaxPayload;  // stdin waits while the guest is slow
    pollfd fds[3] = {{fd.get(), static_cast<short>(POLLIN | (writing ? POLLOUT : 0)), 0},
                     {room && guest_reads ? stdin_fd : -1, POLLIN, 0},
                     {request.tty ? output.resize_fd : -1, POLLIN, 0}};
    int r = ::poll(fds, 3, wait_ms);
    if (r < 0 && errno != EINTR) return sys_error("exec: poll", errno);
    if (r <= 0) continue;
    if (fds[1].revents) read_stdin();
    if (fds[2].revents) resized();
    pollfd& pf = fds[0];
    writing = guest_reads && sent < out.size();
    if (writing && (pf.revents & (POLLOUT | POLLERR))) {
      ssize_t n = ::send(fd.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR) guest_reads = false;  // the exit may still come
      if (sent == out.size() || sent > 4 * kExecMaxPayload) {
        out.erase(0, sent);  // stdin can be large: let it go
        sent = 0;
      }
    }
    if (!(pf.revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0)
      return make_error(Errc::io, "exec: the connection to the guest closed before " + describe_cmd(request.cmd) +
                                      " exited (did the machine stop?)");
    FLICK_TRY_ASSIGN(auto frames, decoder.feed(std::string_view(buf.data(), static_cast<size_t>(n))));
    for (const ExecFrame& f : frames) {
      switch (f.type) {
        case ExecFrameType::stdout_data:
          if (output.stdout_chunk) output.stdout_chunk(f.payload);
          break;
        case ExecFrameType::stderr_data:
          if (output.stderr_chunk) output.stderr_chunk(f.payload);
          break;
        case ExecFrameType::error:
          return make_error(Errc::invalid_argument, "the guest refused the exec: " + f.payload.substr(0, 600));
        case ExecFrameType::exit: {
          FLICK_TRY_ASSIGN(auto e, parse_exec_exit(f.payload));
          result.exit_code = e.exit_code;
          result.exit_signal = e.signal;
          return result;
        }
        default:
          return guest_error(Errc::malformed, "unexpected frame");  // the decoder lets none through
      }
    }
  }
}

}  // namespace flick::runner
