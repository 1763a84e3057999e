#include "virtio/block/block_device.h"
#include "virtio/block/block_request.h"
#include "blk_wire.h"
#include "virtio_test_util.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <fstream>

namespace flick::virtio::testing {
namespace {

using namespace blk;


constexpr uint64_t kDiskBytes = 1 << 20;

std::string make_disk() {
  char path[] = "/tmp/flick-blk-XXXXXX";
  int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  std::vector<uint8_t> data(kDiskBytes);
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<uint8_t>(i / 512);
  EXPECT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ::close(fd);
  return path;
}

std::vector<uint8_t> file_bytes(const std::string& path, uint64_t off, size_t len) {
  std::vector<uint8_t> out(len);
  int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_EQ(::pread(fd, out.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len));
  ::close(fd);
  return out;
}

// ---- parser -------------------------------------------------------------------------------

class BlockParseTest : public ::testing::Test {
 protected:
  void SetUp() override { mem = make_memory(); }
  ParsedBlockRequest parse(const std::vector<Buffer>& bufs, BlockLimits limits = {2048, false}) {
    MockQueue fresh(mem, GuestAddress{0x1000}, 16);
    mq = fresh;
    auto q = VirtQueue::create(mem, mq.config(), false, true);
    mq.add_chain(bufs);
    auto p = q->pop();
    EXPECT_TRUE((*p)->chain.ok());
    return parse_block_request(mem, *(*p)->chain, limits);
  }
  GuestAddress header(uint32_t type, uint64_t sector) {
    auto a = arena.alloc(16);
    (void)mem.write_obj(a, ReqHeader{type, 0, sector});
    return a;
  }
  GuestMemory mem;
  MockQueue mq{mem, GuestAddress{0x1000}, 16};
  GuestArena arena{0x100000, 0x800000};
};

TEST_F(BlockParseTest, Read) {
  auto d = arena.alloc(1024), s = arena.alloc(1);
  auto p = parse({{header(kTypeIn, 3), 16, false}, {d, 1024, true}, {s, 1, true}});
  ASSERT_EQ(p.status, kStatusOk) << p.why;
  EXPECT_EQ(p.request.kind, BlockRequestKind::read);
  EXPECT_EQ(p.request.sector, 3u);
  EXPECT_EQ(p.request.data_len, 1024u);
  ASSERT_EQ(p.request.data.size(), 1u);
  EXPECT_EQ(*p.status_addr, s);
}

TEST_F(BlockParseTest, WriteWithHeaderAndDataInOneDescriptor) {
  auto hd = arena.alloc(16 + 512);
  (void)mem.write_obj(hd, ReqHeader{kTypeOut, 1, 7});
  auto s = arena.alloc(1);
  auto p = parse({{hd, 16 + 512, false}, {s, 1, true}});
  ASSERT_EQ(p.status, kStatusOk) << p.why;
  EXPECT_EQ(p.request.kind, BlockRequestKind::write);
  EXPECT_EQ(p.request.data[0].addr.value, hd.value + 16);
  EXPECT_EQ(p.request.data_len, 512u);
}

TEST_F(BlockParseTest, StatusSharesDescriptorWithData) {
  auto ds = arena.alloc(513);
  auto p = parse({{header(kTypeIn, 0), 16, false}, {ds, 513, true}});
  ASSERT_EQ(p.status, kStatusOk);
  EXPECT_EQ(p.request.data_len, 512u);
  EXPECT_EQ(p.status_addr->value, ds.value + 512);
}

TEST_F(BlockParseTest, FailsMalformedRequests) {
  auto s = arena.alloc(1), d = arena.alloc(4096);
  EXPECT_FALSE(parse({{header(kTypeIn, 0), 16, false}}).status_addr);  // no status byte
  EXPECT_EQ(parse({{header(kTypeIn, 0), 8, false}, {s, 1, true}}).status, kStatusIoErr);  // short header
  EXPECT_EQ(parse({{header(kTypeIn, 0), 16, false}, {d, 100, true}, {s, 1, true}}).status,
            kStatusIoErr);  // not whole sectors
  EXPECT_EQ(parse({{header(kTypeIn, 2047), 16, false}, {d, 1024, true}, {s, 1, true}}).status,
            kStatusIoErr);  // past the end
  EXPECT_EQ(parse({{header(kTypeIn, ~0ull), 16, false}, {d, 512, true}, {s, 1, true}}).status,
            kStatusIoErr);  // sector overflow
  EXPECT_EQ(parse({{header(99, 0), 16, false}, {s, 1, true}}).status, kStatusUnsupported);
  EXPECT_EQ(parse({{header(kTypeOut, 0), 16, false}, {d, 512, false}, {s, 1, true}},
                  BlockLimits{2048, true}).status,
            kStatusIoErr);  // read-only
}

TEST_F(BlockParseTest, DiscardSegments) {
  auto s = arena.alloc(1), seg = arena.alloc(32);
  (void)mem.write_obj(seg, Segment{8, 16, 0});
  auto p = parse({{header(kTypeDiscard, 0), 16, false}, {seg, 16, false}, {s, 1, true}});
  ASSERT_EQ(p.status, kStatusOk) << p.why;
  EXPECT_EQ(p.request.sector, 8u);
  EXPECT_EQ(p.request.segment_sectors, 16u);
  (void)mem.write_obj(seg, Segment{8, 16, kSegmentUnmap});  // unmap is for write-zeroes only
  EXPECT_EQ(parse({{header(kTypeDiscard, 0), 16, false}, {seg, 16, false}, {s, 1, true}}).status,
            kStatusUnsupported);
  EXPECT_EQ(parse({{header(kTypeWriteZeroes, 0), 16, false}, {seg, 16, false}, {s, 1, true}}).status,
            kStatusOk);
  EXPECT_EQ(parse({{header(kTypeDiscard, 0), 16, false}, {seg, 32, false}, {s, 1, true}}).status,
            kStatusUnsupported);  // two segments
  (void)mem.write_obj(seg, Segment{2040, 16, 0});
  EXPECT_EQ(parse({{header(kTypeDiscard, 0), 16, false}, {seg, 16, false}, {s, 1, true}}).status,
            kStatusIoErr);
}

// ---- device through the MMIO transport, on both engines -------------------------------------

class BlockDeviceTest : public ::testing::TestWithParam<BlockEngine::Kind> {
 protected:
  void SetUp() override {
    mem = make_memory();
    path = make_disk();
  }
  void TearDown() override {
    transport.reset();
    ::unlink(path.c_str());
  }
  void start(bool read_only = false, uint16_t qsize = 16, uint64_t features = kFeatureVersion1) {
    BlockDeviceOptions o;
    o.path = path;
    o.read_only = read_only;
    o.serial = "flick-serial-0001";
    o.engine = GetParam();
    o.queue_size = qsize;
    o.engine_depth = 8;
    auto d = BlockDevice::open(o);
    ASSERT_TRUE(d.ok()) << d.error().describe();
    dev = *d;
    irq = std::make_shared<CountingInterrupt>();
    mq = MockQueue(mem, GuestAddress{0x1000}, qsize);
    auto t = MmioTransport::create(dev, &mem, irq);
    transport = std::move(*t);
    uint32_t s = init_device(*transport, features, {&mq});
    ASSERT_TRUE(s & kStatusDriverOk) << s;
  }
  struct Req {
    uint16_t head;
    GuestAddress data;
    GuestAddress status;
  };
  Req request(uint32_t type, uint64_t sector, uint32_t data_len, bool device_writes) {
    Req r;
    auto h = arena.alloc(16);
    (void)mem.write_obj(h, ReqHeader{type, 0, sector});
    r.data = arena.alloc(data_len ? data_len : 1);
    r.status = arena.alloc(1);
    (void)mem.write_obj(r.status, uint8_t{0xff});
    std::vector<Buffer> bufs{{h, 16, false}};
    if (data_len) bufs.push_back({r.data, data_len, device_writes});
    bufs.push_back({r.status, 1, true});
    r.head = mq.add_chain(bufs);
    return r;
  }
  uint8_t status_of(const Req& r) { return *mem.read_obj<uint8_t>(r.status); }
  bool wait_used(uint16_t n) { return eventually([&] { return mq.used_idx() == n; }); }

