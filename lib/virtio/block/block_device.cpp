#include "virtio/block/block_device.h"

#include "virtio/spec.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

namespace flick::virtio {

namespace {
// §5.2.3 feature bits.
constexpr uint64_t kSegMax = 1ull << 2;
constexpr uint64_t kRo = 1ull << 5;
constexpr uint64_t kBlkSize = 1ull << 6;
constexpr uint64_t kFlush = 1ull << 9;
constexpr uint64_t kDiscard = 1ull << 13;
constexpr uint64_t kWriteZeroes = 1ull << 14;

// §5.2.4 configuration layout offsets.
constexpr size_t kCfgCapacity = 0;
constexpr size_t kCfgSegMax = 12;
constexpr size_t kCfgBlkSize = 20;
constexpr size_t kCfgMaxDiscardSectors = 36;
constexpr size_t kCfgMaxDiscardSeg = 40;
constexpr size_t kCfgDiscardAlignment = 44;
constexpr size_t kCfgMaxWriteZeroesSectors = 48;
constexpr size_t kCfgMaxWriteZeroesSeg = 52;
constexpr size_t kCfgWriteZeroesMayUnmap = 56;
constexpr size_t kCfgSize = 60;

template <class T>
void put(std::vector<uint8_t>& cfg, size_t off, T v) {
  std::memcpy(cfg.data() + off, &v, sizeof v);
}
}  // namespace

Result<std::shared_ptr<BlockDevice>> BlockDevice::open(BlockDeviceOptions options) {
  std::shared_ptr<BlockDevice> d(new BlockDevice());
  uint64_t bytes = 0;
  if (!options.cow_base.empty()) {
    FLICK_TRY_ASSIGN(d->cow_, CowDisk::open(options.cow_base, options.cow_overlay_dir,
                                            options.cow_cluster_bytes));
    bytes = d->cow_->size();
    d->what_ = "cow:" + options.cow_base;
  } else {
    int fd = ::open(options.path.c_str(), (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) return sys_error("opening disk image " + options.path, errno);
    d->file_.reset(fd);
    struct stat st;
    if (::fstat(fd, &st) != 0) return sys_error("inspecting disk image " + options.path, errno);
    bytes = static_cast<uint64_t>(st.st_size);
    if (S_ISBLK(st.st_mode) && ::ioctl(fd, BLKGETSIZE64, &bytes) != 0)
      return sys_error("reading the size of block device " + options.path, errno);
    d->what_ = options.path;
  }
  d->size_bytes_ = bytes;
  if (options.queue_size == 0 || (options.queue_size & (options.queue_size - 1)) ||
      options.queue_size > kMaxQueueSize || options.engine_depth == 0)
    return make_error(Errc::invalid_argument, "virtio-blk: queue size must be a power of two "
                                              "and the engine depth non-zero");
  d->limits_.capacity_sectors = bytes / blk::kSectorSize;
  d->limits_.read_only = options.read_only;
  d->limits_.max_discard_sectors = 1u << 22;  // 2 GiB per discard segment
  d->options_ = std::move(options);

  auto& cfg = d->config_;
  cfg.assign(kCfgSize, 0);
  put<uint64_t>(cfg, kCfgCapacity, d->limits_.capacity_sectors);
  put<uint32_t>(cfg, kCfgSegMax, d->options_.queue_size - 2u);  // header and status take two
  put<uint32_t>(cfg, kCfgBlkSize, blk::kSectorSize);
  put<uint32_t>(cfg, kCfgMaxDiscardSectors, d->limits_.max_discard_sectors);
  put<uint32_t>(cfg, kCfgMaxDiscardSeg, 1);
  put<uint32_t>(cfg, kCfgDiscardAlignment, 8);
  put<uint32_t>(cfg, kCfgMaxWriteZeroesSectors, d->limits_.max_discard_sectors);
  put<uint32_t>(cfg, kCfgMaxWriteZeroesSeg, 1);
  put<uint8_t>(cfg, kCfgWriteZeroesMayUnmap, 1);
  return d;
}

BlockDevice::~BlockDevice() { reset(); }

uint32_t BlockDevice::device_type() const { return kDeviceBlock; }

uint64_t BlockDevice::features() const {
  uint64_t f = kSegMax | kBlkSize | kFlush | kFeatureRingIndirectDesc | kFeatureRingEventIdx;
  f |= options_.read_only ? kRo : (kDiscard | kWriteZeroes);
  return f;
}

void BlockDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  for (size_t i = 0; i < data.size(); i++)
    data[i] = offset + i < config_.size() ? config_[offset + i] : 0;
}

Result<void> BlockDevice::activate(GuestMemory& mem, uint64_t, std::vector<ActiveQueue> queues,
                                   std::shared_ptr<VirtioInterrupt> interrupt) {
  if (queues.size() != 1) return make_error(Errc::invalid_argument, "virtio-blk has one queue");
  reset();
  bool allow_uring = options_.engine != BlockEngine::Kind::sync;
  FLICK_TRY_ASSIGN(thread_, IoThread::create("virtio-blk", allow_uring));
  int fd = cow_ ? cow_->overlay_fd() : file_.get();
  FLICK_TRY_ASSIGN(engine_, make_block_engine(fd, options_.engine, options_.engine_depth,
                                              "virtio-blk " + what_));
  if (cow_) engine_ = make_cow_block_engine(*cow_, std::move(engine_));
  mem_ = &mem;
  queue_ = std::make_unique<ActiveQueue>(std::move(queues[0]));
  interrupt_ = std::move(interrupt);
  in_flight_.assign(engine_->depth(), InFlight{});
  free_slots_.clear();
  for (uint32_t i = engine_->depth(); i-- > 0;) free_slots_.push_back(i);
  engine_->set_completion([this](uint64_t slot, int64_t r) { on_complete(slot, r); });

  int notify_fd = queue_->notify_fd;
  FLICK_TRY(thread_->watch(notify_fd, [this, notify_fd] {
    uint64_t n;
    (void)!::read(notify_fd, &n, sizeof n);
    process_queue();
  }));
  if (engine_->completion_fd() >= 0) {
    FLICK_TRY(thread_->watch(engine_->completion_fd(), [this] {
      engine_->reap();
      signal_if_needed();
      if (stalled_) process_queue();
    }));
  }
  // Buffers the driver made available before DRIVER_OK are picked up straight away.
  thread_->post([this] { process_queue(); });
  return thread_->start();
}

void BlockDevice::reset() {
  if (thread_) thread_->stop();
  // In-flight I/O still points into guest memory: wait for it before letting go.
  if (engine_) engine_->cancel_all();
  engine_.reset();
  thread_.reset();
  queue_.reset();
  interrupt_.reset();
  mem_ = nullptr;
  in_flight_.clear();
  free_slots_.clear();
  used_pending_ = stalled_ = false;
}

Result<void> BlockDevice::quiesce() {
  if (cow_)
    return make_error(Errc::unsupported, "virtio-blk " + what_ +
                                             ": a copy-on-write disk's overlay is not kept with a snapshot");
  if (!thread_) return {};
  // Take whatever is available, collect what has finished, count what is still in flight.
  return thread_->run_until_idle(
      [this]() -> size_t {
        if (!queue_->queue.broken()) process_queue();
        engine_->reap();
        signal_if_needed();
        return static_cast<size_t>(std::count_if(in_flight_.begin(), in_flight_.end(),
                                                 [](const InFlight& f) { return f.busy; }));
      },
      "virtio-blk " + what_ + ": waiting for requests in flight");
}

void BlockDevice::fail_device(const Error& e) {
  log_line("virtio-blk " + what_ + ": " + e.describe() + "; device needs reset");
  interrupt_->device_failed();
}

void BlockDevice::finish(uint16_t head, std::optional<GuestAddress> status, uint8_t value,
                         uint32_t used_len) {
  if (status) (void)mem_->write_obj(*status, value);
  if (auto r = queue_->queue.add_used(head, used_len); !r) fail_device(r.error());
  used_pending_ = true;
}

void BlockDevice::signal_if_needed() {
  if (used_pending_ && queue_->queue.needs_interrupt()) interrupt_->used_buffer(0);
  used_pending_ = false;
}

void BlockDevice::process_queue() {
  VirtQueue& q = queue_->queue;
  if (q.broken()) return;
  stalled_ = false;
  for (;;) {
    while (!free_slots_.empty()) {
      auto popped = q.pop();
      if (!popped) {
        fail_device(popped.error());
        return;
      }
      if (!popped->has_value()) break;
      AvailableChain& avail = **popped;
      if (!avail.chain) {  // malformed chain: return it untouched
        finish(avail.head, std::nullopt, 0, 0);
        continue;
      }
      ParsedBlockRequest p = parse_block_request(*mem_, *avail.chain, limits_);
      if (p.status != blk::kStatusOk) {
        finish(avail.head, p.status_addr, p.status, p.status_addr ? 1 : 0);
        continue;
      }
      const BlockRequest& r = p.request;
      if (r.kind == BlockRequestKind::get_id) {
        char id[blk::kIdBytes] = {};
        std::memcpy(id, options_.serial.data(), std::min<size_t>(options_.serial.size(), sizeof id));
        uint64_t off = 0;
        for (const GuestRegion& g : r.data) {
          (void)mem_->write(g.addr, std::as_bytes(std::span(id + off, g.len)));
          off += g.len;
        }
        finish(avail.head, p.status_addr, blk::kStatusOk, static_cast<uint32_t>(r.data_len + 1));
        continue;
      }
      BlockIo io;
      io.offset = r.sector * blk::kSectorSize;
      switch (r.kind) {
        case BlockRequestKind::read: io.op = BlockOp::read; break;
        case BlockRequestKind::write: io.op = BlockOp::write; break;
        case BlockRequestKind::flush: io.op = BlockOp::flush; break;
        case BlockRequestKind::discard: io.op = BlockOp::discard; break;
        case BlockRequestKind::write_zeroes:
          io.op = r.unmap ? BlockOp::write_zeroes_unmap : BlockOp::write_zeroes;
          break;
        case BlockRequestKind::get_id: break;
      }
      io.len = r.segment_sectors * blk::kSectorSize;
      for (const GuestRegion& g : r.data) {
        auto s = mem_->slice(g.addr, g.len);  // checked when the chain was walked
        if (!s) break;
        io.iov.push_back({s->data(), s->size()});
      }
      uint32_t slot = free_slots_.back();
      free_slots_.pop_back();
      uint32_t used_len = r.kind == BlockRequestKind::read ? static_cast<uint32_t>(r.data_len) + 1 : 1;
      in_flight_[slot] = InFlight{avail.head, *p.status_addr, used_len, true};
      io.cookie = slot;
      if (auto s = engine_->submit(std::move(io)); !s) {
        free_slots_.push_back(slot);
        in_flight_[slot].busy = false;
        finish(avail.head, p.status_addr, blk::kStatusIoErr, 1);
      }
    }
    engine_->kick();
    // Reads served from the page cache complete inside the submit: collect them now rather
    // than after another trip through the event loop.
    engine_->reap();
    if (free_slots_.empty()) {
      stalled_ = true;  // resumed when a completion frees a slot
      break;
    }
    auto more = q.enable_notification();
    if (!more) {
      fail_device(more.error());
      return;
    }
    if (!*more) break;
  }
  signal_if_needed();
}

void BlockDevice::on_complete(uint64_t slot, int64_t result) {
  if (slot >= in_flight_.size() || !in_flight_[slot].busy) return;
  InFlight f = in_flight_[slot];
  in_flight_[slot].busy = false;
  free_slots_.push_back(static_cast<uint32_t>(slot));
  bool ok = result >= 0;
  finish(f.head, f.status, ok ? blk::kStatusOk : blk::kStatusIoErr, ok ? f.used_len : 1);
}

}  // namespace flick::virtio
