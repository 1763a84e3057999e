#include "image/layer_reader.h"

#include "image/gzip_stream.h"

#include <archive.h>
#include <archive_entry.h>

namespace flick::image {

const char* archive_why(archive* a) {
  const char* why = archive_error_string(a);
  return why ? why : "unknown archive error";
}

void LayerReader::Deleter::operator()(archive* a) const { archive_read_free(a); }

LayerReader::LayerReader(std::unique_ptr<archive, Deleter> a, std::string name)
    : a_(std::move(a)), name_(std::move(name)) {}
LayerReader::LayerReader(LayerReader&&) noexcept = default;
LayerReader& LayerReader::operator=(LayerReader&&) noexcept = default;
LayerReader::~LayerReader() = default;

static std::unique_ptr<archive, LayerReader::Deleter> new_tar_reader() {
  std::unique_ptr<archive, LayerReader::Deleter> a(archive_read_new());
  if (!a) return a;
  // Layers are tars; compression is detected from the bytes (gzip, zstd or none), which also
  // covers blobs whose media type under-states their compression.
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_zstd(a.get());
  archive_read_support_filter_none(a.get());
  return a;
}

// libarchive's read callback for a gzip layer: the stream's next decompressed chunk. The
// stream keeps its error; failure() reports it as it is.
static la_ssize_t read_gzip(archive* a, void* stream, const void** buf) {
  auto chunk = static_cast<GzipStream*>(stream)->read();
  if (!chunk) {
    archive_set_error(a, EIO, "%s", chunk.error().message.c_str());
    return ARCHIVE_FATAL;
  }
  *buf = chunk->data();
  return la_ssize_t(chunk->size());
}

Result<LayerReader> LayerReader::open_file(const std::filesystem::path& path, GzipInflater inflater) {
  auto a = new_tar_reader();
  if (!a) return make_error(Errc::no_memory, "allocating a tar reader");
  const std::string name = path.filename().string();
  if (inflater == GzipInflater::isal) {
    FLICK_TRY_ASSIGN(bool gzip, GzipStream::is_gzip(path));
    if (gzip) {
      FLICK_TRY_ASSIGN(auto stream, GzipStream::open(path, name));
      if (archive_read_open(a.get(), stream.get(), nullptr, read_gzip, nullptr) != ARCHIVE_OK) {
        if (auto e = stream->error())
          return make_error(e->code, "opening layer " + path.string() + ": " + e->message);
        return make_error(Errc::malformed, "opening layer " + path.string() + ": " +
                                               archive_why(a.get()));
      }
      LayerReader r(std::move(a), name);
      r.gzip_ = std::move(stream);
      return r;
    }
  }
  if (archive_read_open_filename(a.get(), path.c_str(), 256 * 1024) != ARCHIVE_OK)
    return make_error(Errc::malformed, "opening layer " + path.string() + ": " +
                                           archive_why(a.get()));
  return LayerReader(std::move(a), name);
}

Result<LayerReader> LayerReader::open_memory(std::span<const uint8_t> data, std::string name) {
  auto a = new_tar_reader();
  if (!a) return make_error(Errc::no_memory, "allocating a tar reader");
  if (archive_read_open_memory(a.get(), data.data(), data.size()) != ARCHIVE_OK)
    return make_error(Errc::malformed, "opening layer " + name + ": " + archive_why(a.get()));
  return LayerReader(std::move(a), std::move(name));
}

Error LayerReader::failure(const std::string& what) {
  // Corrupt gzip data can look like a bad tar before the inflater sees it is corrupt: when the
  // stream has an error, at the point of failure or further on, that error is the cause.
  if (gzip_) {
    while (true) {
      auto chunk = gzip_->read();
      if (!chunk || chunk->empty()) break;
    }
    if (auto e = gzip_->error()) return make_error(e->code, what + " in layer " + name_ + ": " + e->message);
  }
  return make_error(Errc::malformed, what + " in layer " + name_ + ": " + archive_why(a_.get()));
}

Result<archive_entry*> LayerReader::next() {
  archive_entry* e = nullptr;
  int r = archive_read_next_header(a_.get(), &e);
  if (r < ARCHIVE_WARN) return failure("reading a tar header");
  if (r == ARCHIVE_EOF) {
    // The tar ends before the gzip stream does: read on, so its trailers are checked too.
    while (gzip_) {
      auto chunk = gzip_->read();
      if (!chunk) return failure("checking the end of the gzip stream");
      if (chunk->empty()) break;
    }
    return static_cast<archive_entry*>(nullptr);
  }
  return e;
}

Result<void> LayerReader::read_data(
    const std::function<Result<void>(uint64_t, std::span<const uint8_t>)>& sink) {
  while (true) {
    const void* buf = nullptr;
    size_t len = 0;
    la_int64_t off = 0;
    int r = archive_read_data_block(a_.get(), &buf, &len, &off);
    if (r == ARCHIVE_EOF) return {};
    if (r < ARCHIVE_WARN) return failure("reading file data");
    if (len) FLICK_TRY(sink(uint64_t(off), {static_cast<const uint8_t*>(buf), len}));
  }
}

}  // namespace flick::image
