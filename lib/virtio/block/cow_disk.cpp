#include "virtio/block/cow_disk.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

namespace flick::virtio {

namespace {

uint64_t iov_bytes(const std::vector<iovec>& iov) {
  uint64_t n = 0;
  for (const iovec& v : iov) n += v.iov_len;
  return n;
}

// The part [skip, skip + len) of the buffers `iov` describe.
std::vector<iovec> iov_slice(const std::vector<iovec>& iov, uint64_t skip, uint64_t len) {
  std::vector<iovec> out;
  for (const iovec& v : iov) {
    if (len == 0) break;
    if (skip >= v.iov_len) {
      skip -= v.iov_len;
      continue;
    }
    uint64_t take = std::min<uint64_t>(v.iov_len - skip, len);
    out.push_back({static_cast<char*>(v.iov_base) + skip, take});
    skip = 0;
    len -= take;
  }
  return out;
}

// A private file in `dir`: unlinked (O_TMPFILE), or where the file system lacks O_TMPFILE
// (9p, some FUSE file systems) a named one, `*name`, that the disk removes when it closes:
// such file systems cannot resize a file once it is unlinked.
int open_tmpfile(const std::string& dir, std::string* name) {
  name->clear();
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
  std::string tmpl = dir + "/.flick-overlay-XXXXXX";
  fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd >= 0) *name = tmpl;
  return fd;
}

}  // namespace

CowDisk::~CowDisk() {
  if (!overlay_name_.empty()) ::unlink(overlay_name_.c_str());
}

Result<std::unique_ptr<CowDisk>> CowDisk::open(const std::string& base_path,
                                               const std::string& overlay_dir,
                                               uint64_t cluster_bytes) {
  if (cluster_bytes < 512 || (cluster_bytes & (cluster_bytes - 1)))
    return make_error(Errc::invalid_argument,
                      "copy-on-write disk: the cluster size must be a power of two of at least 512");
  std::unique_ptr<CowDisk> d(new CowDisk());
  d->cluster_ = cluster_bytes;
  int fd = ::open(base_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sys_error("opening the copy-on-write base image " + base_path, errno);
  d->base_.reset(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return sys_error("inspecting base image " + base_path, errno);
  d->size_ = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode) && ::ioctl(fd, BLKGETSIZE64, &d->size_) != 0)
    return sys_error("reading the size of block device " + base_path, errno);

  std::string dir = overlay_dir;
  int ofd = -1;
  if (!dir.empty()) {
    ofd = open_tmpfile(dir, &d->overlay_name_);
  } else {
    dir = std::filesystem::path(base_path).parent_path().string();
    if (dir.empty()) dir = ".";
    ofd = open_tmpfile(dir, &d->overlay_name_);
    if (ofd < 0) {
      const char* tmp = std::getenv("TMPDIR");
      dir = tmp && *tmp ? tmp : "/tmp";
      ofd = open_tmpfile(dir, &d->overlay_name_);
    }
  }
  if (ofd < 0)
    return sys_error("creating the copy-on-write overlay (an O_TMPFILE) for " + base_path + " in " +
                         dir + "; pass a writable directory",
                     errno);
  d->overlay_.reset(ofd);
  if (::ftruncate(ofd, static_cast<off_t>(d->size_)) != 0)
    return sys_error("sizing the copy-on-write overlay for " + base_path, errno);
  uint64_t clusters = (d->size_ + cluster_bytes - 1) / cluster_bytes;
  d->bits_.assign((clusters + 63) / 64, 0);
  return d;
}

CowDisk::Where CowDisk::where(uint64_t offset, uint64_t len) const {
  if (len == 0) return Where::base;
  uint64_t first = offset / cluster_, last = (offset + len - 1) / cluster_;
  bool w = written(first);
  for (uint64_t c = first + 1; c <= last; c++)
    if (written(c) != w) return Where::both;
  return w ? Where::overlay : Where::base;
}

void CowDisk::mark(uint64_t first, uint64_t end_cluster) {
  for (uint64_t c = first; c < end_cluster; c++) {
    uint64_t& word = bits_[c / 64];
    uint64_t bit = 1ull << (c % 64);
    if (!(word & bit)) written_count_++;
    word |= bit;
  }
}

int64_t CowDisk::copy_up(uint64_t c) {
  if (written(c)) return 0;
  uint64_t start = c * cluster_;
  uint64_t n = std::min(cluster_, size_ - start);
  std::vector<uint8_t> buf(n);
  std::vector<iovec> iov{{buf.data(), n}};
  int64_t r = transfer_all(base_.get(), false, iov, start);
  if (r < 0) return r;
  r = transfer_all(overlay_.get(), true, iov, start);
  if (r < 0) return r;
  mark(c, c + 1);  // only now: the overlay holds the cluster's bytes
  return 0;
}

