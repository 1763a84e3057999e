// CowDisk: a copy-on-write view of a read-only base image, so that every machine start gets
// a blank slate without copying the base.
//
// The disk's content is the base file, opened O_RDONLY and never written, overlaid by a
// private overlay: an unlinked (O_TMPFILE) sparse file of the base's size, plus an in-memory
// bitmap of the clusters the guest has written. An unwritten cluster reads from the base, a
// written one from the overlay. The overlay has no name, so it vanishes when the last fd
// closes: nothing to clean up after a crash, nothing left for the next start.
//
// Clusters are 4 KiB by default: ext4 blocks and guest pages are 4 KiB, so nearly every guest
// write covers whole clusters and needs no copy-up at all (a 64 KiB cluster would copy 60 KiB
// from the base for each 4 KiB write). The bitmap costs 32 KiB per GiB of disk.
//
// CowEngine (make_cow_block_engine) executes BlockIo against a CowDisk:
//  - a read wholly in untouched clusters goes to the inner engine with the base's fd, one
//    wholly in written clusters with the overlay's: both zero-copy into guest memory and
//    asynchronous on io_uring. A read that spans both is split, synchronously.
//  - a write wholly in written clusters goes to the inner engine (asynchronous). Any other
//    write runs synchronously on the device's I/O thread: copy-up of a partially covered
//    unwritten head / tail cluster, then the data, then the bitmap bits. Because all writes
//    that change the bitmap finish before submit() returns, no two requests can ever copy up
//    the same cluster at once, and a bit is never set before its data is in the overlay.
//  - discard / write-zeroes punch the overlay (copying up partial clusters first) and mark
//    the clusters written, so the base never shows through; synchronous.
//  - flush is an fdatasync of the overlay through the inner engine; the base never changes.
#pragma once

#include "base/fd.h"
#include "virtio/block/block_engine.h"

#include <flick/result.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace flick::virtio {

class CowDisk {
 public:
  ~CowDisk();
  CowDisk(const CowDisk&) = delete;
  CowDisk& operator=(const CowDisk&) = delete;
  static constexpr uint64_t kDefaultClusterBytes = 4096;

  // `overlay_dir` empty: the base's directory, or $TMPDIR (then /tmp) when that directory
  // cannot hold an O_TMPFILE (read-only cache, a filesystem without O_TMPFILE support).
  static Result<std::unique_ptr<CowDisk>> open(const std::string& base_path,
                                               const std::string& overlay_dir = {},
                                               uint64_t cluster_bytes = kDefaultClusterBytes);

  uint64_t size() const { return size_; }  // bytes, the base's size
  uint64_t cluster_bytes() const { return cluster_; }
  int base_fd() const { return base_.get(); }
  int overlay_fd() const { return overlay_.get(); }
  uint64_t written_clusters() const { return written_count_; }

  enum class Where { base, overlay, both };
  // Which file holds [offset, offset + len); `len` 0 counts as the base.
  Where where(uint64_t offset, uint64_t len) const;

  // The synchronous paths of CowEngine; each returns the bytes transferred (0 for zero())
  // or -errno. The range must lie inside the disk (the request parser checks that).
  int64_t read(std::vector<iovec> iov, uint64_t offset) const;
  int64_t write(std::vector<iovec> iov, uint64_t offset);
  int64_t zero(uint64_t offset, uint64_t len);

 private:
  CowDisk() = default;
  bool written(uint64_t cluster) const { return (bits_[cluster / 64] >> (cluster % 64)) & 1; }
  void mark(uint64_t first, uint64_t end_cluster);
  // Copies cluster `c` from the base into the overlay unless it is written already.
  int64_t copy_up(uint64_t c);
  // Copies up the head and tail clusters of [offset, end) where the range covers them only
  // in part, so a write or zeroing there keeps the rest of their base bytes.
  int64_t copy_up_partial_ends(uint64_t offset, uint64_t end);

  UniqueFd base_;
  UniqueFd overlay_;
  std::string overlay_name_;  // set when the file system has no O_TMPFILE: removed with the disk
  uint64_t size_ = 0;
  uint64_t cluster_ = kDefaultClusterBytes;
  std::vector<uint64_t> bits_;
  uint64_t written_count_ = 0;
};

// Wraps `inner`, an engine created on `disk.overlay_fd()`. `disk` must outlive the engine.
std::unique_ptr<BlockEngine> make_cow_block_engine(CowDisk& disk,
                                                   std::unique_ptr<BlockEngine> inner);

}  // namespace flick::virtio
