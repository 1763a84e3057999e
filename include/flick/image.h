// OCI images into ext4 root filesystems: references, the image config, the image cache and
// the low-level layer-to-ext4 builder.
//
// Nothing here mounts anything or needs root: layers are read with libarchive and written
// into an ext4 image file with libext2fs. Paths from layers are resolved inside the image only.
#pragma once

#include <flick/export.h>
#include <flick/result.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace flick {

// Where an image comes from. Local transports use skopeo's syntax.
enum class ImageTransport {
  registry,        // [host[:port]/]repo[:tag][@sha256:...], via the distribution spec v2
  oci_layout,      // oci:DIR[:TAG]
  oci_archive,     // oci-archive:FILE[:TAG]  (a tar of an OCI layout)
  docker_archive,  // docker-archive:FILE     (`docker save` output)
};

// An image reference as users write it: `busybox`, `library/alpine:3.19`,
// `localhost:5000/app@sha256:...`, `oci:/path/layout:tag`, `docker-archive:img.tar`.
struct FLICK_API ImageReference {
  ImageTransport transport = ImageTransport::registry;
  std::string registry;    // "docker.io", "localhost:5000" (registry transport only)
  std::string repository;  // "library/alpine" (registry transport only)
  std::string tag;         // "3.19"; empty when only a digest is given
  std::string digest;      // "sha256:<64 hex>" or empty
  std::string path;        // layout directory or archive file (local transports)

  // Parses `text`. A registry reference without a host uses `default_registry`; Docker Hub
  // names without a namespace get "library/"; neither tag nor digest means tag "latest".
  static Result<ImageReference> parse(std::string_view text,
                                      std::string_view default_registry = "docker.io");
  // The canonical form, e.g. "docker.io/library/alpine:3.19", "oci:/l:tag".
  std::string to_string() const;
};

// The parts of the OCI image config the machine layer runs the image with.
struct ImageConfig {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;            // "KEY=value"
  std::string working_dir;
  std::string user;
  std::vector<std::string> exposed_ports;  // "80/tcp", sorted
  std::map<std::string, std::string> labels;
  std::string os = "linux";
  std::string architecture = "amd64";
};

// Bounds on what a layer may make flick do; exceeding one fails the build with Errc::limit.
struct BuildLimits {
  uint64_t max_entries = 4u << 20;              // tar entries over all layers
  uint64_t max_path_length = 4096;              // bytes in one entry path
  uint64_t max_total_bytes = uint64_t{8} << 30; // apparent size of all regular files, all layers
};

struct RootfsOptions {
  uint64_t size_bytes = 0;                    // explicit image size; 0 = content + headroom
  uint64_t headroom_bytes = uint64_t{256} << 20;  // free space left for the guest
  BuildLimits limits;
};

// What build_rootfs measured.
struct BuildStats {
  uint64_t image_bytes = 0;    // size of the ext4 image file
  uint64_t entries = 0;        // tar entries read over all layers
  uint64_t inodes = 0;         // inodes in the final tree
  uint64_t content_bytes = 0;  // apparent size of the regular files in the final tree
};

// Applies `layers` (tar files, optionally gzip- or zstd-compressed, lowest first) into a new
// ext4 image at `output` (created or truncated). On failure `output` is removed.
// Entry paths with ".." or a leading "/" and hardlinks to names not in the image fail with
// Errc::malformed; a symlink in a parent path is followed inside the image (an absolute
// target restarts at the image root, ".." stops there), as `umoci unpack` does. Whiteouts
// (".wh.NAME") and opaque directories (".wh..wh..opq") follow the OCI layer spec.
FLICK_API Result<BuildStats> build_rootfs(std::span<const std::filesystem::path> layers,
                                          const std::filesystem::path& output,
                                          const RootfsOptions& options = {});

// A built root filesystem in the cache. The file at `path` is never modified after it is
// published: copy it (or make a copy-on-write view) before writing to it.
struct Rootfs {
  std::filesystem::path path;
  std::string image_digest;  // "sha256:..." of the image manifest (or docker-archive config)
  ImageConfig config;
  uint64_t size_bytes = 0;
};

struct PulledImage {
  std::string reference;     // canonical reference
  std::string image_digest;
  ImageConfig config;
  uint64_t blob_bytes = 0;   // manifest + config + layers
};

struct ImageInfo {
  std::string reference;
  std::string image_digest;
  uint64_t blob_bytes = 0;
  std::vector<std::filesystem::path> rootfs;  // built images of this digest (any size)
};

struct PruneStats {
  uint64_t files_removed = 0;
  uint64_t bytes_freed = 0;
};

