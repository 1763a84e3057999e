// Registry credentials without a registry: auth file lookup order, the JSON forms Docker
// and Podman write, base64 errors and the credential helper protocol (a shell script helper).
#include "image/credentials.h"

#include "tree.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

namespace flick::image {
namespace {

namespace fs = std::filesystem;

const fs::path kFile = "/test/auth.json";
// base64("flick:pa:ss") — a password may contain ':'.
const std::string kAuth = "ZmxpY2s6cGE6c3M=";

TEST(Base64, DecodesWithAndWithoutPadding) {
  EXPECT_EQ(decode_base64("ZmxpY2s6cGE6c3M=", "x").value(), "flick:pa:ss");
  EXPECT_EQ(decode_base64("YWI=", "x").value(), "ab");
  EXPECT_EQ(decode_base64("YQ==", "x").value(), "a");
  EXPECT_EQ(decode_base64("YWJj", "x").value(), "abc");
  EXPECT_EQ(decode_base64(" YWJj\n", "x").value(), "abc");
  EXPECT_EQ(decode_base64("", "x").value(), "");
}

TEST(Base64, MalformedInputIsAnErrorThatDoesNotQuoteIt) {
  for (const char* bad : {"c2VjcmV0c2VjcmV0!", "c2VjcmV0c2VjcmV0c", "c2Vj*mV0"}) {
    auto r = decode_base64(bad, "the auth of ghcr.io");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::malformed);
    EXPECT_EQ(r.error().message, "the auth of ghcr.io is not valid base64");
  }
}

TEST(AuthJson, FindsAuthsEntriesUnderTheKeyFormsDockerWrites) {
  for (const char* key : {"ghcr.io", "https://ghcr.io", "https://ghcr.io/v1/", "http://ghcr.io/"}) {
    auto c = credential_from_auth_json(R"({"auths":{")" + std::string(key) + R"(":{"auth":")" + kAuth + R"("}}})",
                                       "ghcr.io", kFile);
    ASSERT_TRUE(c.ok()) << c.error().describe();
    ASSERT_TRUE(c->has_value()) << key;
    EXPECT_EQ((*c)->username, "flick");
    EXPECT_EQ((*c)->secret, "pa:ss");
    EXPECT_FALSE((*c)->identity_token);
    EXPECT_EQ((*c)->source, kFile.string());
  }
  auto hub = credential_from_auth_json(R"({"auths":{"https://index.docker.io/v1/":{"auth":")" + kAuth + R"("}}})",
                                       "docker.io", kFile);
  ASSERT_TRUE(hub.ok() && hub->has_value());
  auto other = credential_from_auth_json(R"({"auths":{"ghcr.io:5000":{"auth":")" + kAuth + R"("}}})", "ghcr.io", kFile);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value()) << "a port is part of the registry's name";
}

TEST(AuthJson, IdentityTokenAndEmptyEntries) {
  auto c = credential_from_auth_json(R"({"auths":{"r.example":{"identitytoken":"refresh-me"}}})", "r.example", kFile);
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_TRUE((*c)->identity_token);
  EXPECT_EQ((*c)->secret, "refresh-me");
  // Docker writes {} when a credsStore holds the secret: that is not a credential.
  auto empty = credential_from_auth_json(R"({"auths":{"r.example":{}}})", "r.example", kFile);
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->has_value());
}

TEST(AuthJson, BrokenEntriesAreErrorsNamingTheFileNeverTheSecret) {
  auto bad = credential_from_auth_json(R"({"auths":{"r.example":{"auth":"c2VjcmV0!!"}}})", "r.example", kFile);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find(kFile.string()), std::string::npos) << bad.error().message;
  EXPECT_NE(bad.error().message.find("r.example"), std::string::npos) << bad.error().message;
  EXPECT_EQ(bad.error().message.find("c2VjcmV0"), std::string::npos) << bad.error().message;
  // base64("secretpass"): no ':' between user and password
  auto no_colon = credential_from_auth_json(R"({"auths":{"r.example":{"auth":"c2VjcmV0cGFzcw=="}}})", "r.example", kFile);
  ASSERT_FALSE(no_colon.ok());
  EXPECT_EQ(no_colon.error().message.find("secretpass"), std::string::npos) << no_colon.error().message;
  auto not_json = credential_from_auth_json(R"({"auths":{"r.example":{"auth":"secretpass")", "r.example", kFile);
  ASSERT_FALSE(not_json.ok());
  EXPECT_EQ(not_json.error().code, Errc::malformed);
  EXPECT_EQ(not_json.error().message.find("secretpass"), std::string::npos) << not_json.error().message;
}

