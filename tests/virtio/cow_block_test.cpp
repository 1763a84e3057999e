// virtio-blk on a copy-on-write disk (cow_disk.h), driven through the MMIO transport and a
// mock split queue, on both engines.
#include "virtio/block/block_device.h"
#include "virtio/block/block_request.h"
#include "blk_wire.h"
#include "support/temp_dir.h"
#include "virtio_test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace flick::virtio::testing {
namespace {

using namespace blk;


// Not a multiple of 4 KiB or 64 KiB: the last cluster is short.
constexpr uint64_t kBaseBytes = (1 << 20) + 1536;
constexpr uint64_t kSlotBytes = 0x20000;
constexpr uint32_t kMaxData = 64 << 10;
constexpr int kSlots = 8;

std::vector<uint8_t> read_file(const std::string& path) {
  std::string data = flick::testing::read_file(path);
  return {data.begin(), data.end()};
}

// Entries of /proc/self/fd whose target contains `needle`.
std::vector<std::string> fds_matching(const std::string& needle) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(e.path(), ec).string();
    if (!ec && target.find(needle) != std::string::npos) out.push_back(e.path().filename());
  }
  return out;
}

size_t open_fd_count() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) n++;
  return n;
}

// The driver side for one device: kSlots fixed request slots in guest memory, each with a
// header, a discard segment, a status byte and up to kMaxData of data.
class Driver {
 public:
  Driver(GuestMemory& mem, std::shared_ptr<BlockDevice> dev, uint64_t ring, uint64_t bufs)
      : mem_(mem), dev_(std::move(dev)), mq_(mem, GuestAddress{ring}, 64), bufs_(bufs) {
    irq_ = std::make_shared<CountingInterrupt>();
    transport_ = MmioTransport::create(dev_, &mem_, irq_).value();
    ok_ = init_device(*transport_, kFeatureVersion1, {&mq_}) & kStatusDriverOk;
  }
  bool ok() const { return ok_; }

  void read(int slot, uint64_t sector, uint32_t len) {
    add(slot, kTypeIn, sector, {{data(slot), len, true}});
  }
  void write(int slot, uint64_t sector, std::span<const uint8_t> bytes) {
    (void)mem_.write(data(slot), std::as_bytes(bytes));
    add(slot, kTypeOut, sector, {{data(slot), static_cast<uint32_t>(bytes.size()), false}});
  }
  void zero(int slot, uint32_t type, uint64_t sector, uint32_t sectors, bool unmap = false) {
    GuestAddress seg{base(slot) + 16};
    (void)mem_.write_obj(seg, Segment{sector, sectors, unmap ? kSegmentUnmap : 0});
    add(slot, type, 0, {{seg, 16, false}});
  }
  void flush(int slot) { add(slot, kTypeFlush, 0, {}); }
  // Makes everything added available, waits for all of it to be used.
  bool run() {
    notify(*transport_, 0);
    return eventually([&] { return mq_.used_idx() == added_; });
  }
  uint8_t status(int slot) { return *mem_.read_obj<uint8_t>(GuestAddress{base(slot) + 32}); }
  std::vector<uint8_t> bytes(int slot, uint32_t len) {
    std::vector<uint8_t> out(len);
    (void)mem_.read(data(slot), std::as_writable_bytes(std::span(out)));
    return out;
  }
  // One request at a time, for the simple tests.
  std::vector<uint8_t> read_now(uint64_t offset, uint32_t len) {
    read(0, offset / kSectorSize, len);
    EXPECT_TRUE(run());
    EXPECT_EQ(status(0), kStatusOk);
    return bytes(0, len);
  }
  void write_now(uint64_t offset, std::span<const uint8_t> b) {
    write(0, offset / kSectorSize, b);
    EXPECT_TRUE(run());
    EXPECT_EQ(status(0), kStatusOk);
  }
  void zero_now(uint32_t type, uint64_t offset, uint64_t len, bool unmap = false) {
    zero(0, type, offset / kSectorSize, static_cast<uint32_t>(len / kSectorSize), unmap);
    EXPECT_TRUE(run());
    EXPECT_EQ(status(0), kStatusOk);
  }
  void destroy() { transport_.reset(); }

 private:
  uint64_t base(int slot) const { return bufs_ + static_cast<uint64_t>(slot) * kSlotBytes; }
  GuestAddress data(int slot) const { return GuestAddress{base(slot) + 4096}; }
  void add(int slot, uint32_t type, uint64_t sector, std::vector<Buffer> middle) {
    GuestAddress h{base(slot)}, s{base(slot) + 32};
    (void)mem_.write_obj(h, ReqHeader{type, 0, sector});
    (void)mem_.write_obj(s, uint8_t{0xff});
    std::vector<Buffer> bufs{{h, 16, false}};
    bufs.insert(bufs.end(), middle.begin(), middle.end());
    bufs.push_back({s, 1, true});
    mq_.add_chain(bufs);
    added_++;
  }

