#include "image/blob_store.h"

#include "base/fd.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace flick::image {
namespace {

// Writes all of `bytes` to `fd`, the file at `path` (named in the error).
Result<void> write_all(int fd, std::span<const uint8_t> bytes, const std::filesystem::path& path) {
  if (int err = flick::write_all(fd, bytes.data(), bytes.size())) return sys_error("writing " + path.string(), err);
  return {};
}

}  // namespace

namespace fs = std::filesystem;

std::string digest_hex(std::string_view digest) {
  size_t colon = digest.find(':');
  return std::string(colon == std::string_view::npos ? digest : digest.substr(colon + 1));
}

Result<TempFile> TempFile::create(const fs::path& tmp_dir, std::string_view suffix) {
  uint8_t rnd[8];
  if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) return sys_error("getrandom", errno);
  std::string name;
  for (uint8_t b : rnd) name += "0123456789abcdef"[b >> 4], name += "0123456789abcdef"[b & 15];
  fs::path p = tmp_dir / (name + std::string(suffix));
  int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return sys_error("creating temporary file " + p.string(), errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int err = errno;
    ::close(fd);
    return sys_error("locking temporary file " + p.string(), err);
  }
  return TempFile(fd, std::move(p));
}

TempFile::TempFile(TempFile&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) {
  o.fd_ = -1;
  o.path_.clear();
}

TempFile::~TempFile() {
  if (!path_.empty()) ::unlink(path_.c_str());
  if (fd_ >= 0) ::close(fd_);
}

Result<bool> TempFile::publish(const fs::path& dest) {
  if (::fsync(fd_) < 0) return sys_error("flushing " + path_.string(), errno);
  if (::link(path_.c_str(), dest.c_str()) < 0) {
    if (errno == EEXIST) return false;
    return sys_error("publishing " + dest.string(), errno);
  }
  return true;
}

BlobStore::BlobStore(fs::path root)
    : blobs_(root / "blobs" / "sha256"), tmp_(root / "tmp"), locks_(root / "locks") {}

Result<void> BlobStore::init() const {
  std::error_code ec;
  for (const auto& d : {blobs_, tmp_, locks_}) {
    fs::create_directories(d, ec);
    if (ec) return sys_error("creating " + d.string(), ec.value());
  }
  return {};
}

BlobStore BlobStore::pinned_by(std::function<void(std::string_view)> pin) const {
  BlobStore b = *this;
  b.pin_ = std::move(pin);
  return b;
}

fs::path BlobStore::path_of(std::string_view digest) const { return blobs_ / digest_hex(digest); }

bool BlobStore::has(std::string_view digest) const {
  pin(digest);
  struct stat st;
  return ::stat(path_of(digest).c_str(), &st) == 0;
}

Result<BlobStore::Writer> BlobStore::writer() const {
  FLICK_TRY_ASSIGN(auto f, TempFile::create(tmp_, ".blob"));
  return Writer(*this, std::move(f));
}

Result<void> BlobStore::Writer::write(std::span<const uint8_t> bytes) {
  hash_.update(bytes.data(), bytes.size());
  size_ += bytes.size();
  return write_all(file_.fd(), bytes, file_.path());
}

Result<std::string> BlobStore::Writer::commit(std::string_view expected, std::string_view what) {
  std::string got = hash_.digest();
  if (!expected.empty() && got != expected)
    return make_error(Errc::integrity, std::string(what) + ": digest mismatch: expected " +
                                           std::string(expected) + ", got " + got);
  store_->pin(got);
  FLICK_TRY(file_.publish(store_->path_of(got)));
  return got;
}

Result<BlobStore::Download> BlobStore::download(std::string_view digest) const {
  FLICK_TRY_ASSIGN(auto d, lock_download(digest, true));
  return std::move(*d);
}

Result<std::optional<BlobStore::Download>> BlobStore::try_download(std::string_view digest) const {
  return lock_download(digest, false);
}

Result<std::optional<BlobStore::Download>> BlobStore::lock_download(std::string_view digest, bool wait) const {
  if (!is_sha256_digest(digest)) return make_error(Errc::invalid_argument, "not a sha256 digest: " + std::string(digest));
  const fs::path lock = locks_ / (digest_hex(digest) + ".blob");
  int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return sys_error("creating lock file " + lock.string(), errno);
  while (::flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB) < 0) {
    if (errno == EINTR) continue;
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) return std::optional<Download>();
    return sys_error("locking " + lock.string(), err);
  }
  Download d(*this, std::string(digest), fd);
  if (!has(digest)) FLICK_TRY(d.open_partial());
  return std::optional<Download>(std::move(d));
}