class AuthFiles : public ::testing::Test {
 protected:
  fs::path write(const std::string& name, const std::string& text) {
    fs::path p = dir_.path() / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p;
  }
  static std::string auths(const std::string& host, const std::string& user_pass_b64) {
    return R"({"auths":{")" + host + R"(":{"auth":")" + user_pass_b64 + R"("}}})";
  }
  test::TempDir dir_;
};

TEST_F(AuthFiles, TheFirstFileNamingTheRegistryWins) {
  fs::path a = write("a.json", auths("one.example", "YTox"));      // a:1
  fs::path b = write("b.json", auths("two.example", "Yjoy"));      // b:2
  fs::path c = write("c.json", auths("two.example", "Yzoz"));      // c:3
  CredentialStore store({dir_.path() / "missing.json", a, b, c});
  auto one = store.find("one.example");
  ASSERT_TRUE(one.ok() && one->has_value());
  EXPECT_EQ((*one)->username, "a");
  auto two = store.find("two.example");
  ASSERT_TRUE(two.ok() && two->has_value());
  EXPECT_EQ((*two)->username, "b");
  EXPECT_EQ((*two)->source, b.string());
  auto none = store.find("three.example");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(AuthFiles, EnvironmentGivesPodmansOrder) {
  setenv("REGISTRY_AUTH_FILE", (dir_.path() / "registry-auth.json").c_str(), 1);
  setenv("XDG_RUNTIME_DIR", (dir_.path() / "run").c_str(), 1);
  setenv("HOME", (dir_.path() / "home").c_str(), 1);
  auto store = CredentialStore::from_environment();
  EXPECT_EQ(store.files(), (std::vector<fs::path>{dir_.path() / "registry-auth.json",
                                                  dir_.path() / "run/containers/auth.json",
                                                  dir_.path() / "home/.docker/config.json"}));
  write("home/.docker/config.json", auths("r.example", "ZG9ja2VyOng="));            // docker:x
  write("run/containers/auth.json", auths("r.example", "cG9kbWFuOng="));            // podman:x
  auto c = store.find("r.example");
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->username, "podman");
  write("registry-auth.json", auths("r.example", "ZW52Ong="));                      // env:x
  c = store.find("r.example");
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->username, "env");
  EXPECT_NE(store.searched().find("home/.docker/config.json"), std::string::npos);
  unsetenv("REGISTRY_AUTH_FILE");
  unsetenv("XDG_RUNTIME_DIR");
  EXPECT_EQ(CredentialStore::from_environment().files(), (std::vector<fs::path>{dir_.path() / "home/.docker/config.json"}));
}

TEST_F(AuthFiles, CredentialHelpers) {
  write("bin/docker-credential-flickunit", R"(#!/bin/sh
[ "$1" = get ] || exit 2
read server
case "$server" in
  pass.example) echo '{"ServerURL":"pass.example","Username":"helper","Secret":"hpass"}' ;;
  token.example) echo '{"ServerURL":"token.example","Username":"<token>","Secret":"refresh"}' ;;
  broken.example) echo 'keyring is locked'; exit 1 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
)");
  fs::permissions(dir_.path() / "bin/docker-credential-flickunit", fs::perms::owner_all);
  const std::string path = std::getenv("PATH");
  setenv("PATH", ((dir_.path() / "bin").string() + ":" + path).c_str(), 1);

  fs::path f = write("config.json", R"({"credHelpers":{"pass.example":"flickunit"},"credsStore":"flickunit",
                                        "auths":{"file.example":{"auth":"Zjp4"}}})");
  CredentialStore store({f});
  auto pass = store.find("pass.example");
  ASSERT_TRUE(pass.ok()) << pass.error().describe();
  ASSERT_TRUE(pass->has_value());
  EXPECT_EQ((*pass)->username, "helper");
  EXPECT_EQ((*pass)->secret, "hpass");
  EXPECT_EQ((*pass)->source, "docker-credential-flickunit (credHelpers of " + f.string() + ")");
  auto token = store.find("token.example");  // through credsStore
  ASSERT_TRUE(token.ok() && token->has_value());
  EXPECT_TRUE((*token)->identity_token);
  EXPECT_EQ((*token)->username, "");
  EXPECT_EQ((*token)->secret, "refresh");
  auto file = store.find("file.example");  // auths before credsStore
  ASSERT_TRUE(file.ok() && file->has_value());
  EXPECT_EQ((*file)->username, "f");
  auto none = store.find("none.example");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto broken = store.find("broken.example");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.error().message.find("keyring is locked"), std::string::npos) << broken.error().message;
  EXPECT_NE(broken.error().message.find(f.string()), std::string::npos) << broken.error().message;
  setenv("PATH", path.c_str(), 1);

  auto missing = credential_from_helper("flick-no-such-helper", "x.example");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_NE(missing.error().message.find("docker-credential-flick-no-such-helper"), std::string::npos);
}

}  // namespace
}  // namespace flick::image
