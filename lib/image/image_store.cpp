// The image cache. Layout under the store directory:
//   blobs/sha256/<hex>        verified blobs (manifests, configs, layers)
//   images/<hex>.json         a resolved image: its config and layer digests, by image digest
//   refs/<hex of ref>.json    which image digest a reference named when last pulled
//   rootfs/<hex>-<key>.ext4   built root filesystems, read-only once published
//   locks/, tmp/              build locks and in-progress files (flock-held while live)
//   pins/<random>.pin         the digests a pull in flight relies on (flock-held while live)
//   gc.lock                   taken to pin a digest and for a whole garbage collection
// Everything is published with link() or rename() of a complete file, so an interrupted pull
// or build leaves only tmp/ and pins/ leftovers, which prune() removes.
//
// Pulls against garbage collection (prune() and remove(), in this or another process): a
// pull writes its image and ref records only at the end, so until then nothing references
// the blobs it has fetched or found already present. It therefore pins each digest before it
// looks for or publishes that blob (BlobStore::pinned_by), and a cached image's digest before
// it reads the image's record, by appending it to its pin file, which it holds flock()ed until
// its records are written and then removes. Pinning and collect_garbage() exclude each other
// through a flock on gc.lock, held for one pin or one whole collection, so:
//   - a collection keeps every blob a live pin names, and the image record and rootfs images
//     of a pinned image digest (and with the record, the blobs it lists);
//   - a pull that pins after a collection then finds the blob as the collection left it, and
//     fetches it again if it was removed.
// rootfs() keeps its pull's pin until the rootfs is published, so the record and layers it
// builds from outlive an `image rm` and a prune meanwhile.
// A collection reads the pins before the refs: a pin it finds released belongs to a pull whose
// records are already written. A pin nobody holds (a killed pull) is dead: its digests are not
// kept, and prune() removes it.
#include <flick/image.h>

#include "base/fd.h"
#include "base/flock.h"
#include "image/blob_store.h"
#include "image/source.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

namespace flick {

namespace fs = std::filesystem;
using image::BlobStore;
using image::Descriptor;
using image::ResolvedImage;
using image::TempFile;
using nlohmann::json;

struct ImageStore::State {
  fs::path root;
  StoreOptions options;
  BlobStore blobs;
  State(fs::path r, StoreOptions o) : root(r), options(std::move(o)), blobs(r) {}
};

namespace {

Result<void> write_record(const fs::path& tmp_dir, const fs::path& dest, const std::string& text) {
  FLICK_TRY_ASSIGN(auto f, TempFile::create(tmp_dir, ".json"));
  if (::write(f.fd(), text.data(), text.size()) != ssize_t(text.size()))
    return sys_error("writing " + f.path().string(), errno);
  if (::fsync(f.fd()) < 0 || ::rename(f.path().c_str(), dest.c_str()) < 0)
    return sys_error("publishing " + dest.string(), errno);
  return {};
}

Result<std::string> read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return make_error(Errc::not_found, "no record " + p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string image_record(const ResolvedImage& img) {
  json j;
  j["image_digest"] = img.image_digest;
  j["config_digest"] = img.config_digest;
  j["blob_bytes"] = img.blob_bytes;
  json layers = json::array();
  for (const auto& l : img.layers)
    layers.push_back({{"digest", l.digest}, {"mediaType", l.media_type}, {"size", l.size}});
  j["layers"] = layers;
  return j.dump(2);
}

Result<ResolvedImage> parse_image_record(const std::string& text, const BlobStore& blobs) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return make_error(Errc::malformed, "corrupt image record");
  try {
    ResolvedImage img;
    img.image_digest = j.at("image_digest").get<std::string>();
    img.config_digest = j.at("config_digest").get<std::string>();
    img.blob_bytes = j.value("blob_bytes", uint64_t{0});
    for (const auto& l : j.at("layers")) {
      Descriptor d;
      d.digest = l.at("digest").get<std::string>();
      d.media_type = l.value("mediaType", "");
      d.size = l.value("size", uint64_t{0});
      img.layers.push_back(std::move(d));
    }
    FLICK_TRY_ASSIGN(std::string cfg, blobs.read(img.config_digest));
    FLICK_TRY_ASSIGN(img.config, image::parse_config(cfg));
    return img;
  } catch (const json::exception& e) {
    return make_error(Errc::malformed, std::string("corrupt image record: ") + e.what());
  }
}

bool try_lock(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
  ::close(fd);
  return ok;
}

// gc.lock, held by one pin or by one whole garbage collection.
Result<UniqueFd> gc_lock(const fs::path& root) { return lock_exclusive(root / "gc.lock"); }

// One pull's pin file (see the top of this file). Created at the first pin, under gc.lock so
// that no collection sees it before it is locked; removed on destruction.
class Pin {
 public:
  explicit Pin(fs::path root) : root_(std::move(root)) {}
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;

