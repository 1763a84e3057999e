// A gzip layer inflated with ISA-L (igzip, about twice zlib's speed on x86) on a thread of its
// own, handed to the tar parser as a stream of decompressed chunks. Reading and inflating
// overlap with tar parsing and spooling; a bounded queue of chunks keeps memory fixed.
#pragma once

#include <flick/result.h>

#include "base/fd.h"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace flick::image {

class GzipStream {
 public:
  // True when the file starts with the gzip magic (RFC 1952 section 2.3.1).
  static Result<bool> is_gzip(const std::filesystem::path& path);
  // Starts inflating `path`; `name` goes into error messages.
  static Result<std::unique_ptr<GzipStream>> open(const std::filesystem::path& path, std::string name);
  GzipStream(const GzipStream&) = delete;
  GzipStream& operator=(const GzipStream&) = delete;
  // Stops the inflating thread (wherever it is) and waits for it.
  ~GzipStream();

  // The next decompressed bytes, valid until the next call; empty after the last member's
  // trailer is checked. A corrupt, truncated or mismatching stream is an error naming the
  // layer, returned after the bytes that came before it.
  Result<std::span<const uint8_t>> read();
  // The error that stopped inflating, if one did.
  std::optional<Error> error();

 private:
  GzipStream(UniqueFd fd, std::string name);
  void run();
  Result<void> inflate_all();
  std::vector<uint8_t>* take_free();  // nullptr once stopped
  void publish(std::vector<uint8_t>* chunk);

  UniqueFd fd_;
  std::string name_;
  std::vector<std::vector<uint8_t>> chunks_;  // all chunks; the queues below point into it
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::vector<uint8_t>*> free_;
  std::deque<std::vector<uint8_t>*> full_;
  std::vector<uint8_t>* held_ = nullptr;  // what the consumer is reading
  bool done_ = false;
  bool stop_ = false;
  std::optional<Error> error_;
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace flick::image
