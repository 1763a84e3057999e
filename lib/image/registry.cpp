// Pulls over the OCI distribution spec v2 (spec/spec.md "Pulling manifests" and "Pulling
// blobs") with libcurl, with the anonymous bearer-token flow of Docker's token
// authentication spec. Every byte is hashed as it streams and checked before it is published.
#include "image/source.h"

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <mutex>
#include <optional>
#include <thread>

namespace flick::image {

namespace {

constexpr size_t kMaxDocument = 4 << 20;

struct Response {
  long status = 0;
  std::string body;  // whole body of documents and error responses
  std::string content_type;
  std::string www_authenticate;
};

struct Transfer {
  Response* resp;
  BlobStore::Writer* sink;  // streamed when the final response is a 2xx
  CURL* curl;
  std::optional<Error> error;
};

size_t on_body(char* p, size_t, size_t n, void* ud) {
  auto* t = static_cast<Transfer*>(ud);
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (t->sink && status >= 200 && status < 300) {
    if (auto r = t->sink->write({reinterpret_cast<const uint8_t*>(p), n}); !r) {
      t->error = r.error();
      return 0;
    }
    return n;
  }
  if (t->resp->body.size() + n > kMaxDocument) {
    t->error = make_error(Errc::limit, "registry response larger than " + std::to_string(kMaxDocument) + " bytes");
    return 0;
  }
  t->resp->body.append(p, n);
  return n;
}

size_t on_header(char* p, size_t, size_t n, void* ud) {
  auto* t = static_cast<Transfer*>(ud);
  std::string h(p, n);
  while (!h.empty() && (h.back() == '\r' || h.back() == '\n')) h.pop_back();
  auto colon = h.find(':');
  if (h.rfind("HTTP/", 0) == 0) {  // a new response (after a redirect): reset
    t->resp->content_type.clear();
    t->resp->www_authenticate.clear();
  }
  if (colon == std::string::npos) return n;
  std::string name = h.substr(0, colon);
  for (auto& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
  std::string value = h.substr(colon + 1);
  while (!value.empty() && value.front() == ' ') value.erase(0, 1);
  if (name == "content-type") t->resp->content_type = value.substr(0, value.find(';'));
  if (name == "www-authenticate") t->resp->www_authenticate = value;
  return n;
}

// key="value" pairs of a WWW-Authenticate challenge (RFC 7235 section 4.1).
std::string challenge_param(const std::string& header, const std::string& key) {
  size_t pos = 0;
  while ((pos = header.find(key + "=\"", pos)) != std::string::npos) {
    if (pos == 0 || header[pos - 1] == ' ' || header[pos - 1] == ',') {
      size_t start = pos + key.size() + 2;
      size_t end = header.find('"', start);
      if (end == std::string::npos) return {};
      return header.substr(start, end - start);
    }
    pos += key.size();
  }
  return {};
}

class Registry {
 public:
  Registry(const ImageReference& ref, const StoreOptions& opt) : ref_(ref), opt_(opt) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    std::string host = ref.registry == "docker.io" ? "registry-1.docker.io" : ref.registry;
    bool insecure = false;
    for (const auto& r : opt.insecure_registries) insecure |= r == ref.registry;
    base_ = (insecure ? "http://" : "https://") + host + "/v2/" + ref.repository;
  }

  Result<Response> get(const std::string& path, const std::string& accept,
                       const BlobStore* store, std::string_view expected, std::string* digest_out) {
    const std::string url = base_ + path;
    bool tried_token = false;
    for (int attempt = 1;; ++attempt) {
      std::optional<BlobStore::Writer> writer;
      if (store) {
        FLICK_TRY_ASSIGN(auto w, store->writer());
        writer.emplace(std::move(w));
      }
      Response resp;
      CURLcode rc = CURLE_OK;
      std::optional<Error> stream_error;
      {
        Transfer t{&resp, writer ? &*writer : nullptr, curl_easy_init(), std::nullopt};
        if (!t.curl) return make_error(Errc::no_memory, "creating a curl handle");
        curl_slist* headers = nullptr;
        if (!accept.empty()) headers = curl_slist_append(headers, ("Accept: " + accept).c_str());
        if (!token_.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + token_).c_str());
        curl_easy_setopt(t.curl, CURLOPT_URL, url.c_str());
        curl_easy_setopt(t.curl, CURLOPT_HTTPHEADER, headers);
        // Blob downloads may redirect to storage; curl drops Authorization on other hosts.
        curl_easy_setopt(t.curl, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(t.curl, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(t.curl, CURLOPT_CONNECTTIMEOUT, 15L);
        curl_easy_setopt(t.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(t.curl, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(t.curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(t.curl, CURLOPT_USERAGENT, "flick");
        curl_easy_setopt(t.curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(t.curl, CURLOPT_WRITEDATA, &t);
        curl_easy_setopt(t.curl, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(t.curl, CURLOPT_HEADERDATA, &t);
        rc = curl_easy_perform(t.curl);
        curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &resp.status);
        curl_easy_cleanup(t.curl);
        curl_slist_free_all(headers);
        stream_error = std::move(t.error);
      }
      if (stream_error) return *stream_error;
      const bool transient = (rc != CURLE_OK) || resp.status == 429 || resp.status >= 500;
      if (transient) {
        if (attempt < opt_.max_attempts) {
          std::this_thread::sleep_for(std::chrono::milliseconds(opt_.retry_base_delay_ms << (attempt - 1)));
          continue;
        }
        if (rc != CURLE_OK)
          return make_error(Errc::network, "GET " + url + " failed after " + std::to_string(attempt) +
                                               " attempts: " + curl_easy_strerror(rc));
        if (resp.status == 429)
          return make_error(Errc::busy, "GET " + url + ": rate limited by the registry (HTTP 429) after " +
                                            std::to_string(attempt) + " attempts; try again later");
        return make_error(Errc::network, "GET " + url + ": HTTP " + std::to_string(resp.status) +
                                             " after " + std::to_string(attempt) + " attempts");
      }
      if (resp.status == 401) {
        if (!tried_token && resp.www_authenticate.rfind("Bearer ", 0) == 0) {
          tried_token = true;
          FLICK_TRY(fetch_token(resp.www_authenticate));
          --attempt;
          continue;
        }
        return make_error(Errc::invalid_argument,
                          "GET " + url + ": HTTP 401 unauthorized (the image may be private; flick only "
                          "does anonymous pulls)");
      }
      if (resp.status == 404)
        return make_error(Errc::not_found, "GET " + url + ": HTTP 404, no such image or blob");
      if (resp.status < 200 || resp.status >= 300)
        return make_error(Errc::network, "GET " + url + ": HTTP " + std::to_string(resp.status) + " " +
                                             resp.body.substr(0, 200));
      if (writer) {
        FLICK_TRY_ASSIGN(std::string d, writer->commit(expected, "blob " + url));
        if (digest_out) *digest_out = d;
      }
      return resp;
    }
  }

  Result<void> fetch_token(const std::string& challenge) {
    std::string realm = challenge_param(challenge, "realm");
    std::string service = challenge_param(challenge, "service");
    std::string scope = challenge_param(challenge, "scope");
    if (scope.empty()) scope = "repository:" + ref_.repository + ":pull";
    if (realm.empty()) return make_error(Errc::network, "registry bearer challenge without a realm: " + challenge);
    CURL* c = curl_easy_init();
    auto esc = [&](const std::string& s) {
      char* e = curl_easy_escape(c, s.c_str(), int(s.size()));
      std::string out = e ? e : "";
      curl_free(e);
      return out;
    };
    std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&") + "scope=" + esc(scope);
    if (!service.empty()) url += "&service=" + esc(service);
    Response resp;
    Transfer t{&resp, nullptr, c, std::nullopt};
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK)
      return make_error(Errc::network, "fetching a registry token from " + realm + ": " + curl_easy_strerror(rc));
    if (resp.status != 200)
      return make_error(Errc::network, "fetching a registry token from " + realm + ": HTTP " + std::to_string(resp.status));
    auto j = nlohmann::json::parse(resp.body, nullptr, false);
    if (j.is_object()) token_ = j.value("token", j.value("access_token", ""));
    if (token_.empty()) return make_error(Errc::network, "token response from " + realm + " has no token");
    return {};
  }

 private:
  const ImageReference& ref_;
  const StoreOptions& opt_;
  std::string base_;
  std::string token_;
};

const std::string kManifestAccept = std::string(media::kOciIndex) + ", " + std::string(media::kOciManifest) +
                                    ", " + std::string(media::kDockerList) + ", " +
                                    std::string(media::kDockerManifest);

// GETs a manifest or index, verifies its digest and stores it; returns its descriptor.
Result<Descriptor> fetch_manifest(Registry& reg, const BlobStore& store, const std::string& reference,
                                  std::string_view expected) {
  FLICK_TRY_ASSIGN(auto resp, reg.get("/manifests/" + reference, kManifestAccept, nullptr, {}, nullptr));
  FLICK_TRY_ASSIGN(std::string digest, store.put(resp.body, {}));
  if (!expected.empty() && digest != expected)
    return make_error(Errc::integrity, "manifest " + reference + ": digest mismatch: expected " +
                                           std::string(expected) + ", got " + digest);
  Descriptor d;
  d.digest = digest;
  d.media_type = resp.content_type;
  if (!is_index_media_type(d.media_type) && !is_manifest_media_type(d.media_type))
    d.media_type = declared_media_type(resp.body);
  d.size = resp.body.size();
  return d;
}

}  // namespace

Result<ResolvedImage> pull_registry(const BlobStore& store, const ImageReference& ref,
                                    const StoreOptions& options) {
  Registry reg(ref, options);
  const std::string& top_ref = ref.digest.empty() ? ref.tag : ref.digest;
  FLICK_TRY_ASSIGN(auto top, fetch_manifest(reg, store, top_ref, ref.digest));
  auto r = resolve_image(store, top, options.platform, [&](const Descriptor& d) -> Result<void> {
    if (store.has(d.digest)) return {};
    if (is_index_media_type(d.media_type) || is_manifest_media_type(d.media_type)) {
      FLICK_TRY(fetch_manifest(reg, store, d.digest, d.digest));
      return {};
    }
    FLICK_TRY(reg.get("/blobs/" + d.digest, {}, &store, d.digest, nullptr));
    return {};
  });
  if (!r) return std::move(r).error().with_context("pulling " + ref.to_string());
  return r;
}

}  // namespace flick::image
