#include "image/manifest.h"

#include "image/sha256.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace flick::image {

using nlohmann::json;

namespace {

Error malformed(std::string_view what, std::string_view why) {
  return make_error(Errc::malformed, "parsing " + std::string(what) + ": " + std::string(why));
}

// nlohmann reports type mismatches by throwing; callers here get an Error instead.
template <class F>
auto guarded(std::string_view what, std::string_view text, F&& f) -> decltype(f(json{})) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return malformed(what, "not a JSON object");
  try {
    return f(j);
  } catch (const json::exception& e) {
    return malformed(what, e.what());
  }
}

std::vector<std::string> strings(const json& j, const char* key) {
  std::vector<std::string> out;
  if (auto it = j.find(key); it != j.end() && !it->is_null()) out = it->get<std::vector<std::string>>();
  return out;
}

Result<Descriptor> descriptor(const json& j, std::string_view what) {
  Descriptor d;
  d.media_type = j.value("mediaType", "");
  d.digest = j.at("digest").get<std::string>();
  d.size = j.value("size", uint64_t{0});
  if (!is_sha256_digest(d.digest))
    return malformed(what, "descriptor digest '" + d.digest + "' is not a sha256 digest");
  if (auto p = j.find("platform"); p != j.end() && p->is_object()) {
    d.os = p->value("os", "");
    d.architecture = p->value("architecture", "");
    d.variant = p->value("variant", "");
  }
  if (auto a = j.find("annotations"); a != j.end() && a->is_object())
    d.ref_name = a->value("org.opencontainers.image.ref.name", "");
  return d;
}

}  // namespace

bool is_index_media_type(std::string_view mt) { return mt == media::kOciIndex || mt == media::kDockerList; }

bool is_manifest_media_type(std::string_view mt) {
  return mt == media::kOciManifest || mt == media::kDockerManifest;
}

bool is_layer_media_type(std::string_view mt) {
  static constexpr std::string_view kTypes[] = {
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
      media::kDockerLayerTar,
  };
  return std::find(std::begin(kTypes), std::end(kTypes), mt) != std::end(kTypes);
}

std::string declared_media_type(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return {};
  auto it = j.find("mediaType");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<Index> parse_index(std::string_view text) {
  return guarded("image index", text, [](const json& j) -> Result<Index> {
    Index idx;
    for (const auto& m : j.at("manifests")) {
      FLICK_TRY_ASSIGN(auto d, descriptor(m, "image index"));
      idx.manifests.push_back(std::move(d));
    }
    return idx;
  });
}

Result<Manifest> parse_manifest(std::string_view text) {
  return guarded("image manifest", text, [](const json& j) -> Result<Manifest> {
    if (j.value("schemaVersion", 0) != 2)
      return malformed("image manifest", "schemaVersion is not 2 (Docker schema 1 is not supported)");
    Manifest m;
    FLICK_TRY_ASSIGN(m.config, descriptor(j.at("config"), "image manifest"));
    for (const auto& l : j.at("layers")) {
      FLICK_TRY_ASSIGN(auto d, descriptor(l, "image manifest"));
      if (!is_layer_media_type(d.media_type))
        return make_error(Errc::unsupported, "image manifest: layer " + d.digest +
                                                 " has unsupported media type '" + d.media_type + "'");
      m.layers.push_back(std::move(d));
    }
    return m;
  });
}

Result<ImageConfig> parse_config(std::string_view text, std::vector<std::string>* diff_ids) {
  return guarded("image config", text, [&](const json& j) -> Result<ImageConfig> {
    ImageConfig c;
    c.os = j.value("os", "linux");
    c.architecture = j.value("architecture", "amd64");
    if (auto it = j.find("config"); it != j.end() && it->is_object()) {
      const json& cfg = *it;
      c.entrypoint = strings(cfg, "Entrypoint");
      c.cmd = strings(cfg, "Cmd");
      c.env = strings(cfg, "Env");
      c.working_dir = cfg.value("WorkingDir", "");
      c.user = cfg.value("User", "");
      if (auto p = cfg.find("ExposedPorts"); p != cfg.end() && p->is_object())
        for (const auto& [port, _] : p->items()) c.exposed_ports.push_back(port);
      std::sort(c.exposed_ports.begin(), c.exposed_ports.end());
      if (auto l = cfg.find("Labels"); l != cfg.end() && l->is_object())
        for (const auto& [k, v] : l->items()) c.labels[k] = v.get<std::string>();
    }
    if (diff_ids) {
      diff_ids->clear();
      if (auto r = j.find("rootfs"); r != j.end() && r->is_object()) *diff_ids = strings(*r, "diff_ids");
    }
    return c;
  });
}

Result<Descriptor> select_platform(const Index& index, std::string_view platform) {
  std::string os(platform.substr(0, platform.find('/')));
  std::string rest(platform.substr(std::min(platform.size(), os.size() + 1)));
  std::string arch = rest.substr(0, rest.find('/'));
  std::string variant = rest.size() > arch.size() ? rest.substr(arch.size() + 1) : "";
  std::string seen;
  for (const auto& d : index.manifests) {
    if (d.os == os && d.architecture == arch && (variant.empty() || d.variant == variant)) return d;
    seen += (seen.empty() ? "" : ", ") + d.os + "/" + d.architecture;
  }
  return make_error(Errc::not_found, "image index has no manifest for " + std::string(platform) +
                                         " (has: " + (seen.empty() ? "none" : seen) + ")");
}

Result<std::vector<DockerArchiveImage>> parse_docker_archive_manifest(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_array()) return malformed("docker-archive manifest.json", "not a JSON array");
  try {
    std::vector<DockerArchiveImage> out;
    for (const auto& e : j) {
      DockerArchiveImage img;
      img.config = e.at("Config").get<std::string>();
      img.repo_tags = strings(e, "RepoTags");
      img.layers = strings(e, "Layers");
      out.push_back(std::move(img));
    }
    return out;
  } catch (const json::exception& e) {
    return malformed("docker-archive manifest.json", e.what());
  }
}

}  // namespace flick::image
