// Content-addressed blobs on disk: <root>/blobs/sha256/<hex>. A blob is written to a private
// temporary file under <root>/tmp (held with flock while in use), hashed as it streams, and
// published by link() only once its digest is verified: readers never see partial blobs.
#pragma once

#include "image/sha256.h"

#include <flick/result.h>

#include <filesystem>
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

  std::filesystem::path path_of(std::string_view digest) const;
  bool has(std::string_view digest) const;
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

  // Copies a file into the store, verifying `expected`.
  Result<void> import_file(const std::filesystem::path& src, std::string_view expected) const;
  Result<std::string> put(std::string_view bytes, std::string_view expected = {}) const;
  // Reads a small blob (manifests, configs) whole.
  Result<std::string> read(std::string_view digest) const;

 private:
  std::filesystem::path blobs_, tmp_;
};

std::string digest_hex(std::string_view digest);

}  // namespace flick::image
