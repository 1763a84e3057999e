// SHA-256 (FIPS 180-4), streaming: every blob's digest is checked as it is read or written.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace flick::image {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t len);
  std::array<uint8_t, 32> finish();
  // "sha256:<hex>" of everything fed so far (finishes the hash).
  std::string digest();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_digest(std::string_view data);

// True for "sha256:" followed by 64 lowercase hex digits.
bool is_sha256_digest(std::string_view digest);

}  // namespace flick::image
