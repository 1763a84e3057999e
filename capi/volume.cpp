// flick_app_* and flick_volume_*: the store's apps and volumes, as Fly's JSON objects.
#include "objects.h"

#include "fly_json/fly_json.h"

namespace flick::capi {

namespace {

bool need_name(const char* s, const char* fn, const char* what, int* rc) {
  if (s && *s) return true;
  *rc = fail_invalid(std::string(fn) + ": " + what + " is NULL or empty");
  return false;
}

int give_json(char** out, const nlohmann::ordered_json& j) {
  *out = give(j.dump());
  return ok();
}

}  // namespace

}  // namespace flick::capi

using namespace flick::capi;
using ojson = nlohmann::ordered_json;

extern "C" {

int flick_app_create(char** out_json, flick_host* host, const char* name, const char* org_slug) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h || !need_name(name, fn, "name", &rc)) return rc;
    auto a = h->create_app(name, str(org_slug));
    if (!a) return fail(a.error(), FLICK_ERROR_STORE);
    return give_json(out_json, flick::fly::app_json(*a));
  });
}

int flick_app_list(char** out_json, flick_host* host) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h) return rc;
    auto apps = h->list_apps();
    if (!apps) return fail(apps.error(), FLICK_ERROR_STORE);
    ojson out = ojson::array();
    for (const auto& a : *apps) out.push_back(flick::fly::app_json(a));
    return give_json(out_json, out);
  });
}

int flick_app_destroy(flick_host* host, const char* name, int force) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto h = hosts().find(host, fn, &rc);
    if (!h || !need_name(name, fn, "name", &rc)) return rc;
    auto r = h->destroy_app(name, force != 0);
    return r ? ok() : fail(r.error(), FLICK_ERROR_STORE);
  });
}

int flick_volume_create(char** out_json, flick_host* host, const char* name, const char* app, uint64_t size_gb) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h || !need_name(name, fn, "name", &rc)) return rc;
    auto v = h->create_volume({.name = name, .size_gb = size_gb, .app = str(app)});
    if (!v) return fail(v.error(), FLICK_ERROR_STORE);
    return give_json(out_json, flick::fly::volume_json(*v));
  });
}

int flick_volume_list(char** out_json, flick_host* host, const char* app) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h) return rc;
    auto list = h->list_volumes(str(app));
    if (!list) return fail(list.error(), FLICK_ERROR_STORE);
    ojson out = ojson::array();
    for (const auto& v : *list) out.push_back(flick::fly::volume_json(v));
    return give_json(out_json, out);
  });
}

int flick_volume_extend(char** out_json, flick_host* host, const char* id_or_name, const char* app, uint64_t size_gb) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h || !need_name(id_or_name, fn, "id_or_name", &rc)) return rc;
    auto v = h->extend_volume(id_or_name, size_gb, str(app));
    if (!v) return fail(v.error(), FLICK_ERROR_STORE);
    return give_json(out_json, flick::fly::volume_json(*v));
  });
}

int flick_volume_destroy(flick_host* host, const char* id_or_name, const char* app) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto h = hosts().find(host, fn, &rc);
    if (!h || !need_name(id_or_name, fn, "id_or_name", &rc)) return rc;
    auto r = h->destroy_volume(id_or_name, str(app));
    return r ? ok() : fail(r.error(), FLICK_ERROR_STORE);
  });
}

}  // extern "C"
