#include "image/layer_reader.h"

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

Result<LayerReader> LayerReader::open_file(const std::filesystem::path& path) {
  auto a = new_tar_reader();
  if (!a) return make_error(Errc::no_memory, "allocating a tar reader");
  if (archive_read_open_filename(a.get(), path.c_str(), 256 * 1024) != ARCHIVE_OK)
    return make_error(Errc::malformed, "opening layer " + path.string() + ": " +
                                           archive_why(a.get()));
  return LayerReader(std::move(a), path.filename().string());
}

Result<LayerReader> LayerReader::open_memory(std::span<const uint8_t> data, std::string name) {
  auto a = new_tar_reader();
  if (!a) return make_error(Errc::no_memory, "allocating a tar reader");
  if (archive_read_open_memory(a.get(), data.data(), data.size()) != ARCHIVE_OK)
    return make_error(Errc::malformed, "opening layer " + name + ": " + archive_why(a.get()));
  return LayerReader(std::move(a), std::move(name));
}

Error LayerReader::failure(const std::string& what) const {
  return make_error(Errc::malformed, what + " in layer " + name_ + ": " + archive_why(a_.get()));
}

Result<archive_entry*> LayerReader::next() {
  archive_entry* e = nullptr;
  int r = archive_read_next_header(a_.get(), &e);
  if (r == ARCHIVE_EOF) return static_cast<archive_entry*>(nullptr);
  if (r < ARCHIVE_WARN) return failure("reading a tar header");
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
