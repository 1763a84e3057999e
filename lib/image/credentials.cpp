#include "image/credentials.h"

#include "base/fd.h"

#include <fcntl.h>
#include <unistd.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

extern char** environ;

namespace flick::image {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kMaxHelperOutput = 64 << 10;
constexpr int kHelperTimeoutMs = 60'000;  // a helper may wait for a keyring to unlock

// What Docker hands a credential helper as the server for a registry.
std::string server_url(std::string_view host) {
  return host == "docker.io" ? "https://index.docker.io/v1/" : std::string(host);
}

std::string string_field(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<std::optional<Credential>> from_helper_named_in(const fs::path& file, const char* field,
                                                       const std::string& name, std::string_view host) {
  auto c = credential_from_helper(name, server_url(host));
  if (!c) return std::move(c).error().with_context(std::string(field) + " of " + file.string());
  if (*c) (*c)->source = "docker-credential-" + name + " (" + field + " of " + file.string() + ")";
  return c;
}

// Reads `file` as a JSON object; a missing file is an empty one.
Result<nlohmann::ordered_json> read_auth_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(file, ec)) return nlohmann::ordered_json::object();
    return sys_error("reading registry auth file " + file.string(), errno);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().find_first_not_of(" \t\r\n") == std::string::npos) return nlohmann::ordered_json::object();
  // No parser message: it could quote bytes of a secret.
  auto j = nlohmann::ordered_json::parse(ss.str(), nullptr, false);
  if (!j.is_object()) return make_error(Errc::malformed, "registry auth file " + file.string() + " is not a JSON object");
  return j;
}

// A temporary file beside `file`, created 0600, renamed over it.
Result<void> replace_file(const fs::path& file, const std::string& text) {
  std::error_code ec;
  if (!file.parent_path().empty() && !fs::is_directory(file.parent_path(), ec)) {
    fs::create_directories(file.parent_path(), ec);
    if (ec) return sys_error("creating " + file.parent_path().string(), ec.value());
    fs::permissions(file.parent_path(), fs::perms::owner_all, ec);
  }
  std::string tmp = (file.parent_path() / ("." + file.filename().string() + ".XXXXXX")).string();
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));  // mode 0600
  if (!fd.valid()) return sys_error("creating a temporary file for " + file.string(), errno);
  int err = write_all(fd.get(), text);
  if (!err && ::fsync(fd.get()) != 0) err = errno;
  if (!err && ::rename(tmp.c_str(), file.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    return sys_error("writing registry auth file " + file.string(), err);
  }
  return {};
}

}  // namespace

// Auth file keys are written as "host", "https://host" or "https://host/v1/"; Docker Hub's
// is "https://index.docker.io/v1/".
std::string registry_of_key(std::string_view key) {
  for (std::string_view scheme : {"https://", "http://"})
    if (key.substr(0, scheme.size()) == scheme) key.remove_prefix(scheme.size());
  key = key.substr(0, key.find('/'));
  if (key == "index.docker.io" || key == "registry-1.docker.io") return "docker.io";
  return std::string(key);
}

Result<fs::path> login_auth_file() {
  auto env = [](const char* name) -> const char* {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
  };
  if (const char* v = env("REGISTRY_AUTH_FILE")) return fs::path(v);
  if (const char* v = env("XDG_RUNTIME_DIR")) return fs::path(v) / "containers" / "auth.json";
  if (const char* v = env("HOME")) return fs::path(v) / ".docker" / "config.json";
  return make_error(Errc::not_found, "no registry auth file: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR and $HOME are unset");
}

Result<size_t> update_auth_file(const fs::path& file, std::string_view host, const std::optional<std::string>& auth) {
  FLICK_TRY_ASSIGN(auto j, read_auth_file(file));
  auto& auths = j["auths"];
  if (!auths.is_object()) {
    if (!auths.is_null()) return make_error(Errc::malformed, "\"auths\" in registry auth file " + file.string() + " is not an object");
    auths = nlohmann::ordered_json::object();
  }
  size_t removed = 0;
  for (auto it = auths.begin(); it != auths.end();)
    if (registry_of_key(it.key()) == host) it = auths.erase(it), ++removed;
    else ++it;
  if (auth) auths[server_url(host)] = {{"auth", *auth}};
  if (!auth && removed == 0) return removed;
  FLICK_TRY(replace_file(file, j.dump(1, '\t') + "\n"));
  return removed;
}

