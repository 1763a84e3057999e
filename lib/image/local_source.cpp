// Local image sources in skopeo's transports: oci:DIR[:TAG], oci-archive:FILE[:TAG],
// docker-archive:FILE[:REPO:TAG]. See the OCI image-layout spec (image-layout.md).
#include "image/source.h"

#include "image/layer_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>

namespace flick::image {

namespace fs = std::filesystem;

Result<ResolvedImage> resolve_image(const BlobStore& store, Descriptor top, std::string_view platform,
                                    const FetchFn& fetch, const FetchLayersFn& fetch_layers) {
  for (int depth = 0;; ++depth) {
    if (depth > 4) return make_error(Errc::malformed, "image indexes nested too deeply");
    FLICK_TRY(fetch(top));
    FLICK_TRY_ASSIGN(std::string doc, store.read(top.digest));
    std::string mt = top.media_type.empty() ? declared_media_type(doc) : top.media_type;
    if (mt.empty()) mt = declared_media_type(doc);
    if (is_index_media_type(mt)) {
      FLICK_TRY_ASSIGN(auto idx, parse_index(doc));
      FLICK_TRY_ASSIGN(top, select_platform(idx, platform));
      continue;
    }
    if (!is_manifest_media_type(mt) && !mt.empty())
      return make_error(Errc::unsupported, "manifest " + top.digest + " has unsupported media type '" + mt + "'");
    FLICK_TRY_ASSIGN(auto m, parse_manifest(doc));
    ResolvedImage img;
    img.image_digest = top.digest;
    img.config_digest = m.config.digest;
    img.blob_bytes = doc.size();
    FLICK_TRY(fetch(m.config));
    FLICK_TRY_ASSIGN(std::string cfg, store.read(m.config.digest));
    std::vector<std::string> diff_ids;
    FLICK_TRY_ASSIGN(img.config, parse_config(cfg, &diff_ids));
    if (diff_ids.size() != m.layers.size())
      return make_error(Errc::malformed, "image " + top.digest + ": config lists " +
                                             std::to_string(diff_ids.size()) + " diff_ids for " +
                                             std::to_string(m.layers.size()) + " layers");
    img.blob_bytes += cfg.size();
    if (fetch_layers) FLICK_TRY(fetch_layers(m.layers));
    for (const auto& l : m.layers) {
      if (!fetch_layers) FLICK_TRY(fetch(l));
      img.blob_bytes += l.size;
    }
    img.layers = std::move(m.layers);
    return img;
  }
}

namespace {

Result<std::string> read_small_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return sys_error("reading " + p.string(), errno ? errno : ENOENT);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<Descriptor> pick_from_index(std::string_view index_json, const std::string& tag,
                                   const std::string& where) {
  FLICK_TRY_ASSIGN(auto idx, parse_index(index_json));
  if (tag.empty()) {
    if (idx.manifests.size() == 1) return idx.manifests.front();
    return make_error(Errc::invalid_argument, where + " holds " + std::to_string(idx.manifests.size()) +
                                                  " images: name one with :TAG");
  }
  for (const auto& d : idx.manifests)
    if (d.ref_name == tag) return d;
  return make_error(Errc::not_found, "no image tagged '" + tag + "' in " + where);
}

Result<ResolvedImage> import_layout(const BlobStore& store, const ImageReference& ref,
                                    std::string_view platform) {
  fs::path dir = ref.path;
  if (!fs::exists(dir / "oci-layout"))
    return make_error(Errc::not_found, dir.string() + " is not an OCI image layout (no oci-layout file)");
  FLICK_TRY_ASSIGN(std::string index, read_small_file(dir / "index.json"));
  FLICK_TRY_ASSIGN(auto top, pick_from_index(index, ref.tag, "OCI layout " + dir.string()));
  return resolve_image(store, top, platform, [&](const Descriptor& d) -> Result<void> {
    fs::path blob = dir / "blobs" / "sha256" / digest_hex(d.digest);
    return store.import_file(blob, d.digest);
  });
}

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

Result<ArchivePtr> open_archive(const fs::path& p) {
  ArchivePtr a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_none(a.get());
  if (archive_read_open_filename(a.get(), p.c_str(), 256 * 1024) != ARCHIVE_OK)
    return make_error(Errc::not_found, "opening archive " + p.string() + ": " + archive_why(a.get()));
  return a;
}

std::string member_name(archive_entry* e) {
  std::string n = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
  while (n.rfind("./", 0) == 0) n.erase(0, 2);
  return n;
}

Error archive_failure(archive* a, const fs::path& p) {
  return make_error(Errc::malformed, "reading archive " + p.string() + ": " +
                                         archive_why(a));
}

// Streams the current member into the store; returns its digest (checked against `expected`).
Result<std::string> member_to_store(archive* a, const BlobStore& store, std::string_view expected,
                                    const std::string& what) {
  FLICK_TRY_ASSIGN(auto w, store.writer());
  const void* buf;
  size_t len;
  la_int64_t off;
  int r;
  while ((r = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK)
    FLICK_TRY(w.write({static_cast<const uint8_t*>(buf), len}));
  if (r != ARCHIVE_EOF) return make_error(Errc::malformed, what + ": " + archive_why(a));
  return w.commit(expected, what);
}

Result<std::string> member_to_string(archive* a, const std::string& what) {
  std::string out;
  char buf[65536];
  la_ssize_t n;
  while ((n = archive_read_data(a, buf, sizeof buf)) > 0) {
    out.append(buf, size_t(n));
    if (out.size() > (4u << 20)) return make_error(Errc::limit, what + " is too large");
  }
  if (n < 0) return make_error(Errc::malformed, what + ": " + archive_why(a));
  return out;
}

Result<ResolvedImage> import_oci_archive(const BlobStore& store, const ImageReference& ref,
                                         std::string_view platform) {
  fs::path p = ref.path;
  FLICK_TRY_ASSIGN(auto a, open_archive(p));
  std::string index;
  bool have_layout = false;
  archive_entry* e;
  int r;
  while ((r = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK) {
    std::string n = member_name(e);
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    if (n == "index.json") {
      FLICK_TRY_ASSIGN(index, member_to_string(a.get(), p.string() + ":index.json"));
    } else if (n == "oci-layout") {
      have_layout = true;
    } else if (n.rfind("blobs/sha256/", 0) == 0) {
      std::string digest = "sha256:" + n.substr(13);
      if (!is_sha256_digest(digest)) continue;
      if (store.has(digest)) continue;
      FLICK_TRY(member_to_store(a.get(), store, digest, "blob " + n + " of " + p.string()));
    }
  }
  if (r != ARCHIVE_EOF) return archive_failure(a.get(), p);
  if (!have_layout || index.empty())
    return make_error(Errc::malformed, p.string() + " is not an OCI archive (no oci-layout or index.json)");
  FLICK_TRY_ASSIGN(auto top, pick_from_index(index, ref.tag, "OCI archive " + p.string()));
  return resolve_image(store, top, platform, [&](const Descriptor& d) -> Result<void> {
    if (!store.has(d.digest))
      return make_error(Errc::not_found, "OCI archive " + p.string() + " lacks blob " + d.digest);
    return {};
  });
}

std::string join_member(const std::string& dir_of, const std::string& target) {
  fs::path joined = (fs::path(dir_of).parent_path() / target).lexically_normal();
  return joined.string();
}

Result<ResolvedImage> import_docker_archive(const BlobStore& store, const ImageReference& ref) {
  fs::path p = ref.path;
  FLICK_TRY_ASSIGN(auto a, open_archive(p));
  std::map<std::string, std::string> json_members, blobs, symlinks;
  archive_entry* e;
  int r;
  while ((r = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK) {
    std::string n = member_name(e);
    if (archive_entry_filetype(e) == AE_IFLNK && archive_entry_symlink(e)) {
      symlinks[n] = join_member(n, archive_entry_symlink(e));
    } else if (archive_entry_filetype(e) == AE_IFREG) {
      if (n.size() > 5 && n.substr(n.size() - 5) == ".json") {
        FLICK_TRY_ASSIGN(json_members[n], member_to_string(a.get(), p.string() + ":" + n));
      } else if (n != "repositories" && n.substr(n.size() >= 7 ? n.size() - 7 : 0) != "VERSION") {
        FLICK_TRY_ASSIGN(blobs[n], member_to_store(a.get(), store, {}, p.string() + ":" + n));
      }
    }
  }
  if (r != ARCHIVE_EOF) return archive_failure(a.get(), p);
  auto mj = json_members.find("manifest.json");
  if (mj == json_members.end())
    return make_error(Errc::malformed, p.string() + " is not a docker archive (no manifest.json)");
  FLICK_TRY_ASSIGN(auto images, parse_docker_archive_manifest(mj->second));
  // RepoTags are compared in canonical form: "flick/test:t" names "docker.io/flick/test:t".
  auto canonical = [](const std::string& t) {
    auto parsed = ImageReference::parse(t);
    return parsed ? parsed->to_string() : t;
  };
  const DockerArchiveImage* img = nullptr;
  for (const auto& i : images) {
    if (ref.tag.empty() && images.size() == 1) img = &i;
    for (const auto& t : i.repo_tags)
      if (!ref.tag.empty() && canonical(t) == canonical(ref.tag)) img = &i;
  }
  if (!img)
    return make_error(Errc::not_found, ref.tag.empty() ? p.string() + " holds " + std::to_string(images.size()) + " images: name one with :REPO:TAG"
                                                       : "no image tagged '" + ref.tag + "' in " + p.string());
  auto resolve_member = [&](std::string n) {
    for (int i = 0; i < 8 && symlinks.count(n); ++i) n = symlinks[n];
    return n;
  };
  auto cfg = json_members.find(resolve_member(img->config));
  if (cfg == json_members.end())
    return make_error(Errc::malformed, p.string() + " lacks config " + img->config);
  ResolvedImage out;
  FLICK_TRY_ASSIGN(out.config_digest, store.put(cfg->second));
  out.image_digest = out.config_digest;  // no manifest: the image ID is the config digest
  std::vector<std::string> diff_ids;
  FLICK_TRY_ASSIGN(out.config, parse_config(cfg->second, &diff_ids));
  if (diff_ids.size() != img->layers.size())
    return make_error(Errc::malformed, p.string() + ": config lists " + std::to_string(diff_ids.size()) +
                                           " diff_ids for " + std::to_string(img->layers.size()) + " layers");
  out.blob_bytes = cfg->second.size();
  for (size_t i = 0; i < img->layers.size(); ++i) {
    auto b = blobs.find(resolve_member(img->layers[i]));
    if (b == blobs.end()) return make_error(Errc::malformed, p.string() + " lacks layer " + img->layers[i]);
    // Layers of a docker archive are uncompressed, so their digest is the config's diff_id.
    if (b->second != diff_ids[i])
      return make_error(Errc::integrity, p.string() + ": layer " + img->layers[i] + " has digest " +
                                             b->second + " but the config expects " + diff_ids[i]);
    Descriptor d;
    d.digest = b->second;
    d.media_type = std::string(media::kDockerLayerTar);
    d.size = uint64_t(fs::file_size(store.path_of(d.digest)));
    out.blob_bytes += d.size;
    out.layers.push_back(std::move(d));
  }
  return out;
}

}  // namespace

Result<ResolvedImage> import_local(const BlobStore& store, const ImageReference& ref,
                                   std::string_view platform) {
  switch (ref.transport) {
    case ImageTransport::oci_layout: return import_layout(store, ref, platform);
    case ImageTransport::oci_archive: return import_oci_archive(store, ref, platform);
    case ImageTransport::docker_archive: return import_docker_archive(store, ref);
    case ImageTransport::registry: break;
  }
  return make_error(Errc::invalid_argument, "not a local image reference: " + ref.to_string());
}

}  // namespace flick::image
