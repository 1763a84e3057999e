// Pulls over the OCI distribution spec v2 (spec/spec.md "Pulling manifests" and "Pulling
// blobs") with libcurl: basic auth or the bearer-token flow of Docker's token authentication
// spec, with the user's registry credentials (credentials.h), over TLS verified against the
// system CA store plus the registry's certs.d CAs. Every byte is hashed as it streams and
// checked before it is published; an interrupted blob download resumes from its partial file.
// An image's layers download side by side on one curl multi handle.
#include "base/log.h"
#include "image/credentials.h"
#include "image/source.h"

#include <curl/curl.h>
#include <nlohmann/json.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

namespace flick::image {

namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxDocument = 4 << 20;

struct Response {
  long status = 0;
  std::string body;  // whole body of documents and error responses
  std::string content_type;
  std::string www_authenticate;
};

struct Transfer {
  Response* resp;
  BlobStore::Download* sink;  // streamed when the final response is a 2xx
  CURL* curl;
  std::optional<Error> error;
  bool body_started = false;
};

size_t on_body(char* p, size_t, size_t n, void* ud) {
  auto* t = static_cast<Transfer*>(ud);
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (t->sink && status >= 200 && status < 300) {
    // A 200 to a Range request is the whole blob again: start the partial file over.
    if (!t->body_started && status == 200 && t->sink->size() > 0) {
      if (auto r = t->sink->restart(); !r) {
        t->error = r.error();
        return 0;
      }
    }
    t->body_started = true;
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

bool is_tls_failure(CURLcode rc) {
  switch (rc) {
    case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_ENGINE_INITFAILED: case CURLE_SSL_CRL_BADFILE: case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return true;
    default:
      return false;
  }
}

// certs.d as in containers-certs.d(5) and Docker: the first directory with a subdirectory
// for the registry gives it extra CA certificates (its *.crt files), on top of the system's.
std::vector<fs::path> certs_d_dirs() {
  std::vector<fs::path> dirs;
  if (const char* d = std::getenv("FLICK_CERTS_DIR"); d && *d) dirs.emplace_back(d);
  if (const char* h = std::getenv("HOME"); h && *h) dirs.push_back(fs::path(h) / ".config/containers/certs.d");
  dirs.emplace_back("/etc/containers/certs.d");
  dirs.emplace_back("/etc/docker/certs.d");
  return dirs;
}

std::vector<fs::path> ca_files_for(const std::string& host) {
  std::error_code ec;
  for (const auto& dir : certs_d_dirs()) {
    if (!fs::is_directory(dir / host, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir / host, ec))
      if (e.path().extension() == ".crt") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
  }
  return {};
}

// Adds the registry's certs.d CAs to the store curl has already filled with the system's.
CURLcode add_registry_cas(CURL*, void* ssl_ctx, void* files) {
  X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx));
  for (const auto& f : *static_cast<const std::vector<fs::path>*>(files))
    if (X509_STORE_load_file(store, f.c_str()) != 1) return CURLE_SSL_CACERT_BADFILE;
  return CURLE_OK;
}

class Registry {
 public:
  // `host` is the registry of `ref` or one of its mirrors.
  Registry(const ImageReference& ref, std::string host, const StoreOptions& opt)
      : ref_(ref), opt_(opt), host_(std::move(host)), credentials_(CredentialStore::from_environment()) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    std::string server = host_ == "docker.io" ? "registry-1.docker.io" : host_;
    for (const auto& r : opt.insecure_registries) insecure_ |= r == host_;
    base_ = "https://" + server + "/v2/" + ref.repository;
    // Insecure as Docker means it: HTTPS without verification, else plain HTTP.
    if (insecure_) unverified_ = "https://" + server + "/", plain_base_ = "http://" + server + "/v2/" + ref.repository;
    else ca_files_ = ca_files_for(host_);
  }

