#include "cpio_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <memory>

namespace flick::machine::testing {

std::map<std::string, CpioItem> read_cpio(const std::vector<uint8_t>& bytes, std::string* error) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_format_cpio(a.get());
  archive_read_support_filter_gzip(a.get());
  std::map<std::string, CpioItem> items;
  if (archive_read_open_memory(a.get(), bytes.data(), bytes.size()) != ARCHIVE_OK) {
    *error = archive_error_string(a.get());
    return {};
  }
  archive_entry* e = nullptr;
  int rc;
  while ((rc = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK) {
    CpioItem item;
    item.mode = archive_entry_mode(e);
    item.rdev_major = archive_entry_rdevmajor(e);
    item.rdev_minor = archive_entry_rdevminor(e);
    item.uid = archive_entry_uid(e);
    item.gid = archive_entry_gid(e);
    item.mtime = archive_entry_mtime(e);
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a.get(), buf, sizeof buf)) > 0) item.data.append(buf, static_cast<size_t>(n));
    if (n < 0) {
      *error = archive_error_string(a.get());
      return {};
    }
    items[archive_entry_pathname(e)] = std::move(item);
  }
  if (rc != ARCHIVE_EOF) {
    *error = archive_error_string(a.get());
    return {};
  }
  if (archive_format(a.get()) != ARCHIVE_FORMAT_CPIO_SVR4_NOCRC) {
    *error = "not a newc cpio archive";
    return {};
  }
  return items;
}

}  // namespace flick::machine::testing
