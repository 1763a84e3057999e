// flick image login|logout: credentials checked with the registry, then written where podman
// and Docker read them, a credential helper included (credentials.h reads them back).
#include "image/credentials.h"
#include "image/source.h"

#include <flick/image.h>

#include <openssl/evp.h>

namespace flick {

namespace fs = std::filesystem;

namespace {

std::string encode_base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), int(bytes.size()));
  out.resize(size_t(n));
  return out;
}

// The registry as references name it, whichever way the user wrote it.
Result<std::string> login_host(std::string_view registry) {
  std::string host = image::registry_of_key(registry);
  if (host.empty() || host.find_first_of(" \t\r\n@") != std::string::npos)
    return make_error(Errc::invalid_argument, "'" + std::string(registry) + "' is not a registry (HOST[:PORT])");
  return host;
}

std::string helper_source(const image::HelperChoice& h, const fs::path& file) {
  return "docker-credential-" + h.name + " (" + h.field + " of " + file.string() + ")";
}

}  // namespace

Result<fs::path> registry_auth_file() { return image::login_auth_file(); }

Result<RegistryLogin> registry_login(std::string_view registry, std::string_view username,
                                     std::string_view password, const StoreOptions& options) {
  FLICK_TRY_ASSIGN(std::string host, login_host(registry));
  if (username.empty() || username.find(':') != std::string_view::npos)
    return make_error(Errc::invalid_argument, "a registry user name must be non-empty and have no ':'");
  if (password.empty()) return make_error(Errc::invalid_argument, "an empty password for " + host);
  FLICK_TRY_ASSIGN(fs::path file, image::login_auth_file());
  FLICK_TRY_ASSIGN(image::HelperChoice helper, image::login_helper_for(file, host));
  image::Credential c;
  c.username = std::string(username);
  c.secret = std::string(password);
  c.source = "the login";
  FLICK_TRY(image::check_login(host, c, options));
  if (helper.name.empty()) {
    FLICK_TRY(image::update_auth_file(file, host, encode_base64(c.username + ":" + c.secret)));
    return RegistryLogin{file, {}};
  }
  FLICK_TRY(image::store_in_helper(helper.name, host, c.username, c.secret));
  // An "auths" entry left in the file would be read before a credsStore: it goes.
  FLICK_TRY(image::update_auth_file(file, host, std::nullopt));
  return RegistryLogin{file, helper_source(helper, file)};
}

Result<RegistryLogin> registry_logout(std::string_view registry) {
  FLICK_TRY_ASSIGN(std::string host, login_host(registry));
  FLICK_TRY_ASSIGN(fs::path file, image::login_auth_file());
  FLICK_TRY_ASSIGN(image::HelperChoice helper, image::login_helper_for(file, host));
  bool erased = false;
  if (!helper.name.empty()) {
    FLICK_TRY_ASSIGN(erased, image::erase_from_helper(helper.name, host));
  }
  FLICK_TRY_ASSIGN(size_t removed, image::update_auth_file(file, host, std::nullopt));
  if (!erased && removed == 0)
    return make_error(Errc::not_found, "not logged in to " + host + " (no entry in " + file.string() +
                                           (helper.name.empty() ? "" : " nor in " + helper_source(helper, file)) + ")");
  return RegistryLogin{file, erased ? helper_source(helper, file) : std::string()};
}

}  // namespace flick
