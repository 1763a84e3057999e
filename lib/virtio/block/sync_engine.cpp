#include "virtio/block/block_engine.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

namespace flick::virtio {

int64_t transfer_all(int fd, bool write, std::vector<iovec> iov, uint64_t offset) {
  int64_t total = 0;
  size_t first = 0;
  while (first < iov.size()) {
    int cnt = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t n = write ? ::pwritev(fd, &iov[first], cnt, static_cast<off_t>(offset))
                      : ::preadv(fd, &iov[first], cnt, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EIO;  // end of file inside the disk: the file shrank
    total += n;
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return total;
}

namespace {

class SyncEngine : public BlockEngine {
 public:
  explicit SyncEngine(int fd) : fd_(fd) {}
  const char* name() const override { return "sync"; }
  uint32_t depth() const override { return 1; }

  Result<void> submit(BlockIo io) override {
    int64_t r = 0;
    int fd = io.fd >= 0 ? io.fd : fd_;
    switch (io.op) {
      case BlockOp::read: r = transfer_all(fd, false, std::move(io.iov), io.offset); break;
      case BlockOp::write: r = transfer_all(fd, true, std::move(io.iov), io.offset); break;
      case BlockOp::flush: r = ::fdatasync(fd) == 0 ? 0 : -errno; break;
      case BlockOp::discard:
      case BlockOp::write_zeroes:
      case BlockOp::write_zeroes_unmap: {
        int mode = io.op == BlockOp::write_zeroes ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE;
        r = ::fallocate(fd, mode | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(io.offset),
                        static_cast<off_t>(io.len)) == 0 ? 0 : -errno;
        break;
      }
    }
    if (complete_) complete_(io.cookie, r);
    return {};
  }

 private:
  int fd_;
};

}  // namespace

std::unique_ptr<BlockEngine> make_sync_block_engine(int fd) {
  return std::make_unique<SyncEngine>(fd);
}

}  // namespace flick::virtio
