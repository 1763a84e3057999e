// OCI image-spec and Docker v2 JSON documents: parsed into values, nothing fetched here.
#pragma once

#include <flick/image.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace flick::image {

namespace media {
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerLayerTar = "application/vnd.docker.image.rootfs.diff.tar";
}  // namespace media

bool is_index_media_type(std::string_view mt);
bool is_manifest_media_type(std::string_view mt);
// Layer media types flick can apply: OCI tar / tar+gzip / tar+zstd (and their
// non-distributable forms) and Docker's rootfs.diff.tar(.gzip).
bool is_layer_media_type(std::string_view mt);

struct Descriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
  std::string os, architecture, variant;  // platform, in index entries
  std::string ref_name;                   // org.opencontainers.image.ref.name annotation
};

struct Index {
  std::vector<Descriptor> manifests;
};

struct Manifest {
  Descriptor config;
  std::vector<Descriptor> layers;
};

// The media type a document declares (its "mediaType" field), or "" if absent.
std::string declared_media_type(std::string_view json);

Result<Index> parse_index(std::string_view json);
Result<Manifest> parse_manifest(std::string_view json);
// The runtime-relevant parts of an image config, and its rootfs.diff_ids.
Result<ImageConfig> parse_config(std::string_view json, std::vector<std::string>* diff_ids = nullptr);

// The index entry for `platform` ("os/arch[/variant]").
Result<Descriptor> select_platform(const Index& index, std::string_view platform);

// One image of a `docker save` archive's manifest.json.
struct DockerArchiveImage {
  std::string config;  // member path
  std::vector<std::string> repo_tags;
  std::vector<std::string> layers;  // member paths, lowest first
};
Result<std::vector<DockerArchiveImage>> parse_docker_archive_manifest(std::string_view json);

}  // namespace flick::image