BlobStore::Download::Download(Download&& o) noexcept
    : store_(o.store_), digest_(std::move(o.digest_)), partial_(std::move(o.partial_)), lock_fd_(o.lock_fd_),
      fd_(o.fd_), hash_(std::move(o.hash_)), size_(o.size_) {
  o.lock_fd_ = o.fd_ = -1;
}

BlobStore::Download::~Download() {
  if (fd_ >= 0) ::close(fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

// Opens (or creates) the partial file and hashes what an earlier attempt left in it.
Result<void> BlobStore::Download::open_partial() {
  partial_ = store_->tmp_ / (digest_hex(digest_) + ".partial");
  fd_ = ::open(partial_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) return sys_error("opening " + partial_.string(), errno);
  // Locked too, so prune() leaves a live download alone (it removes unlocked tmp files).
  if (::flock(fd_, LOCK_EX | LOCK_NB) < 0) return sys_error("locking " + partial_.string(), errno);
  std::vector<uint8_t> buf(1 << 20);
  while (true) {
    ssize_t n = ::read(fd_, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("reading " + partial_.string(), errno);
    if (n == 0) break;
    hash_.update(buf.data(), size_t(n));
    size_ += uint64_t(n);
  }
  return {};
}

Result<void> BlobStore::Download::write(std::span<const uint8_t> bytes) {
  hash_.update(bytes.data(), bytes.size());
  size_ += bytes.size();
  return write_all(fd_, bytes, partial_);
}

Result<void> BlobStore::Download::restart() {
  if (::ftruncate(fd_, 0) < 0) return sys_error("truncating " + partial_.string(), errno);
  hash_ = Sha256();
  size_ = 0;
  return {};
}

Result<void> BlobStore::Download::commit(std::string_view what) {
  std::string got = hash_.digest();
  if (got != digest_) {
    ::unlink(partial_.c_str());
    return make_error(Errc::integrity, std::string(what) + ": digest mismatch: expected " + digest_ + ", got " +
                                           got + " (" + std::to_string(size_) + " bytes; the download was discarded)");
  }
  if (::fsync(fd_) < 0) return sys_error("flushing " + partial_.string(), errno);
  store_->pin(digest_);  // already pinned by has() when the lock was taken; cheap
  if (::link(partial_.c_str(), store_->path_of(digest_).c_str()) < 0 && errno != EEXIST)
    return sys_error("publishing " + store_->path_of(digest_).string(), errno);
  ::unlink(partial_.c_str());
  return {};
}

Result<void> BlobStore::import_file(const fs::path& src, std::string_view expected) const {
  if (!expected.empty() && has(expected)) return {};
  int fd = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sys_error("opening blob " + src.string(), errno);
  FLICK_TRY_ASSIGN(auto w, writer());
  std::vector<uint8_t> buf(1 << 20);
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return sys_error("reading blob " + src.string(), err);
    }
    if (n == 0) break;
    if (auto r = w.write({buf.data(), size_t(n)}); !r) {
      ::close(fd);
      return r;
    }
  }
  ::close(fd);
  FLICK_TRY(w.commit(expected, "blob " + src.string()));
  return {};
}

Result<std::string> BlobStore::put(std::string_view bytes, std::string_view expected) const {
  if (!expected.empty() && has(expected)) return std::string(expected);
  FLICK_TRY_ASSIGN(auto w, writer());
  FLICK_TRY(w.write({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}));
  return w.commit(expected, "blob " + std::string(expected));
}

Result<std::string> BlobStore::read(std::string_view digest) const {
  constexpr size_t kMaxDocument = 4 << 20;  // manifests and configs are small
  fs::path p = path_of(digest);
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sys_error("opening blob " + std::string(digest), errno);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) {
    out.append(buf, size_t(n));
    if (out.size() > kMaxDocument) {
      ::close(fd);
      return make_error(Errc::limit, "blob " + std::string(digest) + " is too large for a JSON document");
    }
  }
  int err = errno;
  ::close(fd);
  if (n < 0) return sys_error("reading blob " + std::string(digest), err);
  return out;
}

}  // namespace flick::image
