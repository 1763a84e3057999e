// The host's side of the exec protocol: frames as flick-init writes them, and what a guest must
// not be able to do to the host (docs/exec-protocol.md).
#include "runner/exec_channel.h"

#include "base/fd.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

namespace {

using namespace flick;
using namespace flick::runner;

std::string frame(uint8_t type, std::string_view payload) {
  return encode_exec_frame(static_cast<ExecFrameType>(type), payload);
}

TEST(ExecFrames, HeaderIsTypeThenBigEndianLength) {
  std::string f = encode_exec_frame(ExecFrameType::stdin_data, std::string(0x10203, 'x'));
  ASSERT_EQ(f.size(), 5u + 0x10203);
  EXPECT_EQ(std::string(f.data(), 5), std::string("\x11\x00\x01\x02\x03", 5));
}

TEST(ExecFrames, DecodesFramesSplitAnywhere) {
  std::string stream = frame(1, "hello\n") + frame(2, "oops\n") + frame(1, "") + frame(3, R"({"exit_code":3})");
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    ExecFrameDecoder d;
    auto a = d.feed(std::string_view(stream).substr(0, cut));
    auto b = d.feed(std::string_view(stream).substr(cut));
    ASSERT_TRUE(a.ok() && b.ok());
    std::vector<ExecFrame> all = *a;
    all.insert(all.end(), b->begin(), b->end());
    ASSERT_EQ(all.size(), 4u) << "cut at " << cut;
    EXPECT_EQ(all[0].type, ExecFrameType::stdout_data);
    EXPECT_EQ(all[0].payload, "hello\n");
    EXPECT_EQ(all[1].type, ExecFrameType::stderr_data);
    EXPECT_EQ(all[2].payload, "");
    EXPECT_EQ(all[3].type, ExecFrameType::exit);
  }
}

TEST(ExecFrames, RejectsHostTypesUnknownTypesAndOversizedFrames) {
  for (uint8_t type : {0, 7, 16, 17, 19, 21, 255}) {
    ExecFrameDecoder d;
    auto r = d.feed(frame(type, "x"));
    ASSERT_FALSE(r.ok()) << int(type);
    EXPECT_EQ(r.error().code, Errc::malformed);
    EXPECT_FALSE(d.feed(frame(1, "x")).ok()) << "a failed decoder stays failed";
  }
  ExecFrameDecoder d;
  std::string huge = std::string("\x01", 1) + std::string("\x00\x01\x00\x01", 4);  // 64 KiB + 1
  auto r = d.feed(huge);  // refused from the header alone: nothing is buffered for it
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("65537"), std::string::npos) << r.error().message;
  ExecFrameDecoder max;
  auto ok = max.feed(frame(1, std::string(kExecMaxPayload, 'a')));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->size(), 1u);
}

TEST(ExecFrames, ExitIsAnExitCodeOrASignal) {
  auto code = parse_exec_exit(R"({"exit_code":127})");
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(code->exit_code, 127);
  EXPECT_EQ(code->signal, 0);
  auto sig = parse_exec_exit(R"({"signal":9})");
  ASSERT_TRUE(sig.ok());
  EXPECT_EQ(sig->exit_code, -1);
  EXPECT_EQ(sig->signal, 9);
  for (const char* bad : {"", "{", "[]", "{}", R"({"exit_code":-1})", R"({"exit_code":256})", R"({"exit_code":1.5})",
                          R"({"signal":0})", R"({"signal":65})", R"({"exit_code":0,"signal":9})", R"({"exit_code":"0"})"}) {
    auto r = parse_exec_exit(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Errc::malformed) << bad;
    }
  }
}

TEST(ExecFrames, RequestCarriesOnlyWhatIsSet) {
  ExecRequest r;
  r.cmd = {"sh", "-c", "echo \"$X\""};
  EXPECT_EQ(exec_request_json(r), R"({"cmd":["sh","-c","echo \"$X\""]})");
  r.env = {{"X", "1"}};
  r.user = "nobody";
  r.workdir = "/tmp";
  EXPECT_EQ(exec_request_json(r), R"({"cmd":["sh","-c","echo \"$X\""],"env":{"X":"1"},"user":"nobody","workdir":"/tmp"})");
}

constexpr const char* kSleep =
    R"({"pid":312,"ppid":1,"command":"sleep 3600","directory":"/","stime":1764590400,"rtime":42,"cpu":3,)"
    R"("rss":614400,"listen_sockets":[{"proto":"tcp","address":"0.0.0.0:8080"},{"proto":"udp","address":"[::]:53"}]})";

TEST(ProcessList, ParsesFlysFields) {
  auto p = parse_process(kSleep);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->pid, 312);
  EXPECT_EQ(p->ppid, 1);
  EXPECT_EQ(p->command, "sleep 3600");
  EXPECT_EQ(p->directory, "/");
  EXPECT_EQ(p->started_at, std::chrono::system_clock::time_point(std::chrono::seconds(1764590400)));
  EXPECT_EQ(p->run_time, std::chrono::seconds(42));
  EXPECT_EQ(p->cpu_percent, 3u);
  EXPECT_EQ(p->rss_bytes, 614400u);
  ASSERT_EQ(p->listen_sockets.size(), 2u);
  EXPECT_EQ(p->listen_sockets[1].proto, "udp");
  EXPECT_EQ(p->listen_sockets[1].address, "[::]:53");
  auto bare = parse_process(R"({"pid":1})");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->command, "");
}