  GuestMemory mem;
  std::string path;
  std::shared_ptr<BlockDevice> dev;
  std::shared_ptr<CountingInterrupt> irq;
  MockQueue mq{mem, GuestAddress{0x1000}, 16};
  std::unique_ptr<MmioTransport> transport;
  GuestArena arena{0x100000, 0x800000};
};

TEST_P(BlockDeviceTest, ConfigAndFeatures) {
  start();
  uint8_t cap[8];
  transport->read(mmio::kConfig, cap);
  uint64_t sectors;
  std::memcpy(&sectors, cap, 8);
  EXPECT_EQ(sectors, kDiskBytes / 512);
  EXPECT_STREQ(dev->engine_name(), GetParam() == BlockEngine::Kind::sync ? "sync" : "io_uring");
  EXPECT_FALSE(dev->features() & (1u << 5));
}

TEST_P(BlockDeviceTest, WriteThenReadBack) {
  start();
  auto w = request(kTypeOut, 4, 1024, false);
  std::vector<uint8_t> pattern(1024);
  for (size_t i = 0; i < pattern.size(); i++) pattern[i] = static_cast<uint8_t>(i * 7);
  (void)mem.write(w.data, std::as_bytes(std::span(pattern)));
  notify(*transport, 0);
  ASSERT_TRUE(wait_used(1));
  EXPECT_EQ(status_of(w), kStatusOk);
  EXPECT_EQ(mq.used(0).len, 1u);
  EXPECT_EQ(file_bytes(path, 4 * 512, 1024), pattern);

  auto r = request(kTypeIn, 4, 1024, true);
  notify(*transport, 0);
  ASSERT_TRUE(wait_used(2));
  EXPECT_EQ(status_of(r), kStatusOk);
  EXPECT_EQ(mq.used(1).len, 1025u);
  std::vector<uint8_t> back(1024);
  (void)mem.read(r.data, std::as_writable_bytes(std::span(back)));
  EXPECT_EQ(back, pattern);
  EXPECT_TRUE(irq->wait_for(1));
}

TEST_P(BlockDeviceTest, ManyRequestsInFlightWithIndirectAndEventIdx) {
  start(false, 64, kFeatureVersion1 | kFeatureRingIndirectDesc | kFeatureRingEventIdx);
  std::vector<Req> reqs;
  for (int i = 0; i < 40; i++) {
    // Indirect: header, data, status in one table.
    Req r;
    auto h = arena.alloc(16);
    (void)mem.write_obj(h, ReqHeader{kTypeIn, 0, static_cast<uint64_t>(i)});
    r.data = arena.alloc(512);
    r.status = arena.alloc(1);
    r.head = mq.add_indirect_chain({{h, 16, false}, {r.data, 512, true}, {r.status, 1, true}},
                                   arena.alloc(48));
    reqs.push_back(r);
  }
  notify(*transport, 0);
  ASSERT_TRUE(wait_used(40));
  for (int i = 0; i < 40; i++) {
    EXPECT_EQ(status_of(reqs[i]), kStatusOk);
    EXPECT_EQ(*mem.read_obj<uint8_t>(reqs[i].data), static_cast<uint8_t>(i));  // sector i
  }
}

// A snapshot's quiesce: requests the driver queued (not even notified) are taken and every
// one in flight finishes before it returns, so the used ring is the whole queue state; a
// transport loaded with the saved registers then goes on from there.
TEST_P(BlockDeviceTest, QuiesceAnswersEveryRequestAndALoadedTransportGoesOn) {
  start(false, 64, kFeatureVersion1 | kFeatureRingEventIdx);
  std::vector<Req> reqs;
  for (int i = 0; i < 20; i++) reqs.push_back(request(kTypeIn, static_cast<uint64_t>(i), 4096, true));
  auto saved = transport->save();  // no notify: the guest's vCPUs "paused" right after queuing
  ASSERT_TRUE(saved.ok()) << saved.error().describe();
  EXPECT_EQ(mq.used_idx(), 20);
  for (const auto& r : reqs) EXPECT_EQ(status_of(r), kStatusOk);
  transport.reset();

  BlockDeviceOptions o;
  o.path = path;
  o.engine = GetParam();
  o.queue_size = 64;
  auto d = BlockDevice::open(o);
  ASSERT_TRUE(d.ok()) << d.error().describe();
  transport = MmioTransport::create(*d, &mem, irq).value();
  ASSERT_TRUE(transport->load(*saved).ok());
  auto w = request(kTypeOut, 2, 512, false);
  notify(*transport, 0);
  ASSERT_TRUE(wait_used(21));
  EXPECT_EQ(status_of(w), kStatusOk);
}

TEST_P(BlockDeviceTest, FullRing) {
  // Every descriptor in use: 16 indirect chains on a queue of 16, all made available at once.
  start(false, 16, kFeatureVersion1 | kFeatureRingIndirectDesc);
  std::vector<GuestAddress> status;
  for (int i = 0; i < 16; i++) {
    auto h = arena.alloc(16);
    (void)mem.write_obj(h, ReqHeader{kTypeIn, 0, static_cast<uint64_t>(i)});
    status.push_back(arena.alloc(1));
    (void)mem.write_obj(status.back(), uint8_t{0xff});
    mq.add_indirect_chain({{h, 16, false}, {arena.alloc(512), 512, true}, {status.back(), 1, true}},
                          arena.alloc(48));
  }
  notify(*transport, 0);
  ASSERT_TRUE(wait_used(16));
  for (auto s : status) EXPECT_EQ(*mem.read_obj<uint8_t>(s), kStatusOk);
}

TEST_P(BlockDeviceTest, GetIdFlushDiscardWriteZeroes) {
  start();
  auto id = request(kTypeGetId, 0, 20, true);
  auto fl = request(kTypeFlush, 0, 0, false);
  notify(*transport, 0);
  ASSERT_TRUE(wait_used(2));
  EXPECT_EQ(status_of(id), kStatusOk);
  char got[21] = {};
  (void)mem.read(id.data, std::as_writable_bytes(std::span(got, 20)));
  EXPECT_STREQ(got, "flick-serial-0001");
  EXPECT_EQ(status_of(fl), kStatusOk);

  // Discard 8 sectors at 16 (4 KiB aligned), write-zeroes 2 sectors at 40.
  Req d;
  auto h = arena.alloc(16), seg = arena.alloc(16);
  (void)mem.write_obj(h, ReqHeader{kTypeDiscard, 0, 0});
  (void)mem.write_obj(seg, Segment{16, 8, 0});
  d.status = arena.alloc(1);
  mq.add_chain({{h, 16, false}, {seg, 16, false}, {d.status, 1, true}});
  Req z;
  auto h2 = arena.alloc(16), seg2 = arena.alloc(16);
  (void)mem.write_obj(h2, ReqHeader{kTypeWriteZeroes, 0, 0});
  (void)mem.write_obj(seg2, Segment{40, 2, 0});
  z.status = arena.alloc(1);
  mq.add_chain({{h2, 16, false}, {seg2, 16, false}, {z.status, 1, true}});
  notify(*transport, 0);
  ASSERT_TRUE(wait_used(4));
  EXPECT_EQ(status_of(d), kStatusOk);
  EXPECT_EQ(status_of(z), kStatusOk);
  EXPECT_EQ(file_bytes(path, 16 * 512, 4096), std::vector<uint8_t>(4096, 0));
  EXPECT_EQ(file_bytes(path, 40 * 512, 1024), std::vector<uint8_t>(1024, 0));
  EXPECT_EQ(file_bytes(path, 42 * 512, 1)[0], 42);  // the neighbour is untouched
}

TEST_P(BlockDeviceTest, ReadOnlyDisk) {
  start(/*read_only=*/true);
  EXPECT_TRUE(dev->features() & (1u << 5));
  auto w = request(kTypeOut, 0, 512, false);
  auto r = request(kTypeIn, 1, 512, true);
  notify(*transport, 0);
  ASSERT_TRUE(wait_used(2));
  EXPECT_EQ(status_of(w), kStatusIoErr);
  EXPECT_EQ(status_of(r), kStatusOk);
  EXPECT_EQ(file_bytes(path, 0, 1)[0], 0);
}

TEST_P(BlockDeviceTest, MalformedChainsFailAloneAndDeviceCarriesOn) {
  start();
  auto a = arena.alloc(16);
  // A loop, then a buffer outside guest memory, then a good request.
  Req good;
  auto h = arena.alloc(16);
  (void)mem.write_obj(h, ReqHeader{kTypeIn, 0, 0});
  good.data = arena.alloc(512);
  good.status = arena.alloc(1);
  mq.set_desc(0, a.value, 16, kDescNext, 1);  // 0 -> 1 -> 0: a loop
  mq.set_desc(1, a.value, 16, kDescNext, 0);
  mq.set_desc(2, 0x7ffff000, 16, 0, 0);       // outside the 16 MiB of guest memory
  mq.set_desc(3, h.value, 16, kDescNext, 4);
  mq.set_desc(4, good.data.value, 512, kDescWrite | kDescNext, 5);
  mq.set_desc(5, good.status.value, 1, kDescWrite, 0);
  mq.publish(0);
  mq.publish(2);
  mq.publish(3);
  notify(*transport, 0);
  ASSERT_TRUE(wait_used(3));
  EXPECT_EQ(mq.used(0).id, 0u);
  EXPECT_EQ(mq.used(0).len, 0u);
  EXPECT_EQ(mq.used(1).id, 2u);
  EXPECT_EQ(mq.used(1).len, 0u);
  EXPECT_EQ(mq.used(2).id, 3u);
  EXPECT_EQ(status_of(good), kStatusOk);
  EXPECT_FALSE(transport->status() & kStatusNeedsReset);
}

TEST_P(BlockDeviceTest, RingInconsistencySetsNeedsReset) {
  start();
  mq.set_avail_idx(100);
  notify(*transport, 0);
  ASSERT_TRUE(eventually([&] { return (transport->status() & kStatusNeedsReset) != 0; }));
  EXPECT_TRUE(transport->interrupt_status() & mmio::kInterruptConfigChange);
  // The device stopped using the queue; a reset brings it back.
  mmio_write(*transport, mmio::kStatus, 0);
  mq = MockQueue(mem, GuestAddress{0x1000}, 16);
  ASSERT_TRUE(init_device(*transport, kFeatureVersion1, {&mq}) & kStatusDriverOk);
  auto r = request(kTypeIn, 0, 512, true);
  notify(*transport, 0);
  ASSERT_TRUE(wait_used(1));
  EXPECT_EQ(status_of(r), kStatusOk);
}

TEST_P(BlockDeviceTest, ResetWithRequestsPendingThenReactivate) {
  start();
  for (int i = 0; i < 16; i++) request(kTypeIn, static_cast<uint64_t>(i), 512, true);
  notify(*transport, 0);
  mmio_write(*transport, mmio::kStatus, 0);  // may race with the I/O: must not crash or hang
  mq = MockQueue(mem, GuestAddress{0x1000}, 16);
  ASSERT_TRUE(init_device(*transport, kFeatureVersion1, {&mq}) & kStatusDriverOk);
  auto r = request(kTypeIn, 0, 512, true);
  notify(*transport, 0);
  ASSERT_TRUE(wait_used(1));
  EXPECT_EQ(status_of(r), kStatusOk);
}

INSTANTIATE_TEST_SUITE_P(Engines, BlockDeviceTest,
                         ::testing::Values(BlockEngine::Kind::sync, BlockEngine::Kind::io_uring),
                         [](const auto& param_info) {
                           return param_info.param == BlockEngine::Kind::sync ? "sync" : "io_uring";
                         });

// Makes io_uring_setup fail with EPERM in this process, as kernel.io_uring_disabled=2 or a
// container's seccomp profile would.
void deny_io_uring() {
  sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof f / sizeof f[0]), f};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    std::_Exit(3);
}

