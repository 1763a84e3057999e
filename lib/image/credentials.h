// Registry credentials where Docker and Podman users already keep them: auth files
// (podman's containers-auth.json(5), Docker's config.json) and docker-credential-* helpers.
// Secrets never go into an Error message or a log line; `source` says where one came from.
#pragma once

#include <flick/result.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flick::image {

struct Credential {
  std::string username;  // empty for an identity token without a user name
  std::string secret;    // a password, or an OAuth2 refresh token when identity_token
  bool identity_token = false;
  std::string source;    // "FILE" or "docker-credential-NAME (from FILE)", for errors
};

// Finds the credential for one registry host ("ghcr.io", "127.0.0.1:5000", "docker.io").
class CredentialStore {
 public:
  // Auth files in podman's order: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
  // ~/.docker/config.json (unset variables are skipped; missing files are fine).
  static CredentialStore from_environment();
  explicit CredentialStore(std::vector<std::filesystem::path> files) : files_(std::move(files)) {}

  // The first file naming `host` (in credHelpers, auths or through credsStore) wins;
  // nullopt when none does. A broken file or helper is an error, not "anonymous".
  Result<std::optional<Credential>> find(std::string_view host) const;
  // "FILE, FILE and FILE" for "no credentials found for HOST in ..." messages.
  std::string searched() const;
  const std::vector<std::filesystem::path>& files() const { return files_; }

 private:
  std::vector<std::filesystem::path> files_;
};

// Looks `host` up in one auth file's JSON text; `file` names it in errors and `source`.
Result<std::optional<Credential>> credential_from_auth_json(std::string_view json, std::string_view host,
                                                            const std::filesystem::path& file);

// Standard base64 (RFC 4648 section 4, with padding) to bytes; an error names `what`, never the input.
Result<std::string> decode_base64(std::string_view text, std::string_view what);

// The registry an auth file key names: "https://index.docker.io/v1/" -> "docker.io",
// "https://127.0.0.1:5000" -> "127.0.0.1:5000", "ghcr.io" -> "ghcr.io".
std::string registry_of_key(std::string_view key);

// The file `flick image login` writes, as podman chooses it: the first of $REGISTRY_AUTH_FILE
// and $XDG_RUNTIME_DIR/containers/auth.json that is set, else ~/.docker/config.json.
Result<std::filesystem::path> login_auth_file();

// Rewrites `file` (atomically, mode 0600; created with its folder when missing) with every
// "auths" entry for `host` removed and, when `auth` is given, {"auth": auth} stored for it
// under the key Docker uses. Every other key is kept as it was. Returns how many entries
// were removed. A file that is not a JSON object is an error and is left alone.
Result<size_t> update_auth_file(const std::filesystem::path& file, std::string_view host,
                                const std::optional<std::string>& auth);

// The credential helper `file` hands `host` to, as Docker picks it for login: its
// "credHelpers" entry, else its "credsStore". Both empty when there is none.
struct HelperChoice {
  std::string name;   // NAME of docker-credential-NAME
  std::string field;  // "credHelpers" or "credsStore"
};
Result<HelperChoice> login_helper_for(const std::filesystem::path& file, std::string_view host);

// Asks `docker-credential-NAME get` (found on PATH) for `server`; nullopt when it has none.
Result<std::optional<Credential>> credential_from_helper(const std::string& name, std::string_view server);
// `docker-credential-NAME store`: the helper keeps `username` and `secret` for `host`.
Result<void> store_in_helper(const std::string& name, std::string_view host, std::string_view username,
                             std::string_view secret);
// `docker-credential-NAME erase`: false when the helper had nothing for `host`.
Result<bool> erase_from_helper(const std::string& name, std::string_view host);

}  // namespace flick::image