// Registry credentials are the user's own, read where podman and Docker keep them:
// $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json (their
// "auths", "credHelpers" and "credsStore"; helpers are docker-credential-* programs on PATH).
struct StoreOptions {
  std::string default_registry = "docker.io";
  // Registries (host[:port]) whose TLS certificate is not checked, and which are spoken to
  // over plain http when they have no HTTPS at all (Docker's insecure-registries).
  std::vector<std::string> insecure_registries;
  // Registry (as in references: "docker.io", "127.0.0.1:5000") -> mirrors (host[:port]),
  // tried in order before the registry itself, as dockerd's registry-mirrors.
  std::map<std::string, std::vector<std::string>> registry_mirrors;
  int max_attempts = 4;              // per HTTP request, with exponential backoff
  int retry_base_delay_ms = 200;
  int max_concurrent_downloads = 4;  // layers fetched at once in one pull
  std::string platform = "linux/amd64";
};

// Whether pull() and rootfs() ask the registry or use what the cache has.
enum class PullPolicy {
  missing,  // a cached image is used as it is; the registry is asked only for what is missing
  always,   // the reference is resolved again (a tag may name a new image); known blobs are kept
  never,    // the cache only: an image not in it fails with Errc::not_found
};
// "missing", "always" or "never".
FLICK_API Result<PullPolicy> parse_pull_policy(std::string_view text);

// How far a registry pull has got. Bytes already on disk (blobs in the cache, what an
// interrupted download left) count as done.
struct PullProgress {
  struct Layer {
    std::string digest;
    uint64_t size = 0;  // from the manifest
    uint64_t done = 0;
    bool complete = false;
  };
  std::vector<Layer> layers;  // in manifest order
  uint64_t total_bytes = 0;   // the layers' sizes
  uint64_t done_bytes = 0;
};

struct PullOptions {
  PullPolicy policy = PullPolicy::missing;
  // Called on the pulling thread while layers download: about ten times a second, and once
  // when each layer completes. Local transports (oci:, archives) do not report.
  std::function<void(const PullProgress&)> progress;
};

// Registry logins, as `podman login` and `docker login` keep them: "auths".REGISTRY."auth"
// (base64 of "user:password") in the first of $REGISTRY_AUTH_FILE and
// $XDG_RUNTIME_DIR/containers/auth.json that is set, else ~/.docker/config.json; or, when that
// file's "credHelpers" names a helper for the registry, else its "credsStore" does, in that
// helper (`docker-credential-NAME store|erase`, found on PATH), as Docker does.
FLICK_API Result<std::filesystem::path> registry_auth_file();

// Where a registry's login was written or removed.
struct RegistryLogin {
  std::filesystem::path file;  // registry_auth_file()
  // "docker-credential-NAME (credHelpers of FILE)" or "... (credsStore of FILE)" when a helper
  // holds the secret; empty when `file` does.
  std::string helper;
};

// Asks `registry` ("ghcr.io", "127.0.0.1:5000", "docker.io") whether it takes `username` and
// `password` (GET /v2/, answering its basic or bearer-token challenge with them), then stores
// them: in the helper, or in the file, replacing the registry's entries there (with a helper,
// removing them: they would shadow it) and keeping every other key; the file is replaced
// atomically and has mode 0600. Refused credentials are an error naming the registry, and
// nothing is written. `options` gives insecure registries (certs.d as pulls).
FLICK_API Result<RegistryLogin> registry_login(std::string_view registry, std::string_view username,
                                               std::string_view password, const StoreOptions& options = {});
// Removes `registry`'s login from the helper (when there is one) and the file's entries,
// keeping every other key. Errc::not_found when neither had one.
FLICK_API Result<RegistryLogin> registry_logout(std::string_view registry);

// The content-addressed image cache: blobs by digest, one rootfs per (image digest, size).
// Safe for concurrent use by several processes on the same directory.
class FLICK_API ImageStore {
 public:
  // Opens (creating if needed) the cache at `dir`.
  static Result<ImageStore> open(const std::filesystem::path& dir, StoreOptions options = {});
  // $FLICK_HOME, else $XDG_CACHE_HOME/flick, else ~/.cache/flick.
  static std::filesystem::path default_dir();

  ImageStore(ImageStore&&) noexcept;
  ImageStore& operator=(ImageStore&&) noexcept;
  ~ImageStore();

  // Fetches the image's manifest, config and layers into the cache (verifying every digest,
  // up to max_concurrent_downloads layers at once) and records `ref` as naming it.
  Result<PulledImage> pull(std::string_view ref, const PullOptions& pull = {});
  // Pulls as `pull` says, then returns the cached rootfs for the image, building it once.
  Result<Rootfs> rootfs(std::string_view ref, const RootfsOptions& options = {}, const PullOptions& pull = {});
  Result<std::vector<ImageInfo>> list();
  // Forgets `ref` (as it was pulled) and removes the blobs and rootfs images no other
  // reference uses. Errc::not_found when the cache has no such reference.
  Result<PruneStats> remove(std::string_view ref);
  // Removes blobs and rootfs images no recorded reference uses, and leftovers of
  // interrupted pulls and builds.
  Result<PruneStats> prune();

  const std::filesystem::path& dir() const;

 private:
  struct State;
  explicit ImageStore(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace flick