  // A failure is kept for status(): the pull must not publish records it could not protect.
  void add(std::string_view digest) {
    std::lock_guard<std::mutex> g(mu_);
    if (error_ || digest.empty() || !pinned_.insert(std::string(digest)).second) return;
    if (auto r = append(digest); !r) error_ = std::move(r).error().with_context("pinning " + std::string(digest));
  }
  Result<void> status() const {
    std::lock_guard<std::mutex> g(mu_);
    if (error_) return *error_;
    return {};
  }

 private:
  Result<void> append(std::string_view digest) {
    FLICK_TRY_ASSIGN(auto lock, gc_lock(root_));
    if (!file_) {
      FLICK_TRY_ASSIGN(auto f, TempFile::create(root_ / "pins", ".pin"));
      file_.emplace(std::move(f));
    }
    const std::string line = std::string(digest) + "\n";
    if (int err = write_all(file_->fd(), line)) return sys_error("writing " + file_->path().string(), err);
    return {};
  }

  const fs::path root_;
  mutable std::mutex mu_;
  std::set<std::string> pinned_;
  std::optional<TempFile> file_;  // flock()ed while open; unlinked on destruction
  std::optional<Error> error_;
};

}  // namespace

ImageStore::ImageStore(std::unique_ptr<State> s) : s_(std::move(s)) {}
ImageStore::ImageStore(ImageStore&&) noexcept = default;
ImageStore& ImageStore::operator=(ImageStore&&) noexcept = default;
ImageStore::~ImageStore() = default;

const fs::path& ImageStore::dir() const { return s_->root; }

fs::path ImageStore::default_dir() {
  if (const char* h = std::getenv("FLICK_HOME"); h && *h) return h;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "flick";
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : "/tmp") / ".cache" / "flick";
}

Result<ImageStore> ImageStore::open(const fs::path& dir, StoreOptions options) {
  auto s = std::make_unique<State>(dir, std::move(options));
  FLICK_TRY(s->blobs.init());
  std::error_code ec;
  for (const char* sub : {"images", "refs", "rootfs", "locks", "pins"}) {
    fs::create_directories(dir / sub, ec);
    if (ec) return sys_error("creating image store directory " + (dir / sub).string(), ec.value());
  }
  return ImageStore(std::move(s));
}

namespace {

fs::path ref_record_path(const fs::path& root, const std::string& canonical) {
  return root / "refs" / (image::digest_hex(image::sha256_digest(canonical)) + ".json");
}

fs::path image_record_path(const fs::path& root, std::string_view digest) {
  return root / "images" / (image::digest_hex(digest) + ".json");
}

}  // namespace

Result<PullPolicy> parse_pull_policy(std::string_view text) {
  if (text == "missing") return PullPolicy::missing;
  if (text == "always") return PullPolicy::always;
  if (text == "never") return PullPolicy::never;
  return make_error(Errc::invalid_argument, "pull policy '" + std::string(text) + "': expected always, missing or never");
}