  GuestMemory& mem_;
  std::shared_ptr<BlockDevice> dev_;
  MockQueue mq_;
  uint64_t bufs_;
  std::shared_ptr<CountingInterrupt> irq_;
  std::unique_ptr<MmioTransport> transport_;
  uint16_t added_ = 0;
  bool ok_ = false;
};

class CowBlockTest : public ::testing::TestWithParam<BlockEngine::Kind> {
 protected:
  void SetUp() override {
    mem = make_memory();
    char tmpl[] = "/tmp/flick-cow-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    overlay_dir = dir + "/overlays";
    std::filesystem::create_directory(overlay_dir);
    base_path = dir + "/base.ext4";
    base.resize(kBaseBytes);
    std::mt19937 rng(7);
    for (auto& b : base) b = static_cast<uint8_t>(rng() | 1);  // never zero: zeros stand out
    std::ofstream(base_path, std::ios::binary)
        .write(reinterpret_cast<const char*>(base.data()), static_cast<std::streamsize>(base.size()));
  }
  void TearDown() override {
    drivers.clear();
    std::filesystem::remove_all(dir);
  }
  std::shared_ptr<BlockDevice> open(uint64_t cluster = CowDisk::kDefaultClusterBytes) {
    BlockDeviceOptions o;
    o.path = "/nonexistent/ignored";
    o.cow_base = base_path;
    o.cow_overlay_dir = overlay_dir;
    o.cow_cluster_bytes = cluster;
    o.engine = GetParam();
    o.queue_size = 64;
    o.engine_depth = 8;
    auto d = BlockDevice::open(o);
    EXPECT_TRUE(d.ok()) << d.error().describe();
    return d.ok() ? *d : nullptr;
  }
  Driver& start(uint64_t cluster = CowDisk::kDefaultClusterBytes) {
    auto dev = open(cluster);
    uint64_t n = drivers.size();
    drivers.push_back(std::make_unique<Driver>(mem, dev, 0x1000 + n * 0x10000,
                                               0x100000 + n * kSlots * kSlotBytes));
    EXPECT_TRUE(drivers.back()->ok());
    return *drivers.back();
  }
  std::vector<uint8_t> base_bytes(uint64_t off, uint64_t len) {
    return {base.begin() + static_cast<long>(off), base.begin() + static_cast<long>(off + len)};
  }

  GuestMemory mem;
  std::string dir, overlay_dir, base_path;
  std::vector<uint8_t> base;
  std::vector<std::unique_ptr<Driver>> drivers;
};

TEST_P(CowBlockTest, FreshDiskReadsAsTheBaseAndHasItsSize) {
  auto dev = open();
  ASSERT_TRUE(dev);
  EXPECT_EQ(dev->size_bytes(), kBaseBytes);
  EXPECT_EQ(dev->capacity_sectors(), kBaseBytes / kSectorSize);
  ASSERT_NE(dev->cow_disk(), nullptr);
  dev.reset();
  Driver& d = start();
  for (uint64_t off = 0; off < kBaseBytes; off += kMaxData) {
    uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(kMaxData, kBaseBytes - off));
    ASSERT_EQ(d.read_now(off, len), base_bytes(off, len)) << off;
  }
}

// Its overlay ends with the device: a snapshot could not be restored with the guest's writes.
TEST_P(CowBlockTest, ASnapshotQuiesceIsRefused) {
  auto dev = open();
  ASSERT_TRUE(dev);
  auto q = dev->quiesce();
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.error().code, Errc::unsupported);
  EXPECT_NE(q.error().message.find("copy-on-write"), std::string::npos) << q.error().message;
}

