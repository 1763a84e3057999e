#include "machine/initramfs.h"

#include "image/sha256.h"
#include "machine/files.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <unordered_map>

namespace flick::machine {
namespace fs = std::filesystem;

namespace {

// Bump when the base archive's layout changes, so cached archives are rebuilt.
constexpr std::string_view kBaseFormat = "flick-base-initramfs-1";

// The kernel's spelling of a module: file name without .ko(.xz|.zst|.gz), '-' as '_'.
std::string module_name(std::string_view path) {
  std::string name(path.substr(path.rfind('/') == std::string_view::npos ? 0 : path.rfind('/') + 1));
  for (std::string_view suffix : {".xz", ".zst", ".gz"})
    if (name.ends_with(suffix)) name.resize(name.size() - suffix.size());
  if (name.ends_with(".ko")) name.resize(name.size() - 3);
  for (char& c : name)
    if (c == '-') c = '_';
  return name;
}

// A module file's bytes, decompressed (.ko.xz, .ko.zst, .ko.gz): flick-init hands plain ELF
// to finit_module, which needs no in-kernel decompressor then.
Result<std::string> read_module(const fs::path& path) {
  FLICK_TRY_ASSIGN(auto data, read_file(path));
  if (path.extension() == ".ko") return data;
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_raw(a.get());
  archive_entry* e = nullptr;
  if (archive_read_open_memory(a.get(), data.data(), data.size()) != ARCHIVE_OK ||
      archive_read_next_header(a.get(), &e) != ARCHIVE_OK) {
    const char* why = archive_error_string(a.get());
    return make_error(Errc::malformed, "decompressing module " + path.string() + ": " +
                                           (why ? why : "unknown compression"));
  }
  // libarchive passes unknown bytes through as "no compression": insist on what the name says.
  const std::string ext = path.extension().string();
  const int filter = archive_filter_code(a.get(), 0);
  if (!((ext == ".xz" && filter == ARCHIVE_FILTER_XZ) || (ext == ".zst" && filter == ARCHIVE_FILTER_ZSTD) ||
        (ext == ".gz" && filter == ARCHIVE_FILTER_GZIP)))
    return make_error(Errc::malformed, "module " + path.string() +
                                           " is neither a plain .ko nor compressed as its name says");
  std::string out;
  char buf[65536];
  la_ssize_t n;
  while ((n = archive_read_data(a.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  if (n < 0)
    return make_error(Errc::malformed, "decompressing module " + path.string() + ": " +
                                           archive_error_string(a.get()));
  return out;
}

// "kernel/x.ko.xz" -> "kernel/x.ko": the name the module has in the initramfs.
std::string plain_module_path(std::string path) {
  for (std::string_view suffix : {".xz", ".zst", ".gz"})
    if (path.ends_with(suffix)) path.resize(path.size() - suffix.size());
  return path;
}

struct CpioEntry {
  mode_t mode;  // file type and permissions
  std::string data;
  unsigned rdev_major = 0, rdev_minor = 0;
};

// Entries by path (no leading slash); std::map keeps them sorted, parents before children.
using CpioTree = std::map<std::string, CpioEntry>;

void add_parents(CpioTree& tree, const std::string& path) {
  for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1))
    tree.try_emplace(path.substr(0, slash), CpioEntry{S_IFDIR | 0755, {}});
}

void add_file(CpioTree& tree, const std::string& path, std::string data, mode_t perm) {
  add_parents(tree, path);
  tree[path] = CpioEntry{S_IFREG | perm, std::move(data)};
}

la_ssize_t append_to_vector(archive*, void* out, const void* buf, size_t n) {
  auto* v = static_cast<std::vector<uint8_t>*>(out);
  const auto* b = static_cast<const uint8_t*>(buf);
  v->insert(v->end(), b, b + n);
  return static_cast<la_ssize_t>(n);
}

// newc cpio, deterministic: mtime 0, owner root, inode numbers in path order.
Result<std::vector<uint8_t>> pack_newc(const CpioTree& tree, bool gzip) {
  std::unique_ptr<archive, decltype(&archive_write_free)> a(archive_write_new(), archive_write_free);
  auto fail = [&](const std::string& what) {
    const char* why = archive_error_string(a.get());
    return make_error(Errc::io, "writing initramfs: " + what + ": " + (why ? why : "libarchive error"));
  };
  if (archive_write_set_format_cpio_newc(a.get()) != ARCHIVE_OK) return fail("newc format");
  if (gzip) {
    if (archive_write_add_filter_gzip(a.get()) != ARCHIVE_OK) return fail("gzip filter");
    // No timestamp in the gzip header, so equal inputs give equal bytes.
    if (archive_write_set_filter_option(a.get(), "gzip", "timestamp", nullptr) != ARCHIVE_OK)
      return fail("gzip without timestamp");
  }
  archive_write_set_bytes_in_last_block(a.get(), 1);  // no padding to 10 KiB blocks
  std::vector<uint8_t> out;
  if (archive_write_open(a.get(), &out, nullptr, append_to_vector, nullptr) != ARCHIVE_OK)
    return fail("open");
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
  int64_t ino = 1;
  for (const auto& [path, entry] : tree) {
    archive_entry_clear(e.get());
    archive_entry_set_pathname(e.get(), path.c_str());
    archive_entry_set_mode(e.get(), entry.mode);
    archive_entry_set_uid(e.get(), 0);
    archive_entry_set_gid(e.get(), 0);
    archive_entry_set_mtime(e.get(), 0, 0);
    archive_entry_set_ino64(e.get(), ino++);
    archive_entry_set_nlink(e.get(), S_ISDIR(entry.mode) ? 2 : 1);
    archive_entry_set_size(e.get(), static_cast<la_int64_t>(entry.data.size()));
    archive_entry_set_rdevmajor(e.get(), entry.rdev_major);
    archive_entry_set_rdevminor(e.get(), entry.rdev_minor);
    if (archive_write_header(a.get(), e.get()) != ARCHIVE_OK) return fail(path);
    if (!entry.data.empty() &&
        archive_write_data(a.get(), entry.data.data(), entry.data.size()) !=
            static_cast<la_ssize_t>(entry.data.size()))
      return fail(path);
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) return fail("close");
  return out;
}

}  // namespace

std::span<const std::string> default_guest_modules() {
  static const std::vector<std::string> modules{
      "virtio_mmio", "virtio_blk", "virtio_net", "virtio_rng", "vmw_vsock_virtio_transport", "ext4"};
  return modules;
}

Result<std::vector<std::string>> module_load_order(const fs::path& modules_dir,
                                                   std::span<const std::string> names) {
  std::ifstream dep_file(modules_dir / "modules.dep");
  if (!dep_file)
    return sys_error("reading " + (modules_dir / "modules.dep").string() +
                         " (an unpacked kernel needs `depmod -b <root> <release>`)", errno);
  std::unordered_map<std::string, std::vector<std::string>> deps;  // path -> its dependencies
  std::unordered_map<std::string, std::string> path_of;            // name -> path
  for (std::string line; std::getline(dep_file, line);) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string path = line.substr(0, colon);
    std::istringstream rest(line.substr(colon + 1));
    auto& d = deps[path];
    for (std::string dep; rest >> dep;) d.push_back(dep);
    path_of[module_name(path)] = path;
  }
  std::set<std::string> builtin;
  if (std::ifstream b(modules_dir / "modules.builtin"); b)
    for (std::string line; std::getline(b, line);) builtin.insert(module_name(line));

