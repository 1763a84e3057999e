// BlockEngine: where virtio-blk requests meet the host file (habit 4: the device does not
// know which engine runs its I/O).
//
// IoUringEngine submits readv/writev/fsync/fallocate to an io_uring and reports completions
// through an eventfd; SyncEngine runs each operation with plain system calls before submit()
// returns. make_block_engine() picks io_uring unless it is unavailable or not wanted.
#pragma once

#include <flick/result.h>

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace flick::virtio {

enum class BlockOp { read, write, flush, discard, write_zeroes, write_zeroes_unmap };

struct BlockIo {
  BlockOp op = BlockOp::read;
  uint64_t offset = 0;  // bytes
  uint64_t len = 0;     // bytes (discard / write_zeroes); read / write use iov
  std::vector<iovec> iov;
  uint64_t cookie = 0;
  // Another file than the engine's own, for this operation only (-1: the engine's file). A
  // copy-on-write disk reads untouched clusters from its base through the overlay's engine.
  int fd = -1;
};

class BlockEngine {
 public:
  // `result` is the byte count transferred (0 for flush / discard) or -errno.
  using Completion = std::function<void(uint64_t cookie, int64_t result)>;
  enum class Kind { automatic, io_uring, sync };

  virtual ~BlockEngine() = default;
  virtual const char* name() const = 0;
  // How many operations may be in flight at once.
  virtual uint32_t depth() const = 0;
  void set_completion(Completion c) { complete_ = std::move(c); }

  // Queues one operation. The sync engine runs it and calls the completion before returning.
  // Fails only when `depth()` operations are already in flight.
  virtual Result<void> submit(BlockIo io) = 0;
  // Hands queued operations to the kernel (one system call for a batch).
  virtual void kick() {}
  // Readable when completions are waiting; -1 when completions are always immediate.
  virtual int completion_fd() const { return -1; }
  // Calls the completion for every finished operation.
  virtual void reap() {}
  // Waits for every operation in flight, without calling completions (device reset).
  virtual void cancel_all() {}

 protected:
  Completion complete_;
};

// `fd` stays owned by the caller and must outlive the engine. With Kind::automatic, io_uring
// is tried first and the sync engine is used (with a log line) when the kernel refuses it.
Result<std::unique_ptr<BlockEngine>> make_block_engine(int fd, BlockEngine::Kind kind,
                                                       uint32_t depth, const std::string& what);

std::unique_ptr<BlockEngine> make_sync_block_engine(int fd);

// preadv / pwritev until the whole iovec is done (short transfers are retried): the byte
// count, or -errno (-EIO when the file ends inside the range).
int64_t transfer_all(int fd, bool write, std::vector<iovec> iov, uint64_t offset);
Result<std::unique_ptr<BlockEngine>> make_uring_block_engine(int fd, uint32_t depth);

}  // namespace flick::virtio