// Runs in a child process: with io_uring refused, the device must fall back to the
// synchronous engine (saying so) and still serve requests.
void serve_without_io_uring(const std::string& path) {
  deny_io_uring();
  GuestMemory mem = make_memory();
  BlockDeviceOptions o;
  o.path = path;
  auto dev = BlockDevice::open(o);
  ::unlink(path.c_str());  // the device holds it open; nothing is left behind by _Exit
  if (!dev) std::_Exit(4);
  MockQueue mq(mem, GuestAddress{0x1000}, 16);
  auto t = MmioTransport::create(*dev, &mem, std::make_shared<CountingInterrupt>()).value();
  if (!(init_device(*t, kFeatureVersion1, {&mq}) & kStatusDriverOk)) std::_Exit(5);
  if (std::string((*dev)->engine_name()) != "sync") std::_Exit(6);
  GuestArena arena(0x100000, 0x100000);
  auto h = arena.alloc(16), d = arena.alloc(512), s = arena.alloc(1);
  (void)mem.write_obj(h, ReqHeader{kTypeIn, 0, 3});
  mq.add_chain({{h, 16, false}, {d, 512, true}, {s, 1, true}});
  notify(*t, 0);
  if (!eventually([&] { return mq.used_idx() == 1; })) std::_Exit(7);
  if (*mem.read_obj<uint8_t>(s) != kStatusOk || *mem.read_obj<uint8_t>(d) != 3) std::_Exit(8);
  std::_Exit(0);
}

