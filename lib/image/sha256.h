// SHA-256 (FIPS 180-4), streaming, from OpenSSL's libcrypto: every blob's digest is checked
// as it is read or written.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header

namespace flick::image {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t len);
  std::array<uint8_t, 32> finish();
  // "sha256:<hex>" of everything fed so far (finishes the hash).
  std::string digest();

 private:
  struct Free {
    void operator()(evp_md_ctx_st* c) const;
  };
  std::unique_ptr<evp_md_ctx_st, Free> ctx_;
};

std::string sha256_digest(std::string_view data);

// True for "sha256:" followed by 64 lowercase hex digits.
bool is_sha256_digest(std::string_view digest);

}  // namespace flick::image
