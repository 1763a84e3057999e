#include <flick/image.h>

#include "image/manifest.h"
#include "image/sha256.h"

#include <gtest/gtest.h>

namespace flick {
namespace {

struct Case {
  const char* text;
  const char* registry;
  const char* repository;
  const char* tag;
  const char* digest;
};

const std::string kDigest = "sha256:" + std::string(64, 'a');

TEST(ImageReference, ParsesTheFormsUsersWrite) {
  const Case cases[] = {
      {"busybox", "docker.io", "library/busybox", "latest", ""},
      {"library/alpine:3.19", "docker.io", "library/alpine", "3.19", ""},
      {"alpine:3.19", "docker.io", "library/alpine", "3.19", ""},
      {"user/app", "docker.io", "user/app", "latest", ""},
      {"localhost:5000/app", "localhost:5000", "app", "latest", ""},
      {"localhost/app:v1", "localhost", "app", "v1", ""},
      {"ghcr.io/org/sub/app:1.0-rc.1", "ghcr.io", "org/sub/app", "1.0-rc.1", ""},
      {"127.0.0.1:5000/app:tag", "127.0.0.1:5000", "app", "tag", ""},
      {"docker://quay.io/x/y:z", "quay.io", "x/y", "z", ""},
  };
  for (const auto& c : cases) {
    auto r = ImageReference::parse(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.error().describe();
    EXPECT_EQ(r->transport, ImageTransport::registry) << c.text;
    EXPECT_EQ(r->registry, c.registry) << c.text;
    EXPECT_EQ(r->repository, c.repository) << c.text;
    EXPECT_EQ(r->tag, c.tag) << c.text;
    EXPECT_EQ(r->digest, c.digest) << c.text;
  }
}

TEST(ImageReference, DigestReferencesHaveNoDefaultTag) {
  auto r = ImageReference::parse("localhost:5000/app@" + kDigest);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->registry, "localhost:5000");
  EXPECT_EQ(r->repository, "app");
  EXPECT_EQ(r->tag, "");
  EXPECT_EQ(r->digest, kDigest);
  EXPECT_EQ(r->to_string(), "localhost:5000/app@" + kDigest);
  auto both = ImageReference::parse("app:v2@" + kDigest);
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(both->tag, "v2");
  EXPECT_EQ(both->digest, kDigest);
}

TEST(ImageReference, DefaultRegistryIsConfigurable) {
  auto r = ImageReference::parse("app:1", "registry.example:5000");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "registry.example:5000");
  EXPECT_EQ(r->repository, "app");  // "library/" is Docker Hub's convention only
  EXPECT_EQ(r->to_string(), "registry.example:5000/app:1");
}

TEST(ImageReference, LocalTransports) {
  auto a = ImageReference::parse("oci:/var/images/layout:v1");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->transport, ImageTransport::oci_layout);
  EXPECT_EQ(a->path, "/var/images/layout");
  EXPECT_EQ(a->tag, "v1");
  auto b = ImageReference::parse("oci-archive:img.tar");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->transport, ImageTransport::oci_archive);
  EXPECT_EQ(b->path, "img.tar");
  EXPECT_EQ(b->tag, "");
  auto c = ImageReference::parse("docker-archive:save.tar");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->transport, ImageTransport::docker_archive);
  EXPECT_EQ(c->to_string(), "docker-archive:save.tar");
}

TEST(ImageReference, RejectsMalformedReferences) {
  for (const char* bad : {"", "UPPER/case", "app:", "app@sha256:1234", "app@md5:" , "a//b", "-app",
                          "app:-tag", "oci:", "oci-archive::tag", "app:tag with space"}) {
    auto r = ImageReference::parse(bad);
    EXPECT_FALSE(r.ok()) << "accepted '" << bad << "'";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Errc::invalid_argument) << bad;
    }
  }
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(image::sha256_digest(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(image::sha256_digest("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string million(1000000, 'a');
  image::Sha256 h;  // fed in uneven pieces to cross block boundaries
  for (size_t off = 0; off < million.size(); off += 777)
    h.update(million.data() + off, std::min<size_t>(777, million.size() - off));
  EXPECT_EQ(h.digest(), "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Manifest, SelectsThePlatformFromAnIndex) {
  const std::string index = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
    "manifests":[
     {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" + std::string(64, '1') +
                            R"(","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
     {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" + std::string(64, '2') +
                            R"(","size":2,"platform":{"os":"linux","architecture":"amd64"}}]})";
  auto idx = image::parse_index(index);
  ASSERT_TRUE(idx.ok()) << idx.error().describe();
  auto d = image::select_platform(*idx, "linux/amd64");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->digest, "sha256:" + std::string(64, '2'));
  auto none = image::select_platform(*idx, "linux/s390x");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("linux/arm64"), std::string::npos) << none.error().message;
}

TEST(Manifest, ParsesTheConfigIntoATypedObject) {
  auto c = image::parse_config(R"({"architecture":"amd64","os":"linux","config":{
      "Entrypoint":["/bin/app","--serve"],"Cmd":["-v"],"Env":["PATH=/bin","A=b"],
      "WorkingDir":"/srv","User":"1000:1000","ExposedPorts":{"8080/tcp":{},"53/udp":{}},
      "Labels":{"org.example":"yes"}},"rootfs":{"type":"layers","diff_ids":["sha256:)" +
                               std::string(64, '3') + R"("]}})");
  ASSERT_TRUE(c.ok()) << c.error().describe();
  EXPECT_EQ(c->entrypoint, (std::vector<std::string>{"/bin/app", "--serve"}));
  EXPECT_EQ(c->cmd, (std::vector<std::string>{"-v"}));
  EXPECT_EQ(c->env, (std::vector<std::string>{"PATH=/bin", "A=b"}));
  EXPECT_EQ(c->working_dir, "/srv");
  EXPECT_EQ(c->user, "1000:1000");
  EXPECT_EQ(c->exposed_ports, (std::vector<std::string>{"53/udp", "8080/tcp"}));
  EXPECT_EQ(c->labels.at("org.example"), "yes");
  auto bad = image::parse_config(R"({"config":{"Env":"not-a-list"}})");
  EXPECT_FALSE(bad.ok());
}

TEST(Manifest, RejectsUnknownLayerTypesAndSchema1) {
  const std::string cfg = R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:)" +
                          std::string(64, '4') + R"(","size":1})";
  auto odd = image::parse_manifest(R"({"schemaVersion":2,)" + cfg +
                                   R"(,"layers":[{"mediaType":"application/x-squashfs","digest":"sha256:)" +
                                   std::string(64, '5') + R"(","size":1}]})");
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.error().code, Errc::unsupported);
  auto v1 = image::parse_manifest(R"({"schemaVersion":1,"fsLayers":[]})");
  ASSERT_FALSE(v1.ok());
  EXPECT_NE(v1.error().message.find("schema 1"), std::string::npos);
}

}  // namespace
}  // namespace flick