TEST(BlockEngineDeathTest, FallsBackToSyncEngineWhenIoUringIsRefused) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::string path = make_disk();
  EXPECT_EXIT(serve_without_io_uring(path), ::testing::ExitedWithCode(0),
              "io_uring unavailable.*using the synchronous block engine");
  ::unlink(path.c_str());
}

TEST(BlockEngineTest, FlushReachesStableStorageAfterWrites) {
  // fdatasync through io_uring with IO_DRAIN: the flush completes after the writes before it.
  std::string path = make_disk();
  int fd = ::open(path.c_str(), O_RDWR);
  auto e = make_uring_block_engine(fd, 8);
  ASSERT_TRUE(e.ok());
  std::vector<std::pair<uint64_t, int64_t>> done;
  (*e)->set_completion([&](uint64_t c, int64_t r) { done.emplace_back(c, r); });
  std::vector<uint8_t> buf(4096, 0xab);
  for (uint64_t i = 0; i < 4; i++)
    ASSERT_TRUE((*e)->submit({BlockOp::write, i * 4096, 0, {{buf.data(), buf.size()}}, i}).ok());
  ASSERT_TRUE((*e)->submit({BlockOp::flush, 0, 0, {}, 99}).ok());
  (*e)->kick();
  while (done.size() < 5) {
    pollfd p{(*e)->completion_fd(), POLLIN, 0};
    ::poll(&p, 1, 1000);
    (*e)->reap();
  }
  EXPECT_EQ(done.back().first, 99u);  // drained behind the writes
  for (auto& [c, r] : done) EXPECT_EQ(r, c == 99 ? 0 : 4096);
  ::close(fd);
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace flick::virtio::testing