namespace {

// The image `ref` names in the cache with all of its blobs there, or an Errc::not_found error.
// Pins the image's digest (through `blobs`) before reading its record.
Result<ResolvedImage> cached_image(const fs::path& root, const BlobStore& blobs, const ImageReference& ref) {
  std::string digest = ref.digest;
  if (digest.empty()) {
    if (auto rec = read_text(ref_record_path(root, ref.to_string())); rec) {
      json j = json::parse(*rec, nullptr, false);
      if (j.is_object()) digest = j.value("image_digest", "");
    }
  }
  if (digest.empty()) return make_error(Errc::not_found, ref.to_string() + " is not in the image cache at " + root.string());
  blobs.pin(digest);
  auto rec = read_text(image_record_path(root, digest));
  if (!rec) return make_error(Errc::not_found, ref.to_string() + " (" + digest + ") is not in the image cache at " + root.string());
  FLICK_TRY_ASSIGN(auto img, parse_image_record(*rec, blobs));
  for (const auto& l : img.layers)
    if (!blobs.has(l.digest))
      return make_error(Errc::not_found, ref.to_string() + ": layer " + l.digest + " is missing from the image cache at " +
                                             root.string());
  return img;
}

// A pull whose blobs and image digest `pin` holds (see the top of this file): until the records
// are written, and for as long as the caller keeps `pin` after that.
Result<PulledImage> pull_pinned(const fs::path& root, const BlobStore& store_blobs, const StoreOptions& store_options,
                                const ImageReference& ref, const PullOptions& options, Pin& pin) {
  const std::string canonical = ref.to_string();
  const fs::path ref_path = ref_record_path(root, canonical);
  const BlobStore blobs = store_blobs.pinned_by([&pin](std::string_view digest) { pin.add(digest); });
  Result<ResolvedImage> img = make_error(Errc::not_found, "not looked up");
  if (options.policy != PullPolicy::always) img = cached_image(root, blobs, ref);
  if (!img && options.policy == PullPolicy::never)
    return std::move(img).error().with_context("the pull policy is never");
  const bool fetched = !img;
  if (fetched) {
    img = ref.transport == ImageTransport::registry ? image::pull_registry(blobs, ref, store_options, options.progress)
                                                    : image::import_local(blobs, ref, store_options.platform);
    if (!img) return std::move(img).error();
  }
  FLICK_TRY(pin.status());
  fs::path tmp = store_blobs.tmp_dir();
  if (fetched) FLICK_TRY(write_record(tmp, image_record_path(root, img->image_digest), image_record(*img)));
  if (fetched || !fs::exists(ref_path)) {
    json r{{"reference", canonical}, {"image_digest", img->image_digest}};
    FLICK_TRY(write_record(tmp, ref_path, r.dump(2)));
  }
  return PulledImage{canonical, img->image_digest, img->config, img->blob_bytes};
}

}  // namespace

Result<PulledImage> ImageStore::pull(std::string_view text, const PullOptions& options) {
  FLICK_TRY_ASSIGN(auto ref, ImageReference::parse(text, s_->options.default_registry));
  Pin pin(s_->root);
  return pull_pinned(s_->root, s_->blobs, s_->options, ref, options, pin);
}

Result<Rootfs> ImageStore::rootfs(std::string_view text, const RootfsOptions& options, const PullOptions& pull_options) {
  FLICK_TRY_ASSIGN(auto ref, ImageReference::parse(text, s_->options.default_registry));
  // Held until the rootfs is published: an `image rm` and a prune meanwhile (or while this
  // waits for another process's build of it) keep the records and layers it is built from.
  Pin pin(s_->root);
  FLICK_TRY_ASSIGN(auto pulled, pull_pinned(s_->root, s_->blobs, s_->options, ref, pull_options, pin));
  FLICK_TRY_ASSIGN(std::string rec, read_text(image_record_path(s_->root, pulled.image_digest)));
  auto img = parse_image_record(rec, s_->blobs);
  if (!img) return std::move(img).error();

  const std::string hex = image::digest_hex(img->image_digest);
  const std::string key = hex + "-" + (options.size_bytes ? "s" + std::to_string(options.size_bytes)
                                                          : "h" + std::to_string(options.headroom_bytes));
  const fs::path dest = s_->root / "rootfs" / (key + ".ext4");
  Rootfs out{dest, img->image_digest, img->config, 0};
  struct stat st;
  if (::stat(dest.c_str(), &st) == 0) {
    out.size_bytes = uint64_t(st.st_size);
    return out;
  }

  // One builder per image and size at a time; the others wait and then reuse its result.
  FLICK_TRY_ASSIGN(auto lock, lock_exclusive(s_->root / "locks" / (key + ".lock")));
  if (::stat(dest.c_str(), &st) != 0) {
    std::vector<fs::path> layers;
    for (const auto& l : img->layers) layers.push_back(s_->blobs.path_of(l.digest));
    FLICK_TRY_ASSIGN(auto tmp, TempFile::create(s_->blobs.tmp_dir(), ".ext4"));
    auto built = build_rootfs(layers, tmp.path(), options);
    if (!built) return std::move(built).error().with_context("image " + ref.to_string());
    if (::chmod(tmp.path().c_str(), 0444) < 0) return sys_error("sealing " + tmp.path().string(), errno);
    FLICK_TRY(tmp.publish(dest));
    if (::stat(dest.c_str(), &st) != 0) return sys_error("checking " + dest.string(), errno);
  }
  out.size_bytes = uint64_t(st.st_size);
  return out;
}