TEST_P(CowBlockTest, WritesReadBackAndTheBaseNeverChanges) {
  Driver& d = start();
  std::vector<uint8_t> w(3 * 4096, 0x5a);
  d.write_now(8192, w);
  EXPECT_EQ(d.read_now(8192, 3 * 4096), w);
  EXPECT_EQ(d.read_now(0, 8192), base_bytes(0, 8192));
  // The short last cluster.
  std::vector<uint8_t> tail(1024, 0x77);
  d.write_now(kBaseBytes - 1024, tail);
  EXPECT_EQ(d.read_now(kBaseBytes - 1536, 1536),
            [&] { auto v = base_bytes(kBaseBytes - 1536, 512); v.insert(v.end(), tail.begin(), tail.end()); return v; }());
  EXPECT_EQ(read_file(base_path), base);

  // The base is held read-only.
  auto fds = fds_matching(base_path);
  ASSERT_EQ(fds.size(), 1u);
  std::ifstream info("/proc/self/fdinfo/" + fds[0]);
  std::string line;
  int flags = -1;
  while (std::getline(info, line))
    if (line.rfind("flags:", 0) == 0) flags = std::stoi(line.substr(6), nullptr, 8);
  EXPECT_EQ(flags & O_ACCMODE, O_RDONLY);
}

TEST_P(CowBlockTest, PartialClusterWritesKeepTheNeighbouringBaseBytes) {
  Driver& d = start(64 << 10);  // big clusters make the copy-up visible
  std::vector<uint8_t> w(1024, 0xee);
  d.write_now(65536 + 3 * 512, w);  // inside cluster 1
  auto got = d.read_now(65536, 65536);
  auto want = base_bytes(65536, 65536);
  std::copy(w.begin(), w.end(), want.begin() + 3 * 512);
  EXPECT_EQ(got, want);
  EXPECT_EQ(drivers[0]->read_now(0, 4096), base_bytes(0, 4096));
  // A write straddling two clusters, partial at both ends.
  std::vector<uint8_t> s(8192, 0x11);
  d.write_now(3 * 65536 - 4096, s);
  want = base_bytes(2 * 65536, 2 * 65536);
  std::copy(s.begin(), s.end(), want.begin() + 65536 - 4096);
  EXPECT_EQ(d.read_now(2 * 65536, 65536), std::vector<uint8_t>(want.begin(), want.begin() + 65536));
  EXPECT_EQ(d.read_now(3 * 65536, 65536), std::vector<uint8_t>(want.begin() + 65536, want.end()));
  EXPECT_EQ(read_file(base_path), base);
}

TEST_P(CowBlockTest, ReadSpanningWrittenAndUnwrittenClusters) {
  Driver& d = start();
  std::vector<uint8_t> a(4096, 0xa1), b(512, 0xb2);
  d.write_now(4 * 4096, a);
  d.write_now(6 * 4096 + 1024, b);
  auto want = base_bytes(3 * 4096, 5 * 4096);
  std::copy(a.begin(), a.end(), want.begin() + 4096);
  std::copy(b.begin(), b.end(), want.begin() + 3 * 4096 + 1024);
  EXPECT_EQ(d.read_now(3 * 4096, 5 * 4096), want);
  // Misaligned to clusters on both ends.
  EXPECT_EQ(d.read_now(3 * 4096 + 512, 3 * 4096),
            std::vector<uint8_t>(want.begin() + 512, want.begin() + 512 + 3 * 4096));
}

TEST_P(CowBlockTest, DiscardAndWriteZeroesHideTheBase) {
  Driver& d = start();
  d.zero_now(kTypeDiscard, 0, 8192);
  d.zero_now(kTypeWriteZeroes, 5 * 4096 + 512, 1024);         // inside one cluster
  d.zero_now(kTypeWriteZeroes, 9 * 4096 - 512, 4096 + 1024, true);  // over three, unmap
  EXPECT_EQ(d.read_now(0, 8192), std::vector<uint8_t>(8192, 0));
  auto want = base_bytes(5 * 4096, 4096);
  std::fill(want.begin() + 512, want.begin() + 1536, 0);
  EXPECT_EQ(d.read_now(5 * 4096, 4096), want);
  want = base_bytes(8 * 4096, 3 * 4096);
  std::fill(want.begin() + 4096 - 512, want.begin() + 2 * 4096 + 512, 0);
  EXPECT_EQ(d.read_now(8 * 4096, 3 * 4096), want);
  EXPECT_EQ(read_file(base_path), base);
}

TEST_P(CowBlockTest, ConcurrentPartialWritesToOneClusterAllLand) {
  // Eight sector writes into the same unwritten 64 KiB cluster, all in flight at once: each
  // needs a copy-up, and none may undo another.
  Driver& d = start(64 << 10);
  for (int i = 0; i < kSlots; i++) {
    std::vector<uint8_t> w(512, static_cast<uint8_t>(0xc0 + i));
    d.write(i, 2 * 128 + 1 + static_cast<uint64_t>(i) * 3, w);
  }
  ASSERT_TRUE(d.run());
  for (int i = 0; i < kSlots; i++) EXPECT_EQ(d.status(i), kStatusOk);
  auto want = base_bytes(2 * 65536, 65536);
  for (int i = 0; i < kSlots; i++)
    std::fill_n(want.begin() + (1 + i * 3) * 512, 512, static_cast<uint8_t>(0xc0 + i));
  EXPECT_EQ(d.read_now(2 * 65536, 65536), want);
}

