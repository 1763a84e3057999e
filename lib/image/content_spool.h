// Where pass 1 of a rootfs build puts file bytes as it decompresses each layer once: an
// unnamed temporary file next to the output. Pass 2 copies each surviving file's runs from
// here into the ext4 image, so no layer is ever decompressed twice.
#pragma once

#include <flick/result.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace flick::image {

class ContentSpool {
 public:
  static Result<ContentSpool> create(const std::filesystem::path& dir);
  ContentSpool(ContentSpool&&) noexcept;
  ContentSpool& operator=(ContentSpool&&) = delete;
  ~ContentSpool();

  // Appends bytes; returns their offset in the spool.
  Result<uint64_t> append(std::span<const uint8_t> bytes);
  // Reads back [offset, offset + out.size()) (after any appends are flushed).
  Result<void> read(uint64_t offset, std::span<uint8_t> out);

 private:
  explicit ContentSpool(int fd) : fd_(fd) {}
  Result<void> flush();
  int fd_;
  uint64_t size_ = 0;      // bytes appended, flushed or not
  uint64_t flushed_ = 0;   // bytes in the file
  std::vector<uint8_t> buf_;
};

}  // namespace flick::image
