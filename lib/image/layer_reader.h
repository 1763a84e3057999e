// A layer tar (plain, gzip or zstd) read entry by entry with libarchive. A gzip layer file is
// inflated by a GzipStream (ISA-L, on its own thread) unless libarchive's zlib is asked for.
#pragma once

#include <flick/result.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>

struct archive;
struct archive_entry;

namespace flick::image {

// libarchive's message for the last failure (it can have none).
const char* archive_why(archive* a);

class GzipStream;

enum class GzipInflater { isal, libarchive };

class LayerReader {
 public:
  static Result<LayerReader> open_file(const std::filesystem::path& path,
                                       GzipInflater inflater = GzipInflater::isal);
  // `data` must outlive the reader (fuzzing and tests).
  static Result<LayerReader> open_memory(std::span<const uint8_t> data, std::string name);

  LayerReader(LayerReader&&) noexcept;
  LayerReader& operator=(LayerReader&&) noexcept;
  ~LayerReader();

  // The next entry header, or nullptr at the end of the archive (for a gzip layer, once the
  // whole stream and its trailers are checked). Unread data is skipped.
  Result<archive_entry*> next();
  // Streams the current entry's data as (offset, bytes) runs; holes of sparse entries are
  // simply not reported.
  Result<void> read_data(const std::function<Result<void>(uint64_t, std::span<const uint8_t>)>& sink);

  const std::string& name() const { return name_; }

 struct Deleter { void operator()(archive* a) const; };

 private:
  LayerReader(std::unique_ptr<archive, Deleter> a, std::string name);
  Error failure(const std::string& what);

  std::unique_ptr<GzipStream> gzip_;  // before a_: the archive reads from it until freed
  std::unique_ptr<archive, Deleter> a_;
  std::string name_;
};

}  // namespace flick::image