TEST_P(CowBlockTest, TwoDevicesOnOneBaseSeeOnlyTheirOwnWrites) {
  Driver& a = start();
  Driver& b = start();
  std::vector<uint8_t> wa(4096, 0xaa), wb(4096, 0xbb);
  a.write_now(0, wa);
  b.write_now(4096, wb);
  EXPECT_EQ(a.read_now(0, 8192), [&] { auto v = wa; auto r = base_bytes(4096, 4096); v.insert(v.end(), r.begin(), r.end()); return v; }());
  EXPECT_EQ(b.read_now(0, 8192), [&] { auto v = base_bytes(0, 4096); v.insert(v.end(), wb.begin(), wb.end()); return v; }());
  EXPECT_EQ(read_file(base_path), base);
}

TEST_P(CowBlockTest, OverlayVanishesWithTheDeviceAndTheNextStartIsBlank) {
  size_t fds_before = open_fd_count();
  {
    Driver& d = start();
    std::vector<uint8_t> w(65536, 0x42);
    d.write_now(0, w);
    d.flush(0);
    ASSERT_TRUE(d.run());
    EXPECT_EQ(d.status(0), kStatusOk);
    // Alive: an unnamed file in the overlay directory, nothing listed there.
    EXPECT_EQ(fds_matching(overlay_dir + "/").size(), 1u);
    EXPECT_TRUE(std::filesystem::is_empty(overlay_dir));
    drivers.clear();
  }
  EXPECT_EQ(fds_matching(overlay_dir + "/").size(), 0u);
  EXPECT_EQ(open_fd_count(), fds_before);
  EXPECT_TRUE(std::filesystem::is_empty(overlay_dir));
  Driver& again = start();
  EXPECT_EQ(again.read_now(0, 65536), base_bytes(0, 65536));
}

TEST_P(CowBlockTest, DriverResetKeepsTheWrites) {
  auto dev = open();
  std::vector<uint8_t> w(4096, 0x3c);
  drivers.push_back(std::make_unique<Driver>(mem, dev, 0x1000, 0x100000));
  drivers[0]->write_now(4096, w);
  drivers[0]->destroy();  // the transport resets the device on its way out
  drivers[0] = std::make_unique<Driver>(mem, dev, 0x1000, 0x100000);
  ASSERT_TRUE(drivers[0]->ok());
  EXPECT_EQ(drivers[0]->read_now(4096, 4096), w);
}

TEST_P(CowBlockTest, OverlayDirectoryErrorOrDefault) {
  BlockDeviceOptions o;
  o.cow_base = base_path;
  o.cow_overlay_dir = dir + "/missing";
  o.engine = GetParam();
  auto bad = BlockDevice::open(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().describe().find("overlay"), std::string::npos) << bad.error().describe();
  o.cow_overlay_dir.clear();  // the base's directory
  EXPECT_TRUE(BlockDevice::open(o).ok());
}

// Seeded random batches of non-overlapping reads, writes, discards, write-zeroes and flushes,
// all in flight together, checked against an in-memory model of the disk.
class CowModelTest
    : public ::testing::TestWithParam<std::tuple<BlockEngine::Kind, uint64_t>> {};

