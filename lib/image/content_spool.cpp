#include "image/content_spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace flick::image {

namespace {
constexpr size_t kBuffer = 1 << 20;
}

Result<ContentSpool> ContentSpool::create(const std::filesystem::path& dir) {
  // O_TMPFILE: the spool has no name, so nothing is left behind however the build ends.
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == ENOENT)) {
    std::string tmpl = (dir / ".flick-spool-XXXXXX").string();
    fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(tmpl.c_str());
  }
  if (fd < 0) return sys_error("creating a content spool in " + dir.string(), errno);
  ContentSpool s(fd);
  s.buf_.reserve(kBuffer);
  return s;
}

ContentSpool::ContentSpool(ContentSpool&& o) noexcept
    : fd_(o.fd_), size_(o.size_), flushed_(o.flushed_), buf_(std::move(o.buf_)) {
  o.fd_ = -1;
}

ContentSpool::~ContentSpool() {
  if (fd_ >= 0) ::close(fd_);
}

Result<void> ContentSpool::flush() {
  size_t done = 0;
  while (done < buf_.size()) {
    ssize_t n = ::pwrite(fd_, buf_.data() + done, buf_.size() - done, off_t(flushed_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("writing the content spool", errno);
    done += size_t(n);
  }
  flushed_ += buf_.size();
  buf_.clear();
  return {};
}

Result<uint64_t> ContentSpool::append(std::span<const uint8_t> bytes) {
  const uint64_t at = size_;
  if (buf_.size() + bytes.size() > kBuffer) FLICK_TRY(flush());
  if (bytes.size() >= kBuffer) {
    buf_.assign(bytes.begin(), bytes.end());
    FLICK_TRY(flush());
  } else {
    buf_.insert(buf_.end(), bytes.begin(), bytes.end());
  }
  size_ += bytes.size();
  return at;
}

Result<void> ContentSpool::read(uint64_t offset, std::span<uint8_t> out) {
  if (offset + out.size() > flushed_) FLICK_TRY(flush());
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, off_t(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error("reading the content spool", n < 0 ? errno : EIO);
    done += size_t(n);
  }
  return {};
}

}  // namespace flick::image