  // GETs a document, or with `blob` streams a blob into its partial file, resuming with a
  // Range request from the bytes already there after a transient failure.
  Result<Response> get(const std::string& path, const std::string& accept, BlobStore::Download* blob) {
    bool tried_auth = false;
    for (int attempt = 1;; ++attempt) {
      FLICK_TRY_ASSIGN(auto a, start(base_ + path, accept, blob));
      CURLcode rc = curl_easy_perform(a->t.curl);
      FLICK_TRY_ASSIGN(Next next, finish(*a, rc, attempt, &tried_auth));
      if (next == Next::done) return std::move(a->resp);
      if (next == Next::again) --attempt;
      else std::this_thread::sleep_for(retry_delay(attempt));
    }
  }

  // Uses `c` instead of looking credentials up in the auth files.
  void use_credential(Credential c) {
    cred_ = std::move(c);
    looked_up_ = true;
  }

  // Streams `layers` into the store, up to max_concurrent_downloads at once on one curl multi
  // handle, each retried and resumed as get() does. A blob another process is downloading is
  // left to it: its lock is tried again every 100 ms until that process has published it.
  Result<void> get_blobs(const BlobStore& store, std::span<const Descriptor> layers,
                         const std::function<void(const PullProgress&)>& progress) {
    std::vector<BlobJob> jobs(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
      jobs[i].d = &layers[i];
      jobs[i].done = store.has(layers[i].digest);
    }
    Multi multi(jobs);
    if (!multi.m) return make_error(Errc::no_memory, "creating a curl multi handle");
    const size_t max_active = size_t(std::max(1, opt_.max_concurrent_downloads));
    Reporter report{jobs, progress};
    for (;;) {
      size_t active = 0, left = 0;
      for (const auto& j : jobs) active += j.attempt != nullptr, left += !j.done;
      if (left == 0) break;
      const auto now = Clock::now();
      auto next_start = Clock::time_point::max();
      for (auto& j : jobs) {
        if (active >= max_active) break;
        if (j.done || j.attempt) continue;
        if (j.not_before > now) {
          next_start = std::min(next_start, j.not_before);
          continue;
        }
        if (!j.download) {
          FLICK_TRY_ASSIGN(auto locked, store.try_download(j.d->digest));
          if (!locked) {  // another process is fetching it: look again soon
            j.not_before = now + std::chrono::milliseconds(100);
            next_start = std::min(next_start, j.not_before);
            continue;
          }
          if (store.has(j.d->digest)) {
            j.done = true;
            continue;
          }
          j.download.emplace(std::move(*locked));
        }
        ++j.attempts;
        FLICK_TRY_ASSIGN(j.attempt, start(base_ + "/blobs/" + j.d->digest, {}, &*j.download));
        curl_easy_setopt(j.attempt->t.curl, CURLOPT_PRIVATE, &j);
        curl_multi_add_handle(multi.m, j.attempt->t.curl);
        ++active;
      }
      if (active == 0) {
        if (next_start != Clock::time_point::max()) std::this_thread::sleep_until(next_start);
        report.maybe(false);
        continue;
      }
      int running = 0;
      if (CURLMcode mc = curl_multi_perform(multi.m, &running); mc != CURLM_OK)
        return make_error(Errc::network, std::string("curl: ") + curl_multi_strerror(mc));
      int queued = 0;
      bool finished = false;  // then go round at once: start the next layer, or end
      while (CURLMsg* msg = curl_multi_info_read(multi.m, &queued)) {
        if (msg->msg != CURLMSG_DONE) continue;
        finished = true;
        BlobJob* j = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&j));
        const CURLcode rc = msg->data.result;
        curl_multi_remove_handle(multi.m, msg->easy_handle);
        auto a = std::move(j->attempt);
        FLICK_TRY_ASSIGN(Next next, finish(*a, rc, j->attempts, &j->tried_auth));
        if (next == Next::done) {
          j->done = true;
          j->download.reset();  // releases the blob's lock
          report.maybe(true);
        } else if (next == Next::again) {
          --j->attempts;
        } else {
          j->not_before = Clock::now() + retry_delay(j->attempts);
        }
      }
      report.maybe(false);
      if (finished) continue;
      int timeout_ms = 100;
      if (next_start != Clock::time_point::max())
        timeout_ms = int(std::clamp<int64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(next_start - Clock::now()).count(), 0, 100));
      curl_multi_poll(multi.m, nullptr, 0, timeout_ms, nullptr);
    }
    report.maybe(true);
    return {};
  }

 private:
  using Clock = std::chrono::steady_clock;

  // One HTTP request: its curl handle, headers and what its callbacks collect. Not movable:
  // curl holds pointers into it.
  struct Attempt {
    Response resp;
    Transfer t{&resp, nullptr, nullptr, std::nullopt};
    curl_slist* headers = nullptr;
    std::string url, range;
    char errbuf[CURL_ERROR_SIZE] = "";
    Attempt() = default;
    Attempt(const Attempt&) = delete;
    Attempt& operator=(const Attempt&) = delete;
    ~Attempt() {
      if (t.curl) curl_easy_cleanup(t.curl);
      curl_slist_free_all(headers);
    }
  };

  // One layer of get_blobs(): its lock and partial file once taken, the request in flight.
  struct BlobJob {
    const Descriptor* d = nullptr;
    std::optional<BlobStore::Download> download;
    std::unique_ptr<Attempt> attempt;
    int attempts = 0;
    bool tried_auth = false, done = false;
    Clock::time_point not_before{};
  };

  // A multi handle; on the way out it lets go of the jobs' transfers still running.
  struct Multi {
    CURLM* m = curl_multi_init();
    std::vector<BlobJob>& jobs;
    explicit Multi(std::vector<BlobJob>& j) : jobs(j) {}
    Multi(const Multi&) = delete;
    Multi& operator=(const Multi&) = delete;
    ~Multi() {
      for (auto& j : jobs)
        if (j.attempt) curl_multi_remove_handle(m, j.attempt->t.curl);
      if (m) curl_multi_cleanup(m);
    }
  };

  // Calls the progress callback at most ten times a second, or at once when `now`.
  struct Reporter {
    const std::vector<BlobJob>& jobs;
    const std::function<void(const PullProgress&)>& fn;
    Clock::time_point last{};
    void maybe(bool now) {
      if (!fn) return;
      const auto t = Clock::now();
      if (!now && t - last < std::chrono::milliseconds(100)) return;
      last = t;
      PullProgress p;
      for (const auto& j : jobs) {
        uint64_t done = j.done ? j.d->size : j.download ? j.download->size() : 0;
        PullProgress::Layer l{j.d->digest, j.d->size, std::min(done, j.d->size), j.done};
        p.total_bytes += l.size;
        p.done_bytes += l.done;
        p.layers.push_back(std::move(l));
      }
      fn(p);
    }
  };

  enum class Next { done, retry, again };  // again: retry at once, not counted (after a 401)

  std::chrono::milliseconds retry_delay(int attempt) const {
    return std::chrono::milliseconds(opt_.retry_base_delay_ms << (attempt - 1));
  }

  // A configured request for `url`, with credentials and, for a blob with bytes on disk, a Range.
  Result<std::unique_ptr<Attempt>> start(const std::string& url, const std::string& accept,
                                         BlobStore::Download* blob) {
    auto a = std::make_unique<Attempt>();
    a->url = url;
    a->t.sink = blob;
    a->t.curl = curl_easy_init();
    if (!a->t.curl) return make_error(Errc::no_memory, "creating a curl handle");
    CURL* c = a->t.curl;
    FLICK_TRY(configure(c, url, a->errbuf));
    if (!accept.empty()) a->headers = curl_slist_append(a->headers, ("Accept: " + accept).c_str());
    if (!token_.empty()) a->headers = curl_slist_append(a->headers, ("Authorization: Bearer " + token_).c_str());
    else if (basic_) set_basic_auth(c);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, a->headers);
    if (blob && blob->size()) {
      a->range = std::to_string(blob->size()) + "-";
      LOG_DEBUG("GET %s: resuming from byte %s", url.c_str(), a->range.c_str());
      curl_easy_setopt(c, CURLOPT_RANGE, a->range.c_str());
    }
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a->t);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &a->t);
    return a;
  }

  // What to do after attempt number `attempt` ended with `rc`: done (a blob verified and
  // published), try again, or an error for the caller.
  Result<Next> finish(Attempt& a, CURLcode rc, int attempt, bool* tried_auth) {
    Response& resp = a.resp;
    BlobStore::Download* blob = a.t.sink;
    const std::string& url = a.url;
    curl_easy_getinfo(a.t.curl, CURLINFO_RESPONSE_CODE, &resp.status);
    if (a.t.error) return *a.t.error;
    if (is_tls_failure(rc) && !plain_base_.empty()) {
      LOG_DEBUG("registry %s: no HTTPS (%s), trying plain HTTP", host_.c_str(), curl_easy_strerror(rc));
      base_ = plain_base_;
      plain_base_.clear();
      return Next::again;
    }
    if (is_tls_failure(rc)) return tls_error(url, rc, a.errbuf);
    if (rc == CURLE_OK) plain_base_.clear();  // the scheme that answered is the one to keep
    // 416: the partial file is not a prefix the server can continue (it is complete or
    // longer than the blob); retried from zero.
    if (blob && resp.status == 416) FLICK_TRY(blob->restart());
    const bool transient = (rc != CURLE_OK) || resp.status == 429 || resp.status == 416 || resp.status >= 500;
    if (transient) {
      if (attempt < opt_.max_attempts) return Next::retry;
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
      if (*tried_auth) return unauthorized("GET " + url);
      *tried_auth = true;
      FLICK_TRY(authenticate(resp.www_authenticate, url));
      return Next::again;
    }
    if (resp.status == 404)
      return make_error(Errc::not_found, "GET " + url + ": HTTP 404, no such image or blob");
    if (resp.status < 200 || resp.status >= 300)
      return make_error(Errc::network, "GET " + url + ": HTTP " + std::to_string(resp.status) + " " +
                                           resp.body.substr(0, 200));
    if (blob) FLICK_TRY(blob->commit("blob from " + host_ + "/" + ref_.repository + " (" + url + ")"));
    return Next::done;
  }

  // Options every request shares; `errbuf` receives curl's details of a TLS failure.
  Result<void> configure(CURL* c, const std::string& url, char* errbuf) {
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    // Blob downloads may redirect to storage; curl drops credentials on other hosts.
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "flick");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    if (insecure_ && url.rfind(unverified_, 0) == 0) {
      curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (!ca_files_.empty()) {
      curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, &ca_files_);
      if (curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, add_registry_cas) != CURLE_OK)
        return make_error(Errc::unsupported, "CA certificates for " + host_ + " in " +
                                                 ca_files_.front().parent_path().string() +
                                                 " need libcurl built with OpenSSL");
    }
    return {};
  }

  // Sent on the first request (no challenge round trip); curl drops it on redirects to other hosts.
  void set_basic_auth(CURL* c) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, long(CURLAUTH_BASIC));
    curl_easy_setopt(c, CURLOPT_USERNAME, cred_->username.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, cred_->secret.c_str());
  }

  Error tls_error(const std::string& url, CURLcode rc, const char* detail) {
    std::string cas;
    for (const auto& f : ca_files_) cas += (cas.empty() ? "" : ", ") + f.string();
    std::string dirs;
    for (const auto& d : certs_d_dirs()) dirs += (dirs.empty() ? "" : ", ") + d.string();
    return make_error(Errc::network,
                      "TLS with registry " + host_ + " failed (" + url + "): " + curl_easy_strerror(rc) +
                          (*detail ? std::string(": ") + detail : "") +
                          (cas.empty() ? "; it was checked against the system CA store only. A registry with its own CA "
                                         "needs it in <dir>/" + host_ + "/ca.crt, for one of " + dirs
                                       : "; it was checked against the system CA store and " + cas));
  }

  Error unauthorized(const std::string& what) {
    if (!cred_)
      return make_error(Errc::invalid_argument,
                        what + ": HTTP 401 unauthorized: no credentials found for " + host_ + " in " +
                            credentials_.searched() + " (log in with `podman login " + host_ +
                            "` or `docker login " + host_ + "`)");
    return make_error(Errc::invalid_argument, what + ": HTTP 401 unauthorized: the credentials for " +
                                                  host_ + " from " + cred_->source + " were refused");
  }

  // Answers a 401's challenge: a bearer token (anonymous or with credentials) or basic auth.
  Result<void> authenticate(const std::string& challenge, const std::string& url) {
    if (!looked_up_) {
      looked_up_ = true;
      auto c = credentials_.find(host_);
      if (!c) return std::move(c).error().with_context("looking up credentials for " + host_);
      cred_ = std::move(*c);
      if (cred_) LOG_DEBUG("registry %s: credentials from %s", host_.c_str(), cred_->source.c_str());
    }
    auto scheme = challenge.substr(0, challenge.find(' '));
    for (auto& ch : scheme) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (scheme == "bearer") return fetch_token(challenge);
    if (scheme == "basic" && cred_ && !cred_->identity_token) {
      basic_ = true;
      return {};
    }
    return unauthorized("GET " + url);
  }

  // Docker's token authentication spec: GET the realm (with basic credentials when there are
  // some), or POST an identity token as an OAuth2 refresh token ("grant_type=refresh_token").
  Result<void> fetch_token(const std::string& challenge) {
    std::string realm = challenge_param(challenge, "realm");
    std::string service = challenge_param(challenge, "service");
    std::string scope = challenge_param(challenge, "scope");
    // No repository: a login check, which asks for a token with no scope, as `docker login` does.
    if (scope.empty() && !ref_.repository.empty()) scope = "repository:" + ref_.repository + ":pull";
    if (realm.empty()) return make_error(Errc::network, "registry bearer challenge without a realm: " + challenge);
    CURL* c = curl_easy_init();
    if (!c) return make_error(Errc::no_memory, "creating a curl handle");
    auto esc = [&](const std::string& s) {
      char* e = curl_easy_escape(c, s.c_str(), int(s.size()));
      std::string out = e ? e : "";
      curl_free(e);
      return out;
    };
    std::string url = realm, form;
    if (cred_ && cred_->identity_token) {
      form = "grant_type=refresh_token&client_id=flick&refresh_token=" + esc(cred_->secret) +
             (scope.empty() ? "" : "&scope=" + esc(scope)) + (service.empty() ? "" : "&service=" + esc(service));
    } else {
      std::string query;
      if (!scope.empty()) query += "&scope=" + esc(scope);
      if (!service.empty()) query += "&service=" + esc(service);
      if (!query.empty()) url += (realm.find('?') == std::string::npos ? "?" : "&") + query.substr(1);
    }
    Response resp;
    Transfer t{&resp, nullptr, c, std::nullopt};
    char tls_detail[CURL_ERROR_SIZE] = "";
    if (auto r = configure(c, url, tls_detail); !r) {
      curl_easy_cleanup(c);
      return std::move(r).error();
    }
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    if (!form.empty()) curl_easy_setopt(c, CURLOPT_POSTFIELDS, form.c_str());
    else if (cred_) set_basic_auth(c);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
    curl_easy_cleanup(c);
    const std::string what = "fetching a registry token from " + realm;
    if (is_tls_failure(rc)) return tls_error(realm, rc, tls_detail);
    if (rc != CURLE_OK) return make_error(Errc::network, what + ": " + curl_easy_strerror(rc));
    if (resp.status == 401 || resp.status == 403) {
      if (!cred_) return unauthorized(what);
      return make_error(Errc::invalid_argument, what + ": HTTP " + std::to_string(resp.status) +
                                                    ": the credentials for " + host_ + " from " +
                                                    cred_->source + " were refused");
    }
    if (resp.status != 200) return make_error(Errc::network, what + ": HTTP " + std::to_string(resp.status));
    auto j = nlohmann::json::parse(resp.body, nullptr, false);
    if (j.is_object()) {
      auto field = [&](const char* k) {
        auto it = j.find(k);
        return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
      };
      token_ = field("token");
      if (token_.empty()) token_ = field("access_token");
    }
    if (token_.empty()) return make_error(Errc::network, "token response from " + realm + " has no token");
    return {};
  }

  const ImageReference& ref_;
  const StoreOptions& opt_;
  std::string host_;  // the registry or the mirror spoken to
  CredentialStore credentials_;
  std::optional<Credential> cred_;
  bool looked_up_ = false;
  bool basic_ = false;
  std::vector<fs::path> ca_files_;  // the registry's certs.d CAs
  bool insecure_ = false;
  std::string unverified_;  // insecure: the HTTPS URL prefix not verified
  std::string plain_base_;  // insecure: where to go if HTTPS fails, until one scheme has answered
  std::string base_;
  std::string token_;
};