Result<HelperChoice> login_helper_for(const fs::path& file, std::string_view host) {
  FLICK_TRY_ASSIGN(auto j, read_auth_file(file));
  if (auto it = j.find("credHelpers"); it != j.end() && it->is_object())
    for (const auto& [key, name] : it->items())
      if (registry_of_key(key) == host && name.is_string() && !name.get<std::string>().empty())
        return HelperChoice{name.get<std::string>(), "credHelpers"};
  if (auto it = j.find("credsStore"); it != j.end() && it->is_string() && !it->get<std::string>().empty())
    return HelperChoice{it->get<std::string>(), "credsStore"};
  return HelperChoice{};
}

Result<std::string> decode_base64(std::string_view text, std::string_view what) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  std::string out(text.size() / 4 * 3, '\0');
  int n = text.size() % 4 == 0 && text.size() < (1u << 20)
              ? EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), int(text.size()))
              : -1;
  if (n < 0) return make_error(Errc::malformed, std::string(what) + " is not valid base64");
  // EVP_DecodeBlock counts the padding as zero bytes.
  size_t pad = text.ends_with("==") ? 2 : text.ends_with("=") ? 1 : 0;
  out.resize(size_t(n) - pad);
  return out;
}

Result<std::optional<Credential>> credential_from_auth_json(std::string_view text, std::string_view host,
                                                            const fs::path& file) {
  // No parser message: it could quote bytes of a secret.
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return make_error(Errc::malformed, "registry auth file " + file.string() + " is not a JSON object");
  auto section = [&](const char* key) { auto it = j.find(key); return it != j.end() && it->is_object() ? &*it : nullptr; };

  if (const json* helpers = section("credHelpers"))
    for (const auto& [key, name] : helpers->items())
      if (registry_of_key(key) == host && name.is_string() && !name.get<std::string>().empty())
        return from_helper_named_in(file, "credHelpers", name.get<std::string>(), host);

  if (const json* auths = section("auths"))
    for (const auto& [key, entry] : auths->items()) {
      if (registry_of_key(key) != host || !entry.is_object()) continue;
      std::string auth = string_field(entry, "auth"), identity = string_field(entry, "identitytoken");
      if (auth.empty() && identity.empty()) continue;  // Docker leaves {} here when a credsStore holds it
      Credential c;
      c.source = file.string();
      if (!auth.empty()) {
        const std::string what = "the \"auth\" of " + key + " in " + file.string();
        FLICK_TRY_ASSIGN(std::string user_pass, decode_base64(auth, what));
        size_t colon = user_pass.find(':');
        if (colon == std::string::npos)
          return make_error(Errc::malformed, what + " is not base64 of \"user:password\"");
        c.username = user_pass.substr(0, colon);
        c.secret = user_pass.substr(colon + 1);
      }
      if (!identity.empty()) {
        c.secret = identity;
        c.identity_token = true;
      }
      return std::optional<Credential>(std::move(c));
    }

  if (std::string store = string_field(j, "credsStore"); !store.empty())
    return from_helper_named_in(file, "credsStore", store, host);
  return std::optional<Credential>();
}

namespace {

struct HelperAnswer {
  bool ok = false;  // exited 0
  std::string out;  // stdout (the answer, or what went wrong)
};

// Runs `docker-credential-NAME VERB` with `input` on stdin (the docker-credential-helpers
// protocol: answers and failures alike come on stdout; stderr is dropped).
Result<HelperAnswer> run_helper(const std::string& name, const char* verb, std::string_view input) {
  const std::string prog = "docker-credential-" + name;
  if (name.empty() || name.find('/') != std::string::npos)
    return make_error(Errc::invalid_argument, "credential helper name \"" + name + "\" is empty or contains a '/'");
  int sv[2];  // a socket, not a pipe: writing to a helper that has exited must not raise SIGPIPE
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return sys_error("socketpair for " + prog, errno);
  UniqueFd ours(sv[0]), theirs(sv[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, theirs.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, theirs.get(), 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  std::string arg0 = prog, arg1 = verb;
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, prog.c_str(), &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc == ENOENT) return make_error(Errc::not_found, prog + " is not on PATH");
  if (rc != 0) return sys_error("running " + prog, rc);
  theirs.reset();

  HelperAnswer answer;
  (void)::send(ours.get(), input.data(), input.size(), MSG_NOSIGNAL);  // an early exit shows in its status
  bool timed_out = false;
  ::shutdown(ours.get(), SHUT_WR);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kHelperTimeoutMs);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{ours.get(), POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, int(left.count())) == 0) {
      timed_out = true;
      break;
    }
    char buf[4096];
    ssize_t n = ::read(ours.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || answer.out.size() + size_t(n) > kMaxHelperOutput) break;
    answer.out.append(buf, size_t(n));
  }
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out)
    return make_error(Errc::timeout, prog + " " + verb + " did not answer within " +
                                         std::to_string(kHelperTimeoutMs / 1000) + " s");
  answer.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  return answer;
}

