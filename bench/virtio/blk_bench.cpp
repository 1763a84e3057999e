// virtio-blk driven from the host side (no guest): a polling "driver" keeps `depth` 4 KiB
// random reads or writes in flight through the MMIO transport and a mock split queue, and
// the device executes them with its I/O engine. Compare with fio via blk_vs_fio.sh.
//
// The disk is $FLICK_BENCH_DISK (created at 256 MiB if missing).
#include "base/event_fd.h"
#include "virtio/block/block_device.h"
#include "virtio/block/block_request.h"
#include "virtio/mmio_transport.h"
#include "virtio/testing/mock_queue.h"

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

using namespace flick;
using namespace flick::virtio;
using namespace flick::virtio::testing;

namespace {

constexpr uint64_t kDiskBytes = 256ull << 20;
constexpr uint32_t kBlock = 4096;

// The "guest" sleeps until the device interrupts it, as a real driver would, instead of
// spinning on the used ring and taking a CPU from the device and the kernel's I/O workers.
class EventFdInterrupt : public Interrupt {
 public:
  EventFdInterrupt() : fd_(EventFd::create(false).value()) {}
  void trigger() override { (void)fd_.signal(); }
  void wait() const { (void)fd_.consume(); }

 private:
  EventFd fd_;
};

std::string disk_path() {
  const char* env = std::getenv("FLICK_BENCH_DISK");
  std::string path = env ? env : "/tmp/flick-blk-bench.img";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || static_cast<uint64_t>(st.st_size) < kDiskBytes) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    std::vector<char> chunk(1 << 20, 'f');
    for (uint64_t off = 0; off < kDiskBytes; off += chunk.size())
      if (::pwrite(fd, chunk.data(), chunk.size(), static_cast<off_t>(off)) < 0) std::abort();
    ::close(fd);
  }
  return path;
}

struct Header {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

void run(benchmark::State& state, uint32_t type, BlockEngine::Kind engine, bool cow = false) {
  const auto depth = static_cast<uint16_t>(state.range(0));
  GuestMemory::Range range{0, 64 << 20};
  auto mem = GuestMemory::create(std::span(&range, 1)).value();
  BlockDeviceOptions o;
  // cow: the disk as a read-only base under a fresh copy-on-write overlay (cow_disk.h).
  (cow ? o.cow_base : o.path) = disk_path();
  o.engine = engine;
  o.queue_size = 256;
  o.engine_depth = 128;
  auto dev = BlockDevice::open(o).value();
  MockQueue mq(mem, GuestAddress{0x1000}, 256);
  auto irq = std::make_shared<EventFdInterrupt>();
  auto transport = MmioTransport::create(dev, &mem, irq).value();

  // Driver side of §3.1.1, by hand (no EVENT_IDX: the device is notified for every batch).
  auto w = [&](uint64_t off, uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    transport->write(off, b);
  };
  w(mmio::kStatus, kStatusAcknowledge | kStatusDriver);
  w(mmio::kDriverFeaturesSel, 1);
  w(mmio::kDriverFeatures, 1);
  w(mmio::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  QueueConfig c = mq.config();
  w(mmio::kQueueSel, 0);
  w(mmio::kQueueNum, c.size);
  w(mmio::kQueueDescLow, static_cast<uint32_t>(c.desc_table.value));
  w(mmio::kQueueDriverLow, static_cast<uint32_t>(c.avail_ring.value));
  w(mmio::kQueueDeviceLow, static_cast<uint32_t>(c.used_ring.value));
  w(mmio::kQueueReady, 1);
  w(mmio::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);

  // Request slot i uses descriptors 3i..3i+2 and its own header, data and status buffers.
  GuestArena arena(0x100000, 60 << 20);
  std::vector<GuestAddress> headers(depth);
  bool device_writes = type == blk::kTypeIn;
  for (uint16_t i = 0; i < depth; i++) {
    headers[i] = arena.alloc(16);
    auto data = arena.alloc(kBlock, kBlock);
    auto status = arena.alloc(1);
    auto d = static_cast<uint16_t>(3 * i);
    mq.set_desc(d, headers[i].value, 16, kDescNext, d + 1);
    mq.set_desc(d + 1, data.value, kBlock, static_cast<uint16_t>((device_writes ? kDescWrite : 0) | kDescNext), d + 2);
    mq.set_desc(d + 2, status.value, 1, kDescWrite, 0);
  }
  std::mt19937_64 rng(42);
  std::vector<bool> outstanding(depth, false);
  const uint64_t blocks = dev->capacity_sectors() / (kBlock / 512);
  auto submit = [&](uint16_t slot) {
    (void)mem.write_obj(headers[slot], Header{type, 0, (rng() % blocks) * (kBlock / 512)});
    mq.publish(static_cast<uint16_t>(3 * slot));
    outstanding[slot] = true;
  };
  for (uint16_t i = 0; i < depth; i++) submit(i);
  w(mmio::kQueueNotify, 0);

  uint16_t seen = 0;
  int64_t ops = 0;
  for (auto _ : state) {
    // One iteration = one completion (and its replacement request).
    uint16_t used;
    while ((used = mq.used_idx()) == seen) irq->wait();
    bool any = false;
    while (seen != used) {
      VirtqUsedElem e = mq.used(seen);
      uint16_t slot = static_cast<uint16_t>(e.id / 3);
      if (e.id % 3 || slot >= depth || !outstanding[slot]) {
        state.SkipWithError("the device completed a request that was not outstanding");
        fprintf(stderr, "used[%u] = {%u, %u} seen=%u used=%u\n", seen, e.id, e.len, seen, used);
        return;
      }
      outstanding[slot] = false;
      seen++;
      ops++;
      submit(slot);
      any = true;
    }
    if (any) w(mmio::kQueueNotify, 0);
  }
  state.counters["IOPS"] = benchmark::Counter(static_cast<double>(ops), benchmark::Counter::kIsRate);
  transport.reset();
}

void BM_BlkRandRead(benchmark::State& s) { run(s, blk::kTypeIn, BlockEngine::Kind::io_uring); }
void BM_BlkRandWrite(benchmark::State& s) { run(s, blk::kTypeOut, BlockEngine::Kind::io_uring); }
void BM_BlkRandReadSync(benchmark::State& s) { run(s, blk::kTypeIn, BlockEngine::Kind::sync); }
void BM_BlkRandReadCow(benchmark::State& s) { run(s, blk::kTypeIn, BlockEngine::Kind::io_uring, true); }
void BM_BlkRandWriteCow(benchmark::State& s) { run(s, blk::kTypeOut, BlockEngine::Kind::io_uring, true); }

}  // namespace

BENCHMARK(BM_BlkRandRead)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_BlkRandWrite)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_BlkRandReadSync)->Arg(1)->Arg(16)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_BlkRandReadCow)->Arg(1)->Arg(16)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_BlkRandWriteCow)->Arg(1)->Arg(16)->UseRealTime()->MinTime(2.0);

BENCHMARK_MAIN();