int64_t CowDisk::read(std::vector<iovec> iov, uint64_t offset) const {
  uint64_t len = iov_bytes(iov);
  uint64_t pos = 0;
  while (pos < len) {
    // One run of clusters in the same state, read from the file that holds it.
    uint64_t c = (offset + pos) / cluster_;
    bool w = written(c);
    uint64_t end_cluster = c + 1;
    while (end_cluster * cluster_ < offset + len && written(end_cluster) == w) end_cluster++;
    uint64_t run = std::min(end_cluster * cluster_, offset + len) - (offset + pos);
    int64_t r = transfer_all(w ? overlay_.get() : base_.get(), false, iov_slice(iov, pos, run),
                             offset + pos);
    if (r < 0) return r;
    pos += run;
  }
  return static_cast<int64_t>(len);
}

int64_t CowDisk::write(std::vector<iovec> iov, uint64_t offset) {
  uint64_t len = iov_bytes(iov);
  if (len == 0) return 0;
  if (int64_t r = copy_up_partial_ends(offset, offset + len); r < 0) return r;
  int64_t r = transfer_all(overlay_.get(), true, std::move(iov), offset);
  if (r < 0) return r;
  mark(offset / cluster_, (offset + len - 1) / cluster_ + 1);
  return r;
}

int64_t CowDisk::copy_up_partial_ends(uint64_t offset, uint64_t end) {
  const uint64_t first = offset / cluster_, last = (end - 1) / cluster_;
  // Only the head and tail clusters can be partly covered; they keep their other base bytes.
  auto covered = [&](uint64_t c) {
    return offset <= c * cluster_ && end >= std::min((c + 1) * cluster_, size_);
  };
  if (!covered(first))
    if (int64_t r = copy_up(first); r < 0) return r;
  if (last != first && !covered(last))
    if (int64_t r = copy_up(last); r < 0) return r;
  return 0;
}

int64_t CowDisk::zero(uint64_t offset, uint64_t len) {
  if (len == 0) return 0;
  const uint64_t end = offset + len;
  if (int64_t r = copy_up_partial_ends(offset, end); r < 0) return r;
  // A hole in the overlay reads as zeros and gives the space back; written zeros where the
  // overlay's filesystem cannot punch.
  if (::fallocate(overlay_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(offset), static_cast<off_t>(len)) != 0) {
    if (errno != EOPNOTSUPP) return -errno;
    std::vector<uint8_t> zeros(std::min<uint64_t>(len, 1 << 20), 0);
    for (uint64_t pos = offset; pos < end; pos += zeros.size()) {
      uint64_t n = std::min<uint64_t>(zeros.size(), end - pos);
      int64_t r = transfer_all(overlay_.get(), true, {{zeros.data(), n}}, pos);
      if (r < 0) return r;
    }
  }
  mark(offset / cluster_, (end - 1) / cluster_ + 1);
  return 0;
}

namespace {

class CowEngine : public BlockEngine {
 public:
  CowEngine(CowDisk& disk, std::unique_ptr<BlockEngine> inner)
      : disk_(disk), inner_(std::move(inner)) {
    inner_->set_completion([this](uint64_t cookie, int64_t r) {
      if (complete_) complete_(cookie, r);
    });
  }

  const char* name() const override { return inner_->name(); }
  // Each request uses at most one of the inner engine's slots.
  uint32_t depth() const override { return inner_->depth(); }

  Result<void> submit(BlockIo io) override {
    switch (io.op) {
      case BlockOp::read:
        switch (disk_.where(io.offset, iov_bytes(io.iov))) {
          case CowDisk::Where::base: io.fd = disk_.base_fd(); return inner_->submit(std::move(io));
          case CowDisk::Where::overlay: return inner_->submit(std::move(io));
          case CowDisk::Where::both: return done(io.cookie, disk_.read(std::move(io.iov), io.offset));
        }
        break;
      case BlockOp::write:
        // Overwriting written clusters changes no bitmap bit: nothing to serialize.
        if (disk_.where(io.offset, iov_bytes(io.iov)) == CowDisk::Where::overlay)
          return inner_->submit(std::move(io));
        return done(io.cookie, disk_.write(std::move(io.iov), io.offset));
      case BlockOp::flush: return inner_->submit(std::move(io));
      case BlockOp::discard:
      case BlockOp::write_zeroes:
      case BlockOp::write_zeroes_unmap: return done(io.cookie, disk_.zero(io.offset, io.len));
    }
    return make_error(Errc::invalid_argument, "copy-on-write engine: unknown operation");
  }

  void kick() override { inner_->kick(); }
  int completion_fd() const override { return inner_->completion_fd(); }
  void reap() override { inner_->reap(); }
  void cancel_all() override { inner_->cancel_all(); }

 private:
  Result<void> done(uint64_t cookie, int64_t result) {
    if (complete_) complete_(cookie, result);
    return {};
  }

  CowDisk& disk_;
  std::unique_ptr<BlockEngine> inner_;
};

}  // namespace

std::unique_ptr<BlockEngine> make_cow_block_engine(CowDisk& disk,
                                                   std::unique_ptr<BlockEngine> inner) {
  return std::make_unique<CowEngine>(disk, std::move(inner));
}

}  // namespace flick::virtio