// Docker's helpers say this when they hold nothing for the server.
bool says_not_found(const HelperAnswer& a) { return a.out.find("credentials not found") != std::string::npos; }

// "docker-credential-NAME VERB failed: FIRST LINE" (at most 200 bytes of it, and none that
// holds `secret`).
Error helper_failed(const std::string& name, const char* verb, const HelperAnswer& a, std::string_view secret = {}) {
  std::string why = a.out.substr(0, a.out.find('\n')).substr(0, 200);
  if (!secret.empty() && why.find(secret) != std::string::npos) why.clear();
  return make_error(Errc::io, "docker-credential-" + name + " " + verb + " failed" + (why.empty() ? "" : ": " + why));
}

}  // namespace

Result<std::optional<Credential>> credential_from_helper(const std::string& name, std::string_view server) {
  FLICK_TRY_ASSIGN(HelperAnswer a, run_helper(name, "get", std::string(server) + "\n"));
  if (!a.ok) {
    if (says_not_found(a)) return std::optional<Credential>();
    return helper_failed(name, "get", a);
  }
  const std::string prog = "docker-credential-" + name;
  json j = json::parse(a.out, nullptr, false);
  if (!j.is_object()) return make_error(Errc::malformed, prog + " get did not answer with a JSON object");
  Credential c;
  c.username = string_field(j, "Username");
  c.secret = string_field(j, "Secret");
  if (c.secret.empty()) return std::optional<Credential>();
  if (c.username == "<token>") {  // docker-credential-helpers' marker for an identity token
    c.username.clear();
    c.identity_token = true;
  }
  c.source = prog;
  return std::optional<Credential>(std::move(c));
}

Result<void> store_in_helper(const std::string& name, std::string_view host, std::string_view username,
                             std::string_view secret) {
  json creds{{"ServerURL", server_url(host)}, {"Username", username}, {"Secret", secret}};
  FLICK_TRY_ASSIGN(HelperAnswer a, run_helper(name, "store", creds.dump()));
  if (!a.ok) return helper_failed(name, "store", a, secret);
  return {};
}

Result<bool> erase_from_helper(const std::string& name, std::string_view host) {
  FLICK_TRY_ASSIGN(HelperAnswer a, run_helper(name, "erase", server_url(host) + "\n"));
  if (a.ok) return true;
  if (says_not_found(a)) return false;
  return helper_failed(name, "erase", a);
}

CredentialStore CredentialStore::from_environment() {
  auto env = [](const char* name) -> const char* {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
  };
  std::vector<fs::path> files;
  if (const char* v = env("REGISTRY_AUTH_FILE")) files.emplace_back(v);
  if (const char* v = env("XDG_RUNTIME_DIR")) files.push_back(fs::path(v) / "containers" / "auth.json");
  if (const char* v = env("HOME")) files.push_back(fs::path(v) / ".docker" / "config.json");
  return CredentialStore(std::move(files));
}

Result<std::optional<Credential>> CredentialStore::find(std::string_view host) const {
  for (const auto& f : files_) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      std::error_code ec;
      if (!fs::exists(f, ec)) continue;
      return sys_error("reading registry auth file " + f.string(), errno);
    }
    std::stringstream ss;
    ss << in.rdbuf();
    FLICK_TRY_ASSIGN(auto c, credential_from_auth_json(ss.str(), host, f));
    if (c) return c;
  }
  return std::optional<Credential>();
}

std::string CredentialStore::searched() const {
  std::string s;
  for (size_t i = 0; i < files_.size(); ++i)
    s += (i == 0 ? "" : i + 1 == files_.size() ? " and " : ", ") + files_[i].string();
  return s.empty() ? "no auth file ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR and $HOME are unset)" : s;
}

}  // namespace flick::image
