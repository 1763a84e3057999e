#include "image/sha256.h"

#include <openssl/evp.h>

#include <new>

namespace flick::image {

void Sha256::Free::operator()(evp_md_ctx_st* c) const { EVP_MD_CTX_free(c); }

// With the default provider these calls fail only when memory runs out.
Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) throw std::bad_alloc();
}

void Sha256::update(const void* data, size_t len) {
  if (EVP_DigestUpdate(ctx_.get(), data, len) != 1) throw std::bad_alloc();
}

std::array<uint8_t, 32> Sha256::finish() {
  std::array<uint8_t, 32> out;
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx_.get(), out.data(), &n) != 1 || n != out.size()) throw std::bad_alloc();
  return out;
}

std::string Sha256::digest() {
  static constexpr char kHex[] = "0123456789abcdef";
  auto d = finish();
  std::string s = "sha256:";
  for (uint8_t b : d) { s += kHex[b >> 4]; s += kHex[b & 15]; }
  return s;
}

std::string sha256_digest(std::string_view data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.digest();
}

bool is_sha256_digest(std::string_view d) {
  if (d.size() != 71 || d.substr(0, 7) != "sha256:") return false;
  for (char c : d.substr(7))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace flick::image