Result<std::vector<ImageInfo>> ImageStore::list() {
  std::vector<ImageInfo> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(s_->root / "refs", ec)) {
    auto text = read_text(e.path());
    if (!text) continue;
    json j = json::parse(*text, nullptr, false);
    if (!j.is_object()) continue;
    ImageInfo info;
    info.reference = j.value("reference", "");
    info.image_digest = j.value("image_digest", "");
    if (auto rec = read_text(image_record_path(s_->root, info.image_digest)); rec) {
      json r = json::parse(*rec, nullptr, false);
      if (r.is_object()) info.blob_bytes = r.value("blob_bytes", uint64_t{0});
    }
    const std::string prefix = image::digest_hex(info.image_digest) + "-";
    for (const auto& f : fs::directory_iterator(s_->root / "rootfs", ec))
      if (f.path().filename().string().rfind(prefix, 0) == 0) info.rootfs.push_back(f.path());
    out.push_back(std::move(info));
  }
  if (ec) return sys_error("listing " + s_->root.string(), ec.value());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.reference < b.reference; });
  return out;
}

namespace {

// Removes image records, blobs and rootfs images that no reference record or live pin leads
// to; with `leftovers`, also tmp/, locks/ and pins/ files of interrupted pulls and builds.
Result<void> collect_garbage(const fs::path& root, bool leftovers, PruneStats* stats) {
  FLICK_TRY_ASSIGN(auto lock, gc_lock(root));  // no pull pins anything until we are done
  std::error_code ec;
  auto remove = [&](const fs::path& p) {
    std::error_code e2;
    uint64_t size = fs::is_regular_file(p, e2) ? fs::file_size(p, e2) : 0;
    if (fs::remove(p, e2)) {
      ++stats->files_removed;
      stats->bytes_freed += size;
    }
  };
  std::set<std::string> live_images, live_blobs;
  // Pins first: a pin released from here on belongs to a pull whose refs are written.
  for (const auto& e : fs::directory_iterator(root / "pins", ec)) {
    if (try_lock(e.path())) {  // dead: its pull was killed
      if (leftovers) remove(e.path());
      continue;
    }
    std::ifstream in(e.path());
    for (std::string digest; std::getline(in, digest);) {
      live_images.insert(image::digest_hex(digest));
      live_blobs.insert(image::digest_hex(digest));
    }
  }
  for (const auto& e : fs::directory_iterator(root / "refs", ec)) {
    auto text = read_text(e.path());
    json j = text ? json::parse(*text, nullptr, false) : json();
    if (j.is_object()) live_images.insert(image::digest_hex(j.value("image_digest", "")));
  }
  for (const auto& e : fs::directory_iterator(root / "images", ec)) {
    const std::string hex = e.path().stem().string();
    if (!live_images.count(hex)) {
      remove(e.path());
      continue;
    }
    auto text = read_text(e.path());
    json j = text ? json::parse(*text, nullptr, false) : json();
    if (!j.is_object()) continue;
    live_blobs.insert(hex);
    live_blobs.insert(image::digest_hex(j.value("config_digest", "")));
    if (j.contains("layers"))
      for (const auto& l : j["layers"]) live_blobs.insert(image::digest_hex(l.value("digest", "")));
  }
  for (const auto& e : fs::directory_iterator(root / "blobs" / "sha256", ec))
    if (!live_blobs.count(e.path().filename().string())) remove(e.path());
  for (const auto& e : fs::directory_iterator(root / "rootfs", ec)) {
    std::string name = e.path().filename().string();
    if (!live_images.count(name.substr(0, name.find('-')))) remove(e.path());
  }
  // Leftovers of interrupted pulls and builds: nobody holds their lock any more.
  if (leftovers)
    for (const char* sub : {"tmp", "locks"})
      for (const auto& e : fs::directory_iterator(root / sub, ec))
        if (try_lock(e.path())) remove(e.path());
  if (ec) return sys_error("collecting unused files in " + root.string(), ec.value());
  return {};
}

}  // namespace

Result<PruneStats> ImageStore::prune() {
  PruneStats stats;
  FLICK_TRY(collect_garbage(s_->root, true, &stats));
  return stats;
}

Result<PruneStats> ImageStore::remove(std::string_view text) {
  FLICK_TRY_ASSIGN(auto ref, ImageReference::parse(text, s_->options.default_registry));
  const fs::path rec = ref_record_path(s_->root, ref.to_string());
  if (::unlink(rec.c_str()) < 0) {
    if (errno == ENOENT)
      return make_error(Errc::not_found, "no image " + ref.to_string() + " in the image cache at " + s_->root.string());
    return sys_error("removing " + rec.string(), errno);
  }
  PruneStats stats;
  FLICK_TRY(collect_garbage(s_->root, false, &stats));
  return stats;
}

}  // namespace flick
