// Content-addressed blobs on disk: <root>/blobs/sha256/<hex>. A blob is written to a private
// temporary file under <root>/tmp (held with flock while in use), hashed as it streams, and
// published by link() only once its digest is verified: readers never see partial blobs.
#pragma once

#include "image/sha256.h"

#include <flick/result.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>

namespace flick::image {

// A private temporary file under <root>/tmp, removed on destruction unless published.
// While open it is flock()ed, so prune() can tell live files from leftovers.
class TempFile {
 public:
  static Result<TempFile> create(const std::filesystem::path& tmp_dir, std::string_view suffix);
  TempFile(TempFile&&) noexcept;
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile();

  int fd() const { return fd_; }
  const std::filesystem::path& path() const { return path_; }
  // Hard-links the file to `dest`. Returns false (and keeps nothing) when `dest` already
  // exists: first publisher wins and the existing file is never replaced.
  Result<bool> publish(const std::filesystem::path& dest);

 private:
  TempFile(int fd, std::filesystem::path p) : fd_(fd), path_(std::move(p)) {}
  int fd_;
  std::filesystem::path path_;
};

class BlobStore {
 public:
  explicit BlobStore(std::filesystem::path root);
  Result<void> init() const;

  // A copy of this store for one pull that calls `pin` with every digest before it looks for
  // or publishes that blob: the pull's pin, which keeps garbage collection off the blobs it
  // relies on (see image_store.cpp).
  BlobStore pinned_by(std::function<void(std::string_view digest)> pin) const;
  void pin(std::string_view digest) const {
    if (pin_) pin_(digest);
  }

  std::filesystem::path path_of(std::string_view digest) const;
  bool has(std::string_view digest) const;  // pins the digest first
  const std::filesystem::path& tmp_dir() const { return tmp_; }

  class Writer {
   public:
    Result<void> write(std::span<const uint8_t> bytes);
    // Verifies the digest (if `expected` is non-empty) and publishes; returns the digest.
    Result<std::string> commit(std::string_view expected, std::string_view what);
    uint64_t size() const { return size_; }

   private:
    friend class BlobStore;
    Writer(const BlobStore& s, TempFile f) : store_(&s), file_(std::move(f)) {}
    const BlobStore* store_;
    TempFile file_;
    Sha256 hash_;
    uint64_t size_ = 0;
  };
  Result<Writer> writer() const;

  // A registry download of one blob into <tmp>/<hex>.partial, which outlives a dropped
  // connection or a killed process so the next attempt resumes from the bytes on disk.
  // Holds an exclusive flock on <root>/locks/<hex>.blob for its lifetime, so concurrent
  // processes fetch each blob once: the second waits, then finds the blob present.
  class Download {
   public:
    Download(Download&&) noexcept;
    Download& operator=(Download&&) = delete;
    ~Download();
    uint64_t size() const { return size_; }  // bytes on disk (already hashed)
    Result<void> write(std::span<const uint8_t> bytes);
    // Starts over from zero bytes (the server ignored a Range request).
    Result<void> restart();
    // Verifies the digest and publishes. On a mismatch the partial file is removed, so a
    // corrupted download never poisons the next attempt.
    Result<void> commit(std::string_view what);

   private:
    friend class BlobStore;
    Download(const BlobStore& s, std::string digest, int lock_fd)
        : store_(&s), digest_(std::move(digest)), lock_fd_(lock_fd) {}
    Result<void> open_partial();
    const BlobStore* store_;
    std::string digest_;
    std::filesystem::path partial_;
    int lock_fd_ = -1, fd_ = -1;
    Sha256 hash_;
    uint64_t size_ = 0;
  };
  // Waits for the blob's lock; a download is unneeded when has(digest) is true afterwards.
  Result<Download> download(std::string_view digest) const;
  // As download(), but nullopt at once when another download holds the blob's lock.
  Result<std::optional<Download>> try_download(std::string_view digest) const;

  // Copies a file into the store, verifying `expected`.
  Result<void> import_file(const std::filesystem::path& src, std::string_view expected) const;
  Result<std::string> put(std::string_view bytes, std::string_view expected = {}) const;
  // Reads a small blob (manifests, configs) whole.
  Result<std::string> read(std::string_view digest) const;

 private:
  Result<std::optional<Download>> lock_download(std::string_view digest, bool wait) const;
  std::filesystem::path blobs_, tmp_, locks_;
  std::function<void(std::string_view)> pin_;
};

std::string digest_hex(std::string_view digest);

}  // namespace flick::image
