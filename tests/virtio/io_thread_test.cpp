#include "virtio/io_thread.h"
#include "virtio_test_util.h"

#include <sys/socket.h>

namespace flick::virtio::testing {
namespace {

class IoThreadTest : public ::testing::TestWithParam<bool> {};

TEST_P(IoThreadTest, ReadAndWriteWatchesOnOneFdPostAndUnwatch) {
  auto t = IoThread::create("test", /*allow_io_uring=*/GetParam());
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->backend(), GetParam() ? IoThread::Backend::io_uring : IoThread::Backend::epoll);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  std::atomic<int> reads{0}, writes{0}, posted{0};
  uint64_t write_id = 0;
  IoThread* th = t->get();
  ASSERT_TRUE((*t)->watch(sv[0], [&] {
    char b[16];
    while (::read(sv[0], b, sizeof b) > 0) {}
    reads++;
  }).ok());
  auto w = (*t)->watch(sv[0], [&] {
    writes++;
    th->unwatch(write_id);  // writable once is enough
  }, /*writable=*/true);
  ASSERT_TRUE(w.ok()) << w.error().describe();
  write_id = *w;
  ASSERT_TRUE((*t)->start().ok());
  ASSERT_EQ(::write(sv[1], "x", 1), 1);
  EXPECT_TRUE(eventually([&] { return reads.load() >= 1; }));
  EXPECT_TRUE(eventually([&] { return writes.load() == 1; }));
  (*t)->post([&] { posted++; });
  EXPECT_TRUE(eventually([&] { return posted.load() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(writes.load(), 1);  // unwatched: not called again though still writable
  (*t)->stop();
  ::close(sv[0]);
  ::close(sv[1]);
}

INSTANTIATE_TEST_SUITE_P(Backends, IoThreadTest, ::testing::Values(true, false),
                         [](const auto& param_info) { return param_info.param ? "io_uring" : "epoll"; });

TEST_P(IoThreadTest, RunUntilIdleRepeatsTheStepOnTheThreadUntilItReportsNothingLeft) {
  auto t = IoThread::create("test", GetParam());
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE((*t)->start().ok());
  int left = 5;
  bool on_thread = true;
  auto r = (*t)->run_until_idle([&]() -> size_t {
    on_thread = on_thread && (*t)->on_io_thread();
    return static_cast<size_t>(left--);
  }, "counting down");
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(left, -1);
  EXPECT_TRUE(on_thread);
  auto stuck = (*t)->run_until_idle([] { return size_t{1}; }, "never idle", std::chrono::milliseconds(50));
  ASSERT_FALSE(stuck.ok());
  EXPECT_EQ(stuck.error().code, Errc::timeout);
  EXPECT_EQ(stuck.error().message.rfind("never idle: ", 0), 0u) << stuck.error().message;
  (*t)->stop();
}

}  // namespace
}  // namespace flick::virtio::testing
