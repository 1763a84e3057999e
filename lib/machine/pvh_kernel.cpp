#include "machine/pvh_kernel.h"

#include "image/sha256.h"
#include "machine/files.h"

#include <archive.h>
#include <archive_entry.h>
#include <elf.h>

#include <cstring>
#include <memory>

namespace fs = std::filesystem;

namespace flick::machine {

namespace {

constexpr uint32_t kXenElfNotePhys32Entry = 18;

template <class T>
bool read_at(std::string_view bytes, uint64_t offset, T* out) {
  if (offset > bytes.size() || bytes.size() - offset < sizeof(T)) return false;
  std::memcpy(out, bytes.data() + offset, sizeof(T));
  return true;
}

// The compressed vmlinux of a bzImage (boot protocol 2.08+), or nothing.
std::optional<std::string_view> bzimage_payload(std::string_view image) {
  uint32_t magic = 0;
  uint16_t version = 0;
  uint8_t setup_sects = 0;
  uint32_t offset = 0, length = 0;
  if (!read_at(image, 0x202, &magic) || magic != 0x53726448 /* "HdrS" */) return std::nullopt;
  if (!read_at(image, 0x206, &version) || version < 0x208) return std::nullopt;
  if (!read_at(image, 0x1f1, &setup_sects) || !read_at(image, 0x248, &offset) || !read_at(image, 0x24c, &length))
    return std::nullopt;
  uint64_t start = (uint64_t{setup_sects ? setup_sects : 4u} + 1) * 512 + offset;
  if (start > image.size() || image.size() - start < length || length == 0) return std::nullopt;
  return image.substr(start, length);
}

// Decompresses `data` with whichever of libarchive's filters recognises it (gzip, xz, lzma,
// lz4 including the kernel's legacy frames, zstd, bzip2).
Result<std::string> decompress(std::string_view data, const fs::path& what) {
  std::unique_ptr<archive, int (*)(archive*)> a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_raw(a.get());
  archive_entry* entry = nullptr;
  if (archive_read_open_memory(a.get(), data.data(), data.size()) != ARCHIVE_OK ||
      archive_read_next_header(a.get(), &entry) != ARCHIVE_OK)
    return make_error(Errc::malformed, "decompressing the kernel in " + what.string() + ": " +
                                           (archive_error_string(a.get()) ? archive_error_string(a.get()) : "unknown format"));
  std::string out;
  char buf[1 << 16];
  la_ssize_t n;
  while ((n = archive_read_data(a.get(), buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (size_t{1} << 30)) return make_error(Errc::limit, "the kernel in " + what.string() + " is over 1 GiB");
  }
  if (n < 0)
    return make_error(Errc::malformed, "decompressing the kernel in " + what.string() + ": " +
                                           archive_error_string(a.get()));
  return out;
}

}  // namespace

bool has_pvh_entry(std::string_view elf) {
  Elf64_Ehdr eh;
  if (!read_at(elf, 0, &eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
    return false;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    if (!read_at(elf, eh.e_phoff + uint64_t{i} * eh.e_phentsize, &ph) || ph.p_type != PT_NOTE) continue;
    if (ph.p_offset > elf.size() || elf.size() - ph.p_offset < ph.p_filesz) continue;
    std::string_view notes = elf.substr(ph.p_offset, ph.p_filesz);
    for (uint64_t at = 0;;) {
      Elf64_Nhdr nh;
      if (!read_at(notes, at, &nh)) break;
      uint64_t name_at = at + sizeof nh;
      uint64_t desc_at = name_at + ((uint64_t{nh.n_namesz} + 3) & ~uint64_t{3});
      uint64_t next = desc_at + ((uint64_t{nh.n_descsz} + 3) & ~uint64_t{3});
      if (next > notes.size()) break;
      if (nh.n_type == kXenElfNotePhys32Entry && nh.n_namesz == 4 && notes.substr(name_at, 4) == std::string_view("Xen\0", 4))
        return true;
      at = next;
    }
  }
  return false;
}

Result<std::optional<fs::path>> pvh_vmlinux(const fs::path& bzimage, const fs::path& cache_dir) {
  FLICK_TRY_ASSIGN(std::string image, read_file(bzimage));
  auto payload = bzimage_payload(image);
  if (!payload) return std::optional<fs::path>{};
  fs::path out = cache_dir / "vmlinux" / image::sha256_digest(image).substr(7, 32);
  std::error_code ec;
  if (fs::is_regular_file(out, ec)) return std::optional<fs::path>{out};
  FLICK_TRY_ASSIGN(std::string vmlinux, decompress(*payload, bzimage));
  if (!has_pvh_entry(vmlinux)) return std::optional<fs::path>{};
  fs::create_directories(out.parent_path(), ec);
  if (ec) return make_error(Errc::io, "creating " + out.parent_path().string() + ": " + ec.message());
  FLICK_TRY(write_file_atomic(out, vmlinux.data(), vmlinux.size()));
  return std::optional<fs::path>{out};
}

}  // namespace flick::machine