TEST(ProcessList, RefusesWhatFlickInitNeverSends) {
  const std::string long_text(kMaxProcessText + 3, 'a');
  for (const std::string& bad : std::vector<std::string>{
           "", "[]", "{}", R"({"ppid":1})", R"({"pid":0})", R"({"pid":-1})", R"({"pid":4194305})", R"({"pid":1.5})",
        R"({"pid":"1"})", R"({"pid":1,"pid":2,"ppid":-1})", R"({"pid":1,"stime":-5})", R"({"pid":1,"stime":1e30})",
        R"({"pid":1,"rtime":18446744073709551615})", R"({"pid":1,"cpu":1000000})", R"({"pid":1,"rss":1e300})",
        R"({"pid":1,"command":null})", R"({"pid":1,"command":")" + long_text + "\"}",
        R"({"pid":1,"directory":")" + long_text + "\"}", R"({"pid":1,"user":"root"})",
        R"({"pid":1,"listen_sockets":{}})", R"({"pid":1,"listen_sockets":[{"proto":"sctp","address":"x:1"}]})",
        R"({"pid":1,"listen_sockets":[{"proto":"tcp"}]})", R"({"pid":1,"listen_sockets":[{"proto":"tcp","address":""}]})",
        R"({"pid":1,"listen_sockets":[{"proto":"tcp","address":"a:1","x":1}]})"}) {
    auto r = parse_process(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Errc::malformed) << bad;
    }
  }
  nlohmann::json many = nlohmann::json::parse(kSleep);
  many["listen_sockets"] = nlohmann::json::array();
  for (int i = 0; i < 65; ++i) many["listen_sockets"].push_back({{"proto", "tcp"}, {"address", "0.0.0.0:1"}});
  EXPECT_FALSE(parse_process(many.dump()).ok());
}

// A guest behind a vsock Unix socket as flick-vmm exposes it: it answers CONNECT with OK, reads
// the ps frame and sends `reply`.
class FakeGuest {
 public:
  explicit FakeGuest(std::string reply) {
    path_ = std::filesystem::temp_directory_path() / ("flick-ps-" + std::to_string(::getpid()) + "-" +
                                                      std::to_string(counter_++) + ".vsock");
    listener_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    EXPECT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listener_.get(), 1), 0);
    thread_ = std::thread([this, reply = std::move(reply)] {
      UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) return;
      auto read_exactly = [&](size_t n) {
        std::string in(n, '\0');
        for (size_t got = 0; got < n;) {
          ssize_t r = ::read(c.get(), in.data() + got, n - got);
          if (r <= 0) return std::string();
          got += static_cast<size_t>(r);
        }
        return in;
      };
      asked_ = read_exactly(14);  // "CONNECT 10001\n"
      (void)::send(c.get(), "OK 1\n", 5, MSG_NOSIGNAL);
      asked_ += read_exactly(5);  // the ps frame
      (void)::send(c.get(), reply.data(), reply.size(), MSG_NOSIGNAL);  // the host may hang up first
    });
  }
  ~FakeGuest() {
    if (thread_.joinable()) thread_.join();
    std::filesystem::remove(path_);
  }
  const std::filesystem::path& path() const { return path_; }
  // What the host sent, once the guest is done.
  const std::string& asked() {
    if (thread_.joinable()) thread_.join();
    return asked_;
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
  std::string asked_;
  UniqueFd listener_;
  std::thread thread_;
};

TEST(ProcessList, AsksWithAPsFrameAndReadsTheListToItsEnd) {
  FakeGuest guest(frame(5, R"({"pid":1,"command":"/flick/init"})") + frame(5, kSleep) + frame(6, ""));
  auto list = list_guest_processes(guest.path());
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].command, "/flick/init");
  EXPECT_EQ((*list)[1].pid, 312);
  EXPECT_EQ(guest.asked(), "CONNECT 10001\n" + frame(21, ""));
}

TEST(ProcessList, AnOlderFlickInitIsUnsupported) {
  FakeGuest guest(frame(4, "exec: the first frame must be a request, not type 21"));
  auto list = list_guest_processes(guest.path());
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.error().code, Errc::unsupported) << list.error().message;
}

TEST(ProcessList, AGuestThatBreaksTheProtocolIsMalformed) {
  const std::string p1 = frame(5, R"({"pid":1})"), p2 = frame(5, R"({"pid":2})");
  for (const std::string& reply : std::vector<std::string>{p2 + p1 + frame(6, ""), p1 + p1 + frame(6, ""), p1 + frame(6, "x"),
                                   p1 + frame(1, "out"), p1 + frame(3, R"({"exit_code":0})"), frame(5, "{}"),
                                   frame(16, "")}) {
    FakeGuest guest(reply);
    auto list = list_guest_processes(guest.path());
    ASSERT_FALSE(list.ok());
    EXPECT_EQ(list.error().code, Errc::malformed) << list.error().message;
  }
  std::string too_many;
  for (size_t pid = 1; pid <= kMaxProcesses + 1; ++pid) too_many += frame(5, R"({"pid":)" + std::to_string(pid) + "}");
  FakeGuest guest(too_many + frame(6, ""));
  auto list = list_guest_processes(guest.path());
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.error().code, Errc::malformed);
  EXPECT_NE(list.error().message.find("more than 4096"), std::string::npos) << list.error().message;
}

TEST(ProcessList, AListCutShortIsAnIoError) {
  FakeGuest guest(frame(5, R"({"pid":1})"));
  auto list = list_guest_processes(guest.path());
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.error().code, Errc::io) << list.error().message;
}

}  // namespace
