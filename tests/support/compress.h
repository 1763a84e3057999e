// compress(): `data` as a single compressed stream (gzip, xz, ...) written by libarchive, for
// tests that feed compressed kernels and modules to flick.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <string>

namespace flick::testing {

// `add_filter` is one of libarchive's archive_write_add_filter_* (gzip, xz, zstd, ...).
inline std::string compress(const std::string& data, int (*add_filter)(archive*)) {
  archive* a = archive_write_new();
  archive_write_set_format_raw(a);
  add_filter(a);
  archive_write_set_bytes_in_last_block(a, 1);
  std::string buf(data.size() + 65536, '\0');
  size_t used = 0;
  archive_write_open_memory(a, buf.data(), buf.size(), &used);
  archive_entry* e = archive_entry_new();
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
  archive_write_header(a, e);
  archive_write_data(a, data.data(), data.size());
  archive_write_close(a);
  archive_entry_free(e);
  archive_write_free(a);
  buf.resize(used);
  return buf;
}

}  // namespace flick::testing