const std::string kManifestAccept = std::string(media::kOciIndex) + ", " + std::string(media::kOciManifest) +
                                    ", " + std::string(media::kDockerList) + ", " +
                                    std::string(media::kDockerManifest);

// GETs a manifest or index, verifies its digest and stores it; returns its descriptor.
Result<Descriptor> fetch_manifest(Registry& reg, const BlobStore& store, const std::string& reference,
                                  std::string_view expected) {
  FLICK_TRY_ASSIGN(auto resp, reg.get("/manifests/" + reference, kManifestAccept, nullptr));
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

namespace {

Result<ResolvedImage> pull_from(const BlobStore& store, const ImageReference& ref, const std::string& host,
                                const StoreOptions& options, const std::function<void(const PullProgress&)>& progress) {
  Registry reg(ref, host, options);
  const std::string& top_ref = ref.digest.empty() ? ref.tag : ref.digest;
  FLICK_TRY_ASSIGN(auto top, fetch_manifest(reg, store, top_ref, ref.digest));
  return resolve_image(store, top, options.platform, [&](const Descriptor& d) -> Result<void> {
    if (store.has(d.digest)) return {};
    if (is_index_media_type(d.media_type) || is_manifest_media_type(d.media_type)) {
      FLICK_TRY(fetch_manifest(reg, store, d.digest, d.digest));
      return {};
    }
    // Under the blob's lock: a concurrent pull of the same blob waits here, then finds it.
    FLICK_TRY_ASSIGN(auto download, store.download(d.digest));
    if (store.has(d.digest)) return {};
    FLICK_TRY(reg.get("/blobs/" + d.digest, {}, &download));
    return {};
  }, [&](std::span<const Descriptor> layers) { return reg.get_blobs(store, layers, progress); });
}

}  // namespace

// GET /v2/ (the API version check of the distribution spec) with `c` answering the
// registry's challenge: a basic-auth retry, or a token request with no scope.
Result<void> check_login(std::string_view host, const Credential& c, const StoreOptions& options) {
  ImageReference root;
  root.registry = std::string(host);
  Registry reg(root, root.registry, options);
  reg.use_credential(c);
  auto r = reg.get("", {}, nullptr);
  if (!r) return std::move(r).error().with_context("logging in to " + std::string(host));
  return {};
}

// The registry's mirrors first, as dockerd's registry-mirrors: whatever goes wrong with a
// mirror, the next one or the registry itself is asked (blobs already fetched are kept).
Result<ResolvedImage> pull_registry(const BlobStore& store, const ImageReference& ref,
                                    const StoreOptions& options,
                                    const std::function<void(const PullProgress&)>& progress) {
  std::string mirror_errors;
  if (auto it = options.registry_mirrors.find(ref.registry); it != options.registry_mirrors.end())
    for (const auto& mirror : it->second) {
      auto r = pull_from(store, ref, mirror, options, progress);
      if (r) return r;
      LOG_WARN("pulling %s from mirror %s failed, trying the next: %s", ref.to_string().c_str(), mirror.c_str(),
               r.error().describe().c_str());
      mirror_errors += "; mirror " + mirror + ": " + r.error().describe();
    }
  auto r = pull_from(store, ref, ref.registry, options, progress);
  if (!r) {
    Error e = std::move(r).error().with_context("pulling " + ref.to_string());
    e.message += mirror_errors;
    return e;
  }
  return r;
}

}  // namespace flick::image
