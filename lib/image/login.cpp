// flick image login|logout: credentials checked with the registry, then written where podman
// and Docker read them (credentials.h reads them back).
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

}  // namespace

Result<fs::path> registry_auth_file() { return image::login_auth_file(); }

Result<fs::path> registry_login(std::string_view registry, std::string_view username, std::string_view password,
                                const StoreOptions& options) {
  FLICK_TRY_ASSIGN(std::string host, login_host(registry));
  if (username.empty() || username.find(':') != std::string_view::npos)
    return make_error(Errc::invalid_argument, "a registry user name must be non-empty and have no ':'");
  if (password.empty()) return make_error(Errc::invalid_argument, "an empty password for " + host);
  FLICK_TRY_ASSIGN(fs::path file, image::login_auth_file());
  // credHelpers wins over auths when reading: an entry written there would never be used.
  FLICK_TRY_ASSIGN(std::string helper, image::cred_helper_for(file, host));
  if (!helper.empty())
    return make_error(Errc::unsupported, "credHelpers in " + file.string() + " gives " + host + " to docker-credential-" +
                                             helper + ", which flick does not write to; log in with that helper's tool");
  image::Credential c;
  c.username = std::string(username);
  c.secret = std::string(password);
  c.source = "the login";
  FLICK_TRY(image::check_login(host, c, options));
  std::string user_pass = c.username + ":" + c.secret;
  FLICK_TRY(image::update_auth_file(file, host, encode_base64(user_pass)));
  return file;
}

Result<fs::path> registry_logout(std::string_view registry) {
  FLICK_TRY_ASSIGN(std::string host, login_host(registry));
  FLICK_TRY_ASSIGN(fs::path file, image::login_auth_file());
  FLICK_TRY_ASSIGN(size_t removed, image::update_auth_file(file, host, std::nullopt));
  if (removed == 0) return make_error(Errc::not_found, "not logged in to " + host + " (no entry in " + file.string() + ")");
  return file;
}

}  // namespace flick
