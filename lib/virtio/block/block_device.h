// BlockDevice: virtio-blk (virtio 1.2 §5.2) over a host file or block device.
//
// Requests are parsed on the device's I/O thread and executed by a BlockEngine (io_uring,
// or the synchronous fallback) with iovecs pointing straight into guest memory; up to the
// engine's depth requests are in flight at once.
#pragma once

#include "base/fd.h"
#include "virtio/block/block_engine.h"
#include "virtio/block/cow_disk.h"
#include "virtio/block/block_request.h"
#include "virtio/device.h"
#include "virtio/io_thread.h"

#include <memory>
#include <string>
#include <vector>

namespace flick::virtio {

struct BlockDeviceOptions {
  std::string path;          // file or block device; unused when cow_base is set
  bool read_only = false;
  std::string serial;        // GET_ID answer, at most 20 bytes used
  BlockEngine::Kind engine = BlockEngine::Kind::automatic;
  uint16_t queue_size = 256;
  uint32_t engine_depth = 64;  // requests in flight
  // Copy-on-write: the disk shows this file (opened read-only, never written) and keeps the
  // guest's writes in a private overlay that disappears with the device (see cow_disk.h).
  std::string cow_base;
  // Where the overlay's O_TMPFILE lives; empty: the base's directory, else $TMPDIR or /tmp.
  std::string cow_overlay_dir;
  uint64_t cow_cluster_bytes = CowDisk::kDefaultClusterBytes;
};

class BlockDevice : public VirtioDevice {
 public:
  static Result<std::shared_ptr<BlockDevice>> open(BlockDeviceOptions options);
  ~BlockDevice() override;

  uint32_t device_type() const override;
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {options_.queue_size}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  Result<void> activate(GuestMemory& mem, uint64_t acked_features, std::vector<ActiveQueue> queues,
                        std::shared_ptr<VirtioInterrupt> interrupt) override;
  void reset() override;
  // Takes what the driver made available and waits for every request in flight. A
  // copy-on-write disk refuses: its overlay ends with the VM, so a snapshot could not be
  // restored with the writes the guest believes made.
  Result<void> quiesce() override;

  uint64_t capacity_sectors() const { return limits_.capacity_sectors; }
  uint64_t size_bytes() const { return size_bytes_; }
  // The copy-on-write state (null for a plain disk). Touched by the I/O thread while active.
  const CowDisk* cow_disk() const { return cow_.get(); }
  // The engine in use after activation ("io_uring" or "sync"), for logs and tests.
  const char* engine_name() const { return engine_ ? engine_->name() : "none"; }

 private:
  struct InFlight {
    uint16_t head = 0;
    GuestAddress status;
    uint32_t used_len = 0;
    bool busy = false;
  };
  BlockDevice() = default;
  void process_queue();
  void on_complete(uint64_t slot, int64_t result);
  void finish(uint16_t head, std::optional<GuestAddress> status, uint8_t value, uint32_t used_len);
  void signal_if_needed();
  void fail_device(const Error& e);

  BlockDeviceOptions options_;
  UniqueFd file_;
  // Outlives engines and resets: a guest driver reset must not lose the disk's writes.
  std::unique_ptr<CowDisk> cow_;
  uint64_t size_bytes_ = 0;
  std::string what_;  // for log lines: the path, or "cow:<base>"
  BlockLimits limits_;
  std::vector<uint8_t> config_;

  // Live between activate() and reset(); touched only on the I/O thread.
  GuestMemory* mem_ = nullptr;
  std::unique_ptr<ActiveQueue> queue_;
  std::shared_ptr<VirtioInterrupt> interrupt_;
  std::unique_ptr<IoThread> thread_;
  std::unique_ptr<BlockEngine> engine_;
  std::vector<InFlight> in_flight_;
  std::vector<uint32_t> free_slots_;
  bool used_pending_ = false;
  bool stalled_ = false;
};

}  // namespace flick::virtio
