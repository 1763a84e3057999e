// The host's side of the exec protocol: frames as flick-init writes them, and what a guest must
// not be able to do to the host (docs/exec-protocol.md).
#include "runner/exec_channel.h"

#include <gtest/gtest.h>

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
  for (uint8_t type : {0, 5, 16, 17, 19, 255}) {
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

}  // namespace
