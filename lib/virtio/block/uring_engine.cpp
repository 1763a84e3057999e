#include "virtio/block/block_engine.h"

#include "base/event_fd.h"
#include "virtio/io_thread.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <liburing.h>

#include <cstring>
#include <string>

namespace flick::virtio {

namespace {

class UringEngine : public BlockEngine {
 public:
  ~UringEngine() override {
    if (!ring_ok_) return;
    cancel_all();
    io_uring_queue_exit(&ring_);
  }

  static Result<std::unique_ptr<BlockEngine>> create(int fd, uint32_t depth) {
    std::unique_ptr<UringEngine> e(new UringEngine());
    e->fd_ = fd;
    int r = io_uring_queue_init(depth, &e->ring_, 0);
    if (r < 0) return sys_error("setting up an io_uring of depth " + std::to_string(depth), -r);
    e->ring_ok_ = true;
    e->depth_ = depth;
    e->slots_.resize(depth);
    for (uint32_t i = 0; i < depth; i++) e->free_.push_back(depth - 1 - i);
    FLICK_TRY_ASSIGN(e->done_, EventFd::create());
    r = io_uring_register_eventfd(&e->ring_, e->done_.fd());
    if (r < 0) return sys_error("registering an eventfd with io_uring", -r);
    return std::unique_ptr<BlockEngine>(std::move(e));
  }

  const char* name() const override { return "io_uring"; }
  uint32_t depth() const override { return depth_; }
  int completion_fd() const override { return done_.fd(); }

  Result<void> submit(BlockIo io) override {
    if (free_.empty()) return make_error(Errc::busy, "io_uring engine: queue full");
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (!sqe) {
      kick();
      sqe = io_uring_get_sqe(&ring_);
      if (!sqe) return make_error(Errc::busy, "io_uring engine: no submission entry");
    }
    uint32_t slot = free_.back();
    free_.pop_back();
    Slot& s = slots_[slot];
    s.cookie = io.cookie;
    s.iov = std::move(io.iov);
    auto off = static_cast<__u64>(io.offset);
    int fd = io.fd >= 0 ? io.fd : fd_;
    switch (io.op) {
      case BlockOp::read:
        io_uring_prep_readv(sqe, fd, s.iov.data(), static_cast<unsigned>(s.iov.size()), off);
        break;
      case BlockOp::write:
        io_uring_prep_writev(sqe, fd, s.iov.data(), static_cast<unsigned>(s.iov.size()), off);
        break;
      case BlockOp::flush:
        // Drain: the flush starts after every write submitted before it has completed, so
        // all writes acknowledged before the flush's completion are on stable storage.
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        sqe->flags |= IOSQE_IO_DRAIN;
        break;
      case BlockOp::discard:
      case BlockOp::write_zeroes:
      case BlockOp::write_zeroes_unmap: {
        int mode = io.op == BlockOp::write_zeroes ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE;
        io_uring_prep_fallocate(sqe, fd, mode | FALLOC_FL_KEEP_SIZE, off, static_cast<off_t>(io.len));
        break;
      }
    }
    s.expected = 0;
    for (const iovec& v : s.iov) s.expected += static_cast<int64_t>(v.iov_len);
    io_uring_sqe_set_data64(sqe, slot);
    in_flight_++;
    return {};
  }

  void kick() override {
    int r = io_uring_submit(&ring_);
    if (r < 0) log_line(std::string("io_uring engine: submit failed: ") + std::strerror(-r));
  }

  void reap() override {
    (void)done_.consume();
    io_uring_cqe* cqe;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
      finish(cqe, true);
    }
  }

  void cancel_all() override {
    if (!ring_ok_) return;
    io_uring_submit(&ring_);
    while (in_flight_ > 0) {
      io_uring_cqe* cqe;
      if (io_uring_wait_cqe(&ring_, &cqe) < 0) break;
      finish(cqe, false);
    }
  }

 private:
  struct Slot {
    uint64_t cookie = 0;
    std::vector<iovec> iov;
    int64_t expected = 0;
  };

  void finish(io_uring_cqe* cqe, bool report) {
    auto slot = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
    int64_t res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    Slot& s = slots_[slot];
    // A short transfer inside the disk means the file changed under us: report an error.
    if (res >= 0 && s.expected && res != s.expected) res = -EIO;
    uint64_t cookie = s.cookie;
    s.iov.clear();
    free_.push_back(slot);
    in_flight_--;
    if (report && complete_) complete_(cookie, res);
  }

  UringEngine() = default;
  io_uring ring_{};
  bool ring_ok_ = false;
  int fd_ = -1;
  uint32_t depth_ = 0;
  uint32_t in_flight_ = 0;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
  EventFd done_;
};

}  // namespace

Result<std::unique_ptr<BlockEngine>> make_uring_block_engine(int fd, uint32_t depth) {
  return UringEngine::create(fd, depth);
}

Result<std::unique_ptr<BlockEngine>> make_block_engine(int fd, BlockEngine::Kind kind,
                                                       uint32_t depth, const std::string& what) {
  if (kind == BlockEngine::Kind::sync) return make_sync_block_engine(fd);
  auto e = make_uring_block_engine(fd, depth);
  if (e || kind == BlockEngine::Kind::io_uring) return e;
  log_line(what + ": io_uring unavailable (" + e.error().describe() +
           "; is kernel.io_uring_disabled set?), using the synchronous block engine");
  return make_sync_block_engine(fd);
}

}  // namespace flick::virtio