  std::vector<std::string> order;
  std::set<std::string> done;
  // Depth-first, dependencies before dependants; `chain` catches a cycle in a corrupt file.
  std::vector<std::string> chain;
  auto visit = [&](auto&& self, const std::string& path) -> Result<void> {
    if (done.count(path)) return {};
    if (std::find(chain.begin(), chain.end(), path) != chain.end())
      return make_error(Errc::malformed, "module dependency cycle through " + path + " in " +
                                             (modules_dir / "modules.dep").string());
    chain.push_back(path);
    // modprobe loads a line's dependencies from last to first.
    auto it = deps.find(path);
    if (it != deps.end())
      for (auto d = it->second.rbegin(); d != it->second.rend(); ++d) FLICK_TRY(self(self, *d));
    chain.pop_back();
    done.insert(path);
    order.push_back(path);
    return {};
  };
  for (const auto& name : names) {
    std::string key = module_name(name);
    if (auto p = path_of.find(key); p != path_of.end()) {
      FLICK_TRY(visit(visit, p->second));
    } else if (!builtin.count(key)) {
      return make_error(Errc::not_found, "kernel " + modules_dir.filename().string() +
                                             " has no module " + name +
                                             " (neither in modules.dep nor in modules.builtin)");
    }
  }
  return order;
}

Result<fs::path> build_base_initramfs(const GuestKernel& kernel, std::string_view init,
                                      std::span<const std::string> modules,
                                      const fs::path& cache_dir) {
  std::vector<std::string> order;
  if (kernel.modules_dir) {
    FLICK_TRY_ASSIGN(order, module_load_order(*kernel.modules_dir, modules));
  }
  if (!order.empty() && kernel.release.empty())
    return make_error(Errc::invalid_argument, "guest kernel " + kernel.vmlinuz.string() +
                                                  " has modules but no known release");

  CpioTree tree;
  if (init.empty()) return make_error(Errc::invalid_argument, "the initramfs needs flick-init: it is empty");
  add_file(tree, "init", std::string(init), 0755);
  add_parents(tree, "dev/console");
  tree["dev/console"] = CpioEntry{S_IFCHR | 0600, {}, 5, 1};
  std::string listing;
  for (const auto& path : order) {
    FLICK_TRY_ASSIGN(auto data, read_module(*kernel.modules_dir / path));
    std::string plain = plain_module_path(path);
    add_file(tree, "lib/modules/" + kernel.release + "/" + plain, std::move(data), 0644);
    listing += plain + "\n";
  }
  add_file(tree, "flick/modules", listing, 0644);

  // The cache key covers every byte that goes into the archive, and the layout version.
  image::Sha256 h;
  auto feed = [&h](std::string_view s) {
    uint64_t n = s.size();
    h.update(&n, sizeof n);
    h.update(s.data(), s.size());
  };
  feed(kBaseFormat);
  for (const auto& [path, entry] : tree) {
    feed(path);
    feed(std::to_string(entry.mode) + ":" + std::to_string(entry.rdev_major) + ":" +
         std::to_string(entry.rdev_minor));
    feed(entry.data);
  }
  std::string digest = h.digest().substr(7, 32);
  fs::path dir = cache_dir / "initramfs";
  fs::path out = dir / (digest + ".cpio.gz");
  std::error_code ec;
  if (fs::is_regular_file(out, ec)) return out;
  fs::create_directories(dir, ec);
  if (ec) return make_error(Errc::io, "creating " + dir.string() + ": " + ec.message());
  FLICK_TRY_ASSIGN(auto bytes, pack_newc(tree, /*gzip=*/true));
  FLICK_TRY(write_file_atomic(out, bytes.data(), bytes.size()));
  return out;
}

Result<std::vector<uint8_t>> config_archive(const std::string& config_json, const std::string& metadata_json) {
  CpioTree tree;
  add_file(tree, "flick/config.json", config_json, 0644);
  if (!metadata_json.empty()) add_file(tree, "flick/metadata.json", metadata_json, 0644);
  return pack_newc(tree, /*gzip=*/false);
}

Result<void> write_config_archive(const std::string& config_json, const fs::path& path,
                                  const std::string& metadata_json) {
  FLICK_TRY_ASSIGN(auto bytes, config_archive(config_json, metadata_json));
  return write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace flick::machine
