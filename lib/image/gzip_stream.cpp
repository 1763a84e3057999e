#include "image/gzip_stream.h"

#include <fcntl.h>
#include <isa-l/igzip_lib.h>
#include <unistd.h>

#include <cerrno>
#include <new>
#include <utility>

namespace flick::image {

namespace {

constexpr size_t kChunk = size_t{2} << 20;  // decompressed bytes per queue entry
constexpr size_t kChunks = 4;               // being filled, queued, being parsed
constexpr size_t kInput = size_t{1} << 20;  // compressed bytes per read

const char* inflate_why(int r) {
  switch (r) {
    case ISAL_INVALID_BLOCK: return "invalid deflate block";
    case ISAL_INVALID_SYMBOL: return "invalid deflate symbol";
    case ISAL_INVALID_LOOKBACK: return "back-reference before the start of the data";
    case ISAL_INVALID_WRAPPER: return "invalid gzip header";
    case ISAL_UNSUPPORTED_METHOD: return "compression method is not deflate";
    case ISAL_INCORRECT_CHECKSUM: return "the trailer's CRC-32 or length does not match the data";
    default: return "inflate failed";
  }
}

}  // namespace

Result<bool> GzipStream::is_gzip(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("opening layer " + path.string(), errno);
  uint8_t magic[2] = {};
  ssize_t n;
  do n = ::pread(fd.get(), magic, sizeof magic, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("reading layer " + path.string(), errno);
  return n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

Result<std::unique_ptr<GzipStream>> GzipStream::open(const std::filesystem::path& path,
                                                     std::string name) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("opening layer " + path.string(), errno);
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  std::unique_ptr<GzipStream> s(new GzipStream(std::move(fd), std::move(name)));
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  return s;
}

GzipStream::GzipStream(UniqueFd fd, std::string name)
    : fd_(std::move(fd)), name_(std::move(name)), chunks_(kChunks) {
  for (auto& c : chunks_) free_.push_back(&c);
}

GzipStream::~GzipStream() {
  {
    std::lock_guard lk(m_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::optional<Error> GzipStream::error() {
  std::lock_guard lk(m_);
  return error_;
}

Result<std::span<const uint8_t>> GzipStream::read() {
  std::unique_lock lk(m_);
  if (held_) {
    free_.push_back(std::exchange(held_, nullptr));
    cv_.notify_all();
  }
  cv_.wait(lk, [&] { return !full_.empty() || done_; });
  if (full_.empty()) {
    if (error_) return *error_;
    return std::span<const uint8_t>();
  }
  held_ = full_.front();
  full_.pop_front();
  return std::span<const uint8_t>(*held_);
}

std::vector<uint8_t>* GzipStream::take_free() {
  std::vector<uint8_t>* c = nullptr;
  {
    std::unique_lock lk(m_);
    cv_.wait(lk, [&] { return !free_.empty() || stop_; });
    if (stop_) return nullptr;
    c = free_.back();
    free_.pop_back();
  }
  c->resize(kChunk);
  return c;
}

void GzipStream::publish(std::vector<uint8_t>* chunk) {
  {
    std::lock_guard lk(m_);
    full_.push_back(chunk);
  }
  cv_.notify_all();
}

void GzipStream::run() {
  Result<void> r;
  try {
    r = inflate_all();
  } catch (const std::bad_alloc&) {
    r = make_error(Errc::no_memory, "inflating the gzip stream");
  }
  {
    std::lock_guard lk(m_);
    if (!r) error_ = std::move(r).error();
    done_ = true;
  }
  cv_.notify_all();
}

// One or more gzip members (RFC 1952 section 2.2), each checked against its trailer by ISA-L
// (crc_flag ISAL_GZIP: CRC-32 and length). Bytes after a member that do not start another one
// end the stream, as they do in libarchive's gzip reader.
Result<void> GzipStream::inflate_all() {
  auto s = std::make_unique<inflate_state>();
  isal_inflate_init(s.get());
  s->crc_flag = ISAL_GZIP;
  std::vector<uint8_t> in(kInput);
  uint64_t read_total = 0;
  bool eof = false;
  bool in_member = true;
  std::vector<uint8_t>* out = take_free();
  size_t used = 0;
  auto where = [&] { return " near compressed byte " + std::to_string(read_total - s->avail_in); };
  while (out) {
    if (s->avail_in == 0 && !eof) {
      ssize_t n = ::read(fd_.get(), in.data(), in.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return sys_error("reading the gzip stream", errno);
      eof = n == 0;
      read_total += uint64_t(n);
      s->next_in = in.data();
      s->avail_in = uint32_t(n);
    }
    if (!in_member) {
      if (s->avail_in == 0) {
        if (eof) break;
        continue;
      }
      if (s->next_in[0] != 0x1f) break;
      uint8_t* next = s->next_in;
      uint32_t avail = s->avail_in;
      isal_inflate_reset(s.get());
      s->crc_flag = ISAL_GZIP;
      s->next_in = next;
      s->avail_in = avail;
      in_member = true;
    }
    const uint32_t avail_before = s->avail_in;
    s->next_out = out->data() + used;
    s->avail_out = uint32_t(out->size() - used);
    int r = isal_inflate(s.get());
    if (r != ISAL_DECOMP_OK && r != ISAL_END_INPUT)
      return make_error(r == ISAL_INCORRECT_CHECKSUM ? Errc::integrity : Errc::malformed,
                        std::string("gzip stream: ") + inflate_why(r) + where());
    const size_t produced = out->size() - s->avail_out - used;
    used += produced;
    if (s->block_state == ISAL_BLOCK_FINISH) {
      in_member = false;
    } else if (s->avail_out && s->avail_in == 0 && eof) {
      return make_error(Errc::malformed, "gzip stream: truncated (the file ends inside a member" +
                                             where() + ")");
    } else if (s->avail_out && s->avail_in == avail_before && !produced && avail_before) {
      return make_error(Errc::malformed, "gzip stream: inflate made no progress" + where());
    }
    if (used == out->size()) {
      publish(out);
      out = take_free();
      used = 0;
    }
  }
  if (out && used) {
    out->resize(used);
    publish(out);
  }
  return {};
}

}  // namespace flick::image