TEST_P(CowModelTest, RandomOperationsMatchAModel) {
  auto [engine, cluster] = GetParam();
  GuestMemory mem = make_memory();
  char tmpl[] = "/tmp/flick-cow-model-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl, base_path = dir + "/base.img";
  struct RemoveDir {
    std::string path;
    ~RemoveDir() { std::filesystem::remove_all(path); }
  } cleanup{dir};  // also when an assertion returns early
  std::mt19937_64 rng(1234 + cluster);
  std::vector<uint8_t> base(kBaseBytes);
  for (auto& b : base) b = static_cast<uint8_t>(rng());
  std::ofstream(base_path, std::ios::binary)
      .write(reinterpret_cast<const char*>(base.data()), static_cast<std::streamsize>(base.size()));
  BlockDeviceOptions o;
  o.cow_base = base_path;
  o.engine = engine;
  o.cow_cluster_bytes = cluster;
  o.queue_size = 64;
  o.engine_depth = 8;
  auto dev = BlockDevice::open(o).value();
  auto driver = std::make_unique<Driver>(mem, dev, 0x1000, 0x100000);
  ASSERT_TRUE(driver->ok());

  std::vector<uint8_t> model = base;
  const uint64_t sectors = kBaseBytes / kSectorSize;
  struct Op {
    uint32_t type;
    uint64_t sector, count;
    std::vector<uint8_t> data;
  };
  int ops = 0;
  for (int batch = 0; batch < 600; batch++) {
    std::vector<Op> todo;
    int n = 1 + static_cast<int>(rng() % kSlots);
    for (int i = 0; i < n; i++) {
      Op op;
      uint64_t pick = rng() % 10;
      op.type = pick < 4 ? kTypeIn : pick < 8 ? kTypeOut : pick < 9 ? kTypeWriteZeroes : kTypeDiscard;
      // Mostly short, sometimes cluster-sized runs; lengths in sectors.
      op.count = 1 + (rng() % 4 == 0 ? rng() % (kMaxData / kSectorSize) : rng() % 16);
      op.sector = rng() % sectors;
      op.count = std::min(op.count, sectors - op.sector);
      if (rng() % 20 == 0) op.type = kTypeFlush;
      bool clash = false;  // in-flight requests must not overlap, or the model is ambiguous
      for (const Op& o2 : todo)
        if (op.type != kTypeFlush && o2.type != kTypeFlush && op.sector < o2.sector + o2.count &&
            o2.sector < op.sector + op.count)
          clash = true;
      if (clash) continue;
      if (op.type == kTypeOut) {
        op.data.resize(op.count * kSectorSize);
        for (auto& b : op.data) b = static_cast<uint8_t>(rng());
      }
      todo.push_back(std::move(op));
    }
    for (size_t i = 0; i < todo.size(); i++) {
      const Op& op = todo[i];
      int slot = static_cast<int>(i);
      switch (op.type) {
        case kTypeIn: driver->read(slot, op.sector, static_cast<uint32_t>(op.count * kSectorSize)); break;
        case kTypeOut: driver->write(slot, op.sector, op.data); break;
        case kTypeFlush: driver->flush(slot); break;
        default:
          driver->zero(slot, op.type, op.sector, static_cast<uint32_t>(op.count),
                       op.type == kTypeWriteZeroes && rng() % 2 == 0);  // unmap: write-zeroes only
      }
    }
    ASSERT_TRUE(driver->run()) << "batch " << batch;
    for (size_t i = 0; i < todo.size(); i++) {
      const Op& op = todo[i];
      int slot = static_cast<int>(i);
      ASSERT_EQ(driver->status(slot), kStatusOk) << "batch " << batch << " op " << i;
      auto at = model.begin() + static_cast<long>(op.sector * kSectorSize);
      auto len = static_cast<long>(op.count * kSectorSize);
      if (op.type == kTypeIn)
        ASSERT_EQ(driver->bytes(slot, static_cast<uint32_t>(len)), std::vector<uint8_t>(at, at + len))
            << "batch " << batch << " read at sector " << op.sector << " x" << op.count;
      else if (op.type == kTypeOut)
        std::copy(op.data.begin(), op.data.end(), at);
      else if (op.type != kTypeFlush)
        std::fill(at, at + len, 0);
      ops++;
    }
  }
  EXPECT_GT(ops, 2000);
  // The whole disk, then the untouched base.
  for (uint64_t off = 0; off < kBaseBytes; off += kMaxData) {
    uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(kMaxData, kBaseBytes - off));
    ASSERT_EQ(driver->read_now(off, len),
              std::vector<uint8_t>(model.begin() + static_cast<long>(off),
                                   model.begin() + static_cast<long>(off + len)));
  }
  EXPECT_EQ(read_file(base_path), base);
}

std::string engine_name(BlockEngine::Kind k) { return k == BlockEngine::Kind::sync ? "sync" : "io_uring"; }

INSTANTIATE_TEST_SUITE_P(Engines, CowBlockTest,
                         ::testing::Values(BlockEngine::Kind::sync, BlockEngine::Kind::io_uring),
                         [](const auto& p) { return engine_name(p.param); });

INSTANTIATE_TEST_SUITE_P(
    EnginesAndClusters, CowModelTest,
    ::testing::Combine(::testing::Values(BlockEngine::Kind::sync, BlockEngine::Kind::io_uring),
                       ::testing::Values(uint64_t{4096}, uint64_t{65536})),
    [](const auto& p) {
      return engine_name(std::get<0>(p.param)) + "_" + std::to_string(std::get<1>(p.param) / 1024) + "k";
    });

}  // namespace
}  // namespace flick::virtio::testing
