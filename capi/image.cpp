// flick_image_*: the host's image cache.
#include "objects.h"

#include <nlohmann/json.hpp>

namespace flick::capi {

namespace {

using ojson = nlohmann::ordered_json;

const flick_pull_options kPullDefaults = FLICK_PULL_OPTIONS_INIT;

ojson config_json(const ImageConfig& c) {
  return {{"entrypoint", c.entrypoint}, {"cmd", c.cmd},     {"env", c.env},
          {"working_dir", c.working_dir}, {"user", c.user}, {"exposed_ports", c.exposed_ports},
          {"labels", c.labels},         {"os", c.os},       {"architecture", c.architecture}};
}

// PullOptions from the C struct (NULL: defaults); the progress callback stops the pull by
// throwing Cancelled through the image layer, which releases what it holds as it unwinds.
int pull_options(PullOptions* out, const flick_pull_options* given, const char* fn) {
  flick_pull_options o = kPullDefaults;
  if (given) {
    if (int rc = read_options(&o, given, FLICK_PULL_OPTIONS_VERSION, sizeof o, fn, "flick_pull_options"); rc)
      return rc;
  }
  switch (raw_enum(o.policy)) {
    case FLICK_PULL_MISSING: out->policy = PullPolicy::missing; break;
    case FLICK_PULL_ALWAYS: out->policy = PullPolicy::always; break;
    case FLICK_PULL_NEVER: out->policy = PullPolicy::never; break;
    default: return fail_invalid(std::string(fn) + ": policy " + std::to_string(raw_enum(o.policy)) + " is not a flick_pull_policy value");
  }
  if (auto fnp = o.progress) {
    void* ud = o.progress_userdata;
    out->progress = [fnp, ud](const PullProgress& p) {
      if (int r = fnp(ud, p.done_bytes, p.total_bytes); r != 0)
        throw Cancelled{"the progress callback returned " + std::to_string(r)};
    };
  }
  return FLICK_OK;
}

bool need_ref(const char* ref, const char* fn, int* rc) {
  if (ref && *ref) return true;
  *rc = fail_invalid(std::string(fn) + ": ref is NULL or empty");
  return false;
}

int prune_out(uint64_t* files, uint64_t* bytes, const PruneStats& s) {
  if (files) *files = s.files_removed;
  if (bytes) *bytes = s.bytes_freed;
  return ok();
}

}  // namespace

}  // namespace flick::capi

using namespace flick::capi;

extern "C" {

int flick_pull_options_init(flick_pull_options* opts, unsigned int version) {
  return guarded(__func__, [&](const char* fn) {
    return init_options(opts, version, FLICK_PULL_OPTIONS_VERSION, sizeof *opts, kPullDefaults, fn);
  });
}

int flick_image_pull(char** out_json, flick_host* host, const char* ref, const flick_pull_options* opts) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h || !need_ref(ref, fn, &rc)) return rc;
    flick::PullOptions pull;
    if ((rc = pull_options(&pull, opts, fn)) != FLICK_OK) return rc;
    auto img = h->images().pull(ref, pull);
    if (!img) return fail(img.error(), FLICK_ERROR_IMAGE);
    ojson j{{"reference", img->reference}, {"image_digest", img->image_digest}, {"blob_bytes", img->blob_bytes},
            {"config", config_json(img->config)}};
    *out_json = give(j.dump());
    return ok();
  });
}

int flick_image_list(char** out_json, flick_host* host) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h) return rc;
    auto list = h->images().list();
    if (!list) return fail(list.error(), FLICK_ERROR_IMAGE);
    ojson out = ojson::array();
    for (const auto& i : *list) {
      ojson rootfs = ojson::array();
      for (const auto& p : i.rootfs) rootfs.push_back(p.string());
      out.push_back({{"reference", i.reference}, {"image_digest", i.image_digest}, {"blob_bytes", i.blob_bytes},
                     {"rootfs", rootfs}});
    }
    *out_json = give(out.dump());
    return ok();
  });
}

int flick_image_rootfs(char** out_path, flick_host* host, const char* ref, const flick_pull_options* opts) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_path, fn, "out_path", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h || !need_ref(ref, fn, &rc)) return rc;
    flick::PullOptions pull;
    if ((rc = pull_options(&pull, opts, fn)) != FLICK_OK) return rc;
    auto r = h->images().rootfs(ref, {}, pull);
    if (!r) return fail(r.error(), FLICK_ERROR_IMAGE);
    *out_path = give(r->path.string());
    return ok();
  });
}

int flick_image_prune(uint64_t* out_files_removed, uint64_t* out_bytes_freed, flick_host* host) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    prune_out(out_files_removed, out_bytes_freed, {});
    auto h = hosts().find(host, fn, &rc);
    if (!h) return rc;
    auto s = h->images().prune();
    if (!s) return fail(s.error(), FLICK_ERROR_IMAGE);
    return prune_out(out_files_removed, out_bytes_freed, *s);
  });
}

int flick_image_rm(uint64_t* out_files_removed, uint64_t* out_bytes_freed, flick_host* host, const char* ref) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    prune_out(out_files_removed, out_bytes_freed, {});
    auto h = hosts().find(host, fn, &rc);
    if (!h || !need_ref(ref, fn, &rc)) return rc;
    auto s = h->images().remove(ref);
    if (!s) return fail(s.error(), FLICK_ERROR_IMAGE);
    return prune_out(out_files_removed, out_bytes_freed, *s);
  });
}

}  // extern "C"
