// Where image blobs come from: local layouts and archives (local_source.cpp) and registries
// (registry.cpp). Every source ends by handing back a ResolvedImage whose blobs are all in
// the BlobStore, verified.
#pragma once

#include "image/blob_store.h"
#include "image/credentials.h"
#include "image/manifest.h"

#include <flick/image.h>

#include <functional>
#include <span>
#include <string>
#include <vector>

namespace flick::image {

struct ResolvedImage {
  std::string image_digest;  // manifest digest (docker-archive: config digest)
  std::string config_digest;
  std::vector<Descriptor> layers;
  ImageConfig config;
  uint64_t blob_bytes = 0;
};

// Makes sure the blob a descriptor names is in the store (fetching and verifying it).
using FetchFn = std::function<Result<void>(const Descriptor&)>;
// The same for all of an image's layers at once.
using FetchLayersFn = std::function<Result<void>(std::span<const Descriptor>)>;

// Follows `top` (an index or a manifest) down to one image for `platform`, fetching the
// manifest, the config and every layer through `fetch` (the layers through `fetch_layers`
// when given).
Result<ResolvedImage> resolve_image(const BlobStore& store, Descriptor top, std::string_view platform,
                                    const FetchFn& fetch, const FetchLayersFn& fetch_layers = {});

Result<ResolvedImage> import_local(const BlobStore& store, const ImageReference& ref,
                                   std::string_view platform);

Result<ResolvedImage> pull_registry(const BlobStore& store, const ImageReference& ref,
                                    const StoreOptions& options,
                                    const std::function<void(const PullProgress&)>& progress = {});

// Asks `host` (GET /v2/) whether it takes `c`; the registry's refusal is an error naming it.
Result<void> check_login(std::string_view host, const Credential& c, const StoreOptions& options);

}  // namespace flick::image
