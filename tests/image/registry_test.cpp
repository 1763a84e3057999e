// Pulls over HTTP from a real registry (Debian's docker-registry) on loopback, filled with
// skopeo, and through token_proxy.py for the bearer-token flow and misbehaving servers; and
// over TLS (a CA the test makes) from a docker-registry with htpasswd auth, with credentials
// from auth files and a credential helper. HOME and the auth variables point into temp dirs.
#include <flick/image.h>

#include "base/log.h"
#include "fixtures.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

extern char** environ;

namespace flick {
namespace {

using test::q;
using test::run;
namespace fs = std::filesystem;

// Secrets the tests hand flick; NoSecretInAnyErrorOrOutput looks for each of them.
const std::string kUser = "flick";
const std::string kPassword = "s3cret-Flick-pw-7";
const std::string kWrongPassword = "wr0ng-Flick-pw-3";
const std::string kIdentityToken = "flick-identity-token-9";
const std::string kWrongIdentityToken = "flick-wrong-identity-5";

std::string base64(const std::string& s) {
  std::string out;
  EXPECT_EQ(run("printf %s " + q(s) + " | base64 -w0", &out), 0);
  return out;
}

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

bool port_open(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

// A child process owned by the test; killed and reaped on destruction.
struct Child {
  pid_t pid = -1;
  int stdout_fd = -1;
  void start(std::vector<std::string> argv, const fs::path& stderr_log) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addopen(&fa, 2, stderr_log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ASSERT_EQ(posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    stdout_fd = fds[0];
  }
  std::string read_line() {
    std::string line;
    char c;
    while (::read(stdout_fd, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
    if (stdout_fd >= 0) ::close(stdout_fd);
  }
};

class Registry : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const fs::path d = dir_->path();
    test::make_layers(d / "layers");
    test::make_image(d / "layout", "t", {d / "layers/base.tar", d / "layers/changes.tar", d / "layers/sparse.tar"},
                     "--config.entrypoint /bin/app");
    test::make_image(d / "layout", "arm", {d / "layers/base.tar"}, "--architecture arm64");
    expected_ = new test::Tree(test::umoci_tree(d / "layout", "t", d / "bundle"));
    // An image index over both images, as a multi-platform image in the layout.
    ASSERT_EQ(run("python3 - " + q(d / "layout") + R"PY( <<'EOF'
import hashlib, json, os, sys
l = sys.argv[1]
idx = json.load(open(os.path.join(l, 'index.json')))
plat = {'t': 'amd64', 'arm': 'arm64'}
ms = []
for m in idx['manifests']:
    tag = m['annotations']['org.opencontainers.image.ref.name']
    ms.append({'mediaType': m['mediaType'], 'digest': m['digest'], 'size': m['size'],
               'platform': {'os': 'linux', 'architecture': plat[tag]}})
ms.reverse()  # arm64 first: selection must not just take the first entry
raw = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.index.v1+json', 'manifests': ms}).encode()
d = hashlib.sha256(raw).hexdigest()
open(os.path.join(l, 'blobs', 'sha256', d), 'wb').write(raw)
idx['manifests'].append({'mediaType': 'application/vnd.oci.image.index.v1+json', 'digest': 'sha256:' + d,
                         'size': len(raw), 'annotations': {'org.opencontainers.image.ref.name': 'multi'}})
json.dump(idx, open(os.path.join(l, 'index.json'), 'w'))
EOF
)PY"), 0);

    port_ = start_registry("registry");
    zstd_port_ = start_registry("registry-zstd");
    const std::string src = "oci:" + (d / "layout").string();
    const std::string dst = "docker://127.0.0.1:" + std::to_string(port_);
    const std::string copy = "skopeo copy -q --dest-tls-verify=false ";
    ASSERT_EQ(run(copy + "--format oci " + q(src + ":t") + " " + q(dst + "/oci:gzip")), 0);
    ASSERT_EQ(run(copy + "--format v2s2 " + q(src + ":t") + " " + q(dst + "/docker:v2")), 0);
    ASSERT_EQ(run(copy + "--all " + q(src + ":multi") + " " + q(dst + "/multi:latest")), 0);
    // skopeo reuses compressed blobs it knows a registry has, whatever the requested
    // compression: zstd layers get a registry of their own, pushed from an uncompressed copy.
    ASSERT_EQ(run("skopeo copy -q --dest-decompress " + q(src + ":t") + " " + q("dir:" + (d / "plain").string())), 0);
    ASSERT_EQ(run(copy + "--format oci --dest-compress-format zstd " + q("dir:" + (d / "plain").string()) + " " +
                  q("docker://127.0.0.1:" + std::to_string(zstd_port_) + "/oci:zstd")), 0);

    proxy_ = new Child();
    proxy_->start({"python3", FLICK_IMAGE_TEST_DIR "/token_proxy.py", std::to_string(port_), (d / "proxy.log").string(),
                   kUser, kPassword, kIdentityToken}, d / "proxy.err");
    proxy_port_ = std::stoi(proxy_->read_line());
    blob_proxy_ = new Child();
    blob_proxy_->start({"python3", FLICK_IMAGE_TEST_DIR "/blob_proxy.py", std::to_string(port_),
                        (d / "blob_proxy.log").string(), std::to_string(kDropAfter), stall_file().string()},
                       d / "blob_proxy.err");
    blob_proxy_port_ = std::stoi(blob_proxy_->read_line());
  }
  // `extra` is more configuration (TLS, auth); `storage` may be another registry's.
  static int start_registry(const std::string& name, const std::string& storage = "", const std::string& extra = "") {
    const fs::path d = dir_->path();
    int port = free_port();
    std::ofstream(d / (name + ".yml")) << "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                                       << "storage:\n  filesystem:\n    rootdirectory: "
                                       << (d / (storage.empty() ? name : storage)).string()
                                       << "\nhttp:\n  addr: 127.0.0.1:" << port << "\n" << extra;
    children_.emplace_back(std::make_unique<Child>());
    children_.back()->start({"docker-registry", "serve", (d / (name + ".yml")).string()}, d / (name + ".log"));
    for (int i = 0; i < 500 && !port_open(port); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(port_open(port)) << "docker-registry did not start";
    return port;
  }
  static void TearDownTestSuite() {
    delete proxy_;
    delete blob_proxy_;
    children_.clear();
    delete expected_;
    delete dir_;
  }

  // Nothing of the user's: no auth files, no certs.d beyond /etc's.
  void SetUp() override {
    fs::create_directories(tmp_ / "home");
    setenv("HOME", (tmp_ / "home").c_str(), 1);
    for (const char* v : {"XDG_RUNTIME_DIR", "REGISTRY_AUTH_FILE", "FLICK_CERTS_DIR"}) unsetenv(v);
  }
  // Writes `json` to an auth file in the test's temp dir and names it in $REGISTRY_AUTH_FILE.
  fs::path auth_file(const std::string& json) {
    fs::path p = tmp_ / "auth.json";
    std::ofstream(p) << json;
    setenv("REGISTRY_AUTH_FILE", p.c_str(), 1);
    return p;
  }
  static std::string auths(const std::string& host, const std::string& entry) {
    return R"({"auths":{")" + host + R"(":)" + entry + "}}";
  }
  static std::string basic(const std::string& password) {
    return R"({"auth":")" + base64(kUser + ":" + password) + R"("})";
  }

  static StoreOptions options() {
    StoreOptions o;
    for (int p : {port_, zstd_port_, proxy_port_, blob_proxy_port_}) o.insecure_registries.push_back("127.0.0.1:" + std::to_string(p));
    o.retry_base_delay_ms = 10;
    return o;
  }
  ImageStore open(const StoreOptions& o = options()) {
    auto s = ImageStore::open(tmp_ / "store", o);
    EXPECT_TRUE(s.ok());
    return std::move(s).value();
  }
  static std::string reg(const std::string& rest) { return "127.0.0.1:" + std::to_string(port_) + "/" + rest; }
  static std::string proxied(const std::string& rest) { return proxy_host() + "/" + rest; }
  static std::string proxy_host() { return "127.0.0.1:" + std::to_string(proxy_port_); }
  static std::string blob_proxied(const std::string& rest) {
    return "127.0.0.1:" + std::to_string(blob_proxy_port_) + "/" + rest;
  }
  // While it exists, blob_proxy.py holds /v2/stall/ layers back.
  static fs::path stall_file() { return dir_->path() / "blob_proxy.stall"; }
  static std::vector<std::string> blob_proxy_log(const std::string& prefix) {
    std::ifstream in(dir_->path() / "blob_proxy.log");
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);)
      if (l.find(" " + prefix) != std::string::npos) lines.push_back(l);
    return lines;
  }
  static std::string proxy_log() {
    std::ifstream in(dir_->path() / "proxy.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void expect_same_tree(const Rootfs& r) {
    test::expect_fsck_clean(r.path);
    EXPECT_EQ(test::diff_trees(*expected_, test::read_ext4_tree(r.path)), "");
  }

  static inline test::TempDir* dir_ = nullptr;
  static inline test::Tree* expected_ = nullptr;
  static inline std::vector<std::unique_ptr<Child>> children_;
  static inline Child* proxy_ = nullptr;
  static inline Child* blob_proxy_ = nullptr;
  static constexpr int kDropAfter = 100;  // blob_proxy.py cuts /v2/drop/ blobs after this many bytes
  static inline int port_ = 0, zstd_port_ = 0, proxy_port_ = 0, blob_proxy_port_ = 0;
  test::TempDir tmp_;
};

TEST_F(Registry, OciManifestWithGzipLayers) {
  auto r = open().rootfs(reg("oci:gzip"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
  EXPECT_EQ(r->config.entrypoint, (std::vector<std::string>{"/bin/app"}));
}

TEST_F(Registry, DockerV2Manifest) {
  auto r = open().rootfs(reg("docker:v2"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
}

TEST_F(Registry, ZstdLayers) {
  auto store = open();
  auto r = store.rootfs("127.0.0.1:" + std::to_string(zstd_port_) + "/oci:zstd");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
  std::string out;
  ASSERT_EQ(run("grep -l 'tar+zstd' " + q(tmp_ / "store/blobs/sha256") + "/*", &out), 0) << "no zstd manifest was pulled";
}

TEST_F(Registry, MultiPlatformIndexPicksLinuxAmd64) {
  auto r = open().rootfs(reg("multi:latest"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
  // By digest, the amd64 manifest resolves to the same image.
  PullOptions always;
  always.policy = PullPolicy::always;
  auto by_digest = open().pull(reg("multi@" + r->image_digest), always);
  ASSERT_TRUE(by_digest.ok()) << by_digest.error().describe();
  EXPECT_EQ(by_digest->image_digest, r->image_digest);
}

TEST_F(Registry, UnknownTagOrDigestIsNotFound) {
  auto store = open();
  auto tag = store.pull(reg("oci:nope"));
  ASSERT_FALSE(tag.ok());
  EXPECT_EQ(tag.error().code, Errc::not_found);
  EXPECT_NE(tag.error().message.find("404"), std::string::npos) << tag.error().describe();
  auto digest = store.pull(reg("oci@sha256:" + std::string(64, '0')));
  ASSERT_FALSE(digest.ok());
  EXPECT_EQ(digest.error().code, Errc::not_found);
}

TEST_F(Registry, BearerTokenFlow) {
  auto r = open().rootfs(proxied("oci:gzip"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
  std::string log = proxy_log();
  EXPECT_NE(log.find("401 /v2/oci/manifests/gzip"), std::string::npos) << log;
  EXPECT_NE(log.find("200 /token?scope=repository%3Aoci%3Apull&service=flick-test"), std::string::npos) << log;
  EXPECT_NE(log.find("200 /v2/oci/blobs/"), std::string::npos) << log;
}

TEST_F(Registry, UnauthorizedEvenWithATokenIsAClearError) {
  auto r = open().pull(proxied("denied/oci:gzip"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find("401"), std::string::npos) << r.error().describe();
  EXPECT_NE(proxy_log().find("200 /token?scope=repository%3Adenied"), std::string::npos) << proxy_log();
}

TEST_F(Registry, BearerTokenWithPasswordCredentials) {
  auth_file(auths(proxy_host(), basic(kPassword)));
  auto r = open().rootfs(proxied("private/oci:gzip"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
  EXPECT_NE(proxy_log().find("200 /token?scope=repository%3Aprivate%2Foci%3Apull&service=flick-test"), std::string::npos)
      << proxy_log();
}

TEST_F(Registry, BearerTokenWithAnIdentityToken) {
  auth_file(auths(proxy_host(), R"({"identitytoken":")" + kIdentityToken + R"("})"));
  auto r = open().pull(proxied("private/oci:gzip"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_NE(proxy_log().find("200 POST /token"), std::string::npos) << proxy_log();
}

TEST_F(Registry, BearerTokenRefusedOrMissingCredentialsAreClearErrors) {
  auto none = open().pull(proxied("private/oci:gzip"));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no credentials found for " + proxy_host() + " in " + (tmp_ / "home").string()),
            std::string::npos) << none.error().describe();
  fs::path f = auth_file(auths(proxy_host(), basic(kWrongPassword)));
  auto refused = open().pull(proxied("private/oci:gzip"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::invalid_argument);
  EXPECT_NE(refused.error().message.find("the credentials for " + proxy_host() + " from " + f.string() + " were refused"),
            std::string::npos) << refused.error().describe();
}

TEST_F(Registry, RetriesTransientFailures) {
  auto r = open().pull(proxied("flaky/oci:gzip"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_NE(proxy_log().find("503 /v2/flaky/oci/manifests/gzip"), std::string::npos);
}

TEST_F(Registry, RateLimitIsAClearError) {
  auto r = open().pull(proxied("limited/oci:gzip"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::busy);
  EXPECT_NE(r.error().message.find("429"), std::string::npos) << r.error().describe();
  EXPECT_NE(r.error().message.find("4 attempts"), std::string::npos) << r.error().describe();
}

TEST_F(Registry, CorruptBlobFailsDigestCheckAndLeavesNothing) {
  auto store = open();
  auto r = store.rootfs(proxied("corrupt/oci:gzip"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::integrity) << r.error().describe();
  EXPECT_NE(r.error().message.find("digest mismatch"), std::string::npos) << r.error().describe();
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp_ / "store/tmp")) ++files;
  EXPECT_EQ(files, 0u);
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp_ / "store/rootfs")) ++files;
  EXPECT_EQ(files, 0u);
}

TEST_F(Registry, DroppedBlobDownloadResumesWithARangeRequest) {
  auto store = open();
  auto r = store.rootfs(blob_proxied("drop/oci:gzip"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
  size_t resumed = 0;
  for (const auto& l : blob_proxy_log("/v2/drop/oci/blobs/"))
    resumed += l.rfind("206 ", 0) == 0 && l.ends_with(" bytes=" + std::to_string(kDropAfter) + "-");
  EXPECT_GT(resumed, 0u) << "no resumed download in the proxy's log";
  for (const auto& e : fs::directory_iterator(tmp_ / "store/tmp")) ADD_FAILURE() << "left over: " << e.path();
}

// What a `flick image pull` killed mid-layer leaves behind: the layer's first bytes in its
// partial file. The next pull re-hashes them and asks only for the rest.
TEST_F(Registry, PullResumesFromAPartialFileLeftByAnEarlierRun) {
  auto store = open();
  const std::string v2 = "http://" + reg("v2/oci");
  std::string digest;
  ASSERT_EQ(run("curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' " + q(v2 + "/manifests/gzip") +
                    " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"layers\"][0][\"digest\"], end=\"\")'",
                &digest), 0);
  const fs::path partial = tmp_ / "store/tmp" / (digest.substr(7) + ".partial");
  ASSERT_EQ(run("curl -sf -r 0-49 -o " + q(partial) + " " + q(v2 + "/blobs/" + digest)), 0);
  auto r = store.rootfs(blob_proxied("plain/oci:gzip"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
  auto fetches = blob_proxy_log("/v2/plain/oci/blobs/" + digest);
  ASSERT_EQ(fetches.size(), 1u);
  EXPECT_EQ(fetches[0], "206 /v2/plain/oci/blobs/" + digest + " bytes=50-");
  EXPECT_FALSE(fs::exists(partial));
}

TEST_F(Registry, FlippedBlobByteFailsNamingBothDigestsAndLeavesNothing) {
  auto r = open().pull(blob_proxied("flip/oci:gzip"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::integrity) << r.error().describe();
  const std::string& m = r.error().message;
  const size_t at = m.find("expected sha256:");
  ASSERT_NE(at, std::string::npos) << m;
  const std::string hex = m.substr(at + 16, 64);
  EXPECT_NE(m.find(", got sha256:"), std::string::npos) << m;
  EXPECT_EQ(m.find(", got sha256:" + hex), std::string::npos) << m;
  EXPECT_NE(m.find(blob_proxied("flip/oci")), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(tmp_ / "store/blobs/sha256" / hex));
  EXPECT_FALSE(fs::exists(tmp_ / "store/tmp" / (hex + ".partial")));
}

TEST_F(Registry, ConcurrentPullsFetchEachBlobOnce) {
  // Separate stores on one directory, as two processes would have: the blob locks are flocks
  // on separately opened files, which exclude each other within a process too.
  // The proxy serves the whole suite (its log only grows): count only what these pulls fetched.
  const size_t earlier = blob_proxy_log("/v2/plain/oci/blobs/").size();
  std::optional<Result<PulledImage>> results[2];
  {
    std::vector<std::jthread> pulls;
    for (auto& result : results) pulls.emplace_back([&] { result.emplace(open().pull(blob_proxied("plain/oci:gzip"))); });
  }
  for (const auto& r : results) ASSERT_TRUE(r->ok()) << r->error().describe();
  std::map<std::string, int> fetches;
  const auto log = blob_proxy_log("/v2/plain/oci/blobs/");
  for (size_t i = earlier; i < log.size(); ++i) ++fetches[log[i].substr(log[i].find(' ') + 1)];
  EXPECT_FALSE(fetches.empty());
  for (const auto& [line, n] : fetches) EXPECT_EQ(n, 1) << line;
}

// blob_proxy.py holds each /v2/slow/ blob back and logs how many it is answering at once.
TEST_F(Registry, LayersDownloadConcurrentlyUpToTheLimit) {
  std::vector<PullProgress> reports;
  PullOptions o;
  o.progress = [&](const PullProgress& p) { reports.push_back(p); };
  StoreOptions two = options();
  two.max_concurrent_downloads = 2;
  auto r = open(two).rootfs(blob_proxied("slow/oci:gzip"), {}, o);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
  std::ifstream in(dir_->path() / "blob_proxy.log");
  int most = 0, requests = 0;
  for (std::string l; std::getline(in, l);)
    if (l.rfind("inflight ", 0) == 0) most = std::max(most, std::stoi(l.substr(9))), ++requests;
  EXPECT_EQ(requests, 4) << "the config and three layers";
  EXPECT_EQ(most, 2) << "three layers, two at a time";

  // Progress: every layer with its manifest size, bytes only ever growing, all done at the end.
  ASSERT_GE(reports.size(), 2u);
  const auto& last = reports.back();
  ASSERT_EQ(last.layers.size(), 3u);
  uint64_t sum = 0;
  for (const auto& l : last.layers) {
    EXPECT_TRUE(l.complete) << l.digest;
    EXPECT_EQ(l.done, l.size) << l.digest;
    EXPECT_TRUE(fs::exists(tmp_ / "store/blobs/sha256" / l.digest.substr(7))) << l.digest;
    sum += l.size;
  }
  EXPECT_EQ(last.total_bytes, sum);
  EXPECT_EQ(last.done_bytes, sum);
  EXPECT_LT(reports.front().done_bytes, sum) << "no report before the layers were in";
  for (size_t i = 1; i < reports.size(); ++i) {
    EXPECT_EQ(reports[i].total_bytes, sum);
    EXPECT_GE(reports[i].done_bytes, reports[i - 1].done_bytes);
  }
}

// `flick image rm` of an image sharing a layer, and `flick image prune`, while a pull waits
// for its other layers: the manifest and config it has fetched and the layer it found already
// there are pinned, so the pull ends with a complete image.
TEST_F(Registry, RemoveAndPruneDuringAPullLeaveItsBlobsAlone) {
  const std::string src = "oci:" + (dir_->path() / "layout").string();
  ASSERT_EQ(run("skopeo copy -q --dest-tls-verify=false --format oci " + q(src + ":arm") + " " +
                q("docker://" + reg("share:arm"))), 0);  // base.tar's layer only
  auto layers_of = [](std::vector<std::string>* out) {
    PullOptions o;
    o.progress = [out](const PullProgress& p) {
      out->clear();
      for (const auto& l : p.layers) out->push_back(l.digest);
    };
    return o;
  };
  auto store = open();
  std::vector<std::string> shared, layers;
  ASSERT_TRUE(store.pull(reg("share:arm"), layers_of(&shared)).ok());
  ASSERT_EQ(shared.size(), 1u);

  std::ofstream(stall_file()).close();
  std::optional<Result<PulledImage>> pulled;
  std::jthread puller([&] { pulled.emplace(open().pull(blob_proxied("stall/oci:gzip"), layers_of(&layers))); });
  struct Release {  // lets the pull finish, whatever happens (before puller is joined)
    ~Release() { fs::remove(stall_file()); }
  } release;
  bool stalled = false;
  for (int i = 0; i < 3000 && !stalled; ++i) {
    for (const auto& l : blob_proxy_log("/v2/stall/oci/blobs/")) stalled |= l.rfind("stalled ", 0) == 0;
    if (!stalled) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(stalled) << "the pull never asked for a layer";
  auto removed = store.remove(reg("share:arm"));
  EXPECT_TRUE(removed.ok()) << removed.error().describe();
  auto pruned = store.prune();
  EXPECT_TRUE(pruned.ok()) << pruned.error().describe();
  fs::remove(stall_file());
  puller.join();

  ASSERT_TRUE(pulled->ok()) << pulled->error().describe();
  ASSERT_EQ(layers.size(), 3u);
  EXPECT_EQ(layers[0], shared[0]) << "the images share no layer";
  EXPECT_TRUE(fs::exists(tmp_ / "store/blobs/sha256" / (*pulled)->image_digest.substr(7))) << "the manifest went";
  PullOptions never;
  never.policy = PullPolicy::never;
  auto r = store.rootfs(blob_proxied("stall/oci:gzip"), {}, never);  // the config and every layer are there
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
  for (const auto& e : fs::directory_iterator(tmp_ / "store/pins")) ADD_FAILURE() << "left over: " << e.path();
}

// The tag re-pointed in the registry: `missing` keeps the cached image without asking,
// `always` asks and gets the new one, `never` then has it.
TEST_F(Registry, PullPolicyAlwaysResolvesAMovedTagAgain) {
  const std::string src = "oci:" + (dir_->path() / "layout").string();
  const std::string dst = "docker://127.0.0.1:" + std::to_string(port_) + "/moving:tag";
  const std::string copy = "skopeo copy -q --dest-tls-verify=false ";
  ASSERT_EQ(run(copy + "--format oci " + q(src + ":t") + " " + q(dst)), 0);
  auto store = open();
  PullOptions missing, always, never;
  always.policy = PullPolicy::always;
  never.policy = PullPolicy::never;
  auto first = store.pull(blob_proxied("plain/moving:tag"));
  ASSERT_TRUE(first.ok()) << first.error().describe();
  ASSERT_EQ(run(copy + "--format v2s2 " + q(src + ":t") + " " + q(dst)), 0);
  auto manifest_gets = [] {
    std::ifstream in(dir_->path() / "blob_proxy.log");
    int n = 0;
    for (std::string l; std::getline(in, l);) n += l.find(" /v2/plain/moving/manifests/tag ") != std::string::npos;
    return n;
  };
  EXPECT_EQ(manifest_gets(), 1);
  auto cached = store.pull(blob_proxied("plain/moving:tag"), missing);
  ASSERT_TRUE(cached.ok()) << cached.error().describe();
  EXPECT_EQ(cached->image_digest, first->image_digest);
  EXPECT_EQ(manifest_gets(), 1);
  auto moved = store.pull(blob_proxied("plain/moving:tag"), always);
  ASSERT_TRUE(moved.ok()) << moved.error().describe();
  EXPECT_NE(moved->image_digest, first->image_digest);
  EXPECT_EQ(manifest_gets(), 2);
  auto offline = store.rootfs(blob_proxied("plain/moving:tag"), {}, never);
  ASSERT_TRUE(offline.ok()) << offline.error().describe();
  EXPECT_EQ(offline->image_digest, moved->image_digest);
  EXPECT_EQ(manifest_gets(), 2);
}

// A mirror that is down is passed over; one that answers serves the pull.
TEST_F(Registry, MirrorsAreTriedInOrderBeforeTheRegistry) {
  StoreOptions o = options();
  o.insecure_registries.push_back("127.0.0.1:1");
  o.registry_mirrors["127.0.0.1:" + std::to_string(port_)] = {"127.0.0.1:1", proxy_host()};
  auto r = open(o).rootfs(reg("oci:gzip"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
  EXPECT_NE(proxy_log().find("200 /v2/oci/blobs/"), std::string::npos) << "the mirror served no blob:\n" << proxy_log();

  o.registry_mirrors["127.0.0.1:" + std::to_string(port_)] = {"127.0.0.1:1"};
  PullOptions always;
  always.policy = PullPolicy::always;
  auto fallback = open(o).pull(reg("docker:v2"), always);
  ASSERT_TRUE(fallback.ok()) << fallback.error().describe();

  // Nothing answers: the registry's error, then each mirror's.
  o.registry_mirrors["127.0.0.1:1"] = {"127.0.0.1:1"};
  auto none = open(o).pull("127.0.0.1:1/app:v1", always);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, Errc::network);
  EXPECT_NE(none.error().message.find("; mirror 127.0.0.1:1: "), std::string::npos) << none.error().describe();
}

TEST_F(Registry, ConnectionRefusedIsANetworkError) {
  StoreOptions o;
  o.insecure_registries = {"127.0.0.1:1"};
  o.retry_base_delay_ms = 1;
  auto s = ImageStore::open(tmp_ / "store", o);
  ASSERT_TRUE(s.ok());
  auto r = s->pull("127.0.0.1:1/app:v1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::network);
  EXPECT_NE(r.error().message.find("127.0.0.1:1"), std::string::npos) << r.error().describe();
}

// docker-registry with htpasswd (bcrypt) auth over TLS, serving the plain registry's storage.
class AuthRegistry : public Registry {
 protected:
  static void SetUpTestSuite() {
    Registry::SetUpTestSuite();
    const fs::path d = dir_->path() / "tls";
    fs::create_directories(d);
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
    for (const char* ca : {"ca", "other-ca"})
      ASSERT_EQ(run("cd " + q(d) + " && openssl req -x509" + ec + "-keyout " + ca + ".key -out " + ca +
                    ".crt -days 2 -subj /CN=flick-test-" + ca), 0);
    std::ofstream(d / "ext") << "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    ASSERT_EQ(run("cd " + q(d) + " && openssl req" + ec + "-keyout server.key -out server.csr -subj /CN=127.0.0.1"
                  " && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
                  " -extfile ext -out server.crt"), 0);
    ASSERT_EQ(run("htpasswd -Bbn " + kUser + " " + q(kPassword) + " > " + q(d / "htpasswd")), 0);
    tls_port_ = start_registry("registry-tls", "registry",
                               "  tls:\n    certificate: " + (d / "server.crt").string() + "\n    key: " +
                                   (d / "server.key").string() + "\nauth:\n  htpasswd:\n    realm: flick-test\n"
                                   "    path: " + (d / "htpasswd").string() + "\n");
  }
  static std::string tls_host() { return "127.0.0.1:" + std::to_string(tls_port_); }
  static std::string tls(const std::string& rest) { return tls_host() + "/" + rest; }
  // Makes `ca` the registry's CA in a certs.d under the test's temp dir.
  void trust(const std::string& ca) {
    fs::create_directories(tmp_ / "certs.d" / tls_host());
    fs::copy_file(dir_->path() / "tls" / (ca + ".crt"), tmp_ / "certs.d" / tls_host() / "ca.crt",
                  fs::copy_options::overwrite_existing);
    setenv("FLICK_CERTS_DIR", (tmp_ / "certs.d").c_str(), 1);
  }
  static inline int tls_port_ = 0;
};

TEST_F(AuthRegistry, PullsOverTlsWithAnAuthFileEntry) {
  trust("ca");
  auth_file(auths(tls_host(), basic(kPassword)));
  auto r = open().rootfs(tls("oci:gzip"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expect_same_tree(*r);
}

TEST_F(AuthRegistry, PullsWithACredentialHelperNamedInDockerConfig) {
  trust("ca");
  fs::create_directories(tmp_ / "bin");
  fs::create_directories(tmp_ / "home/.docker");
  std::ofstream(tmp_ / "bin/docker-credential-flicktest")
      << "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n[ \"$server\" = " << tls_host()
      << " ] || { echo 'credentials not found in native keychain'; exit 1; }\n"
      << "printf '{\"ServerURL\":\"%s\",\"Username\":\"" << kUser << "\",\"Secret\":\"" << kPassword
      << "\"}' \"$server\"\n";
  fs::permissions(tmp_ / "bin/docker-credential-flicktest", fs::perms::owner_all);
  std::ofstream(tmp_ / "home/.docker/config.json") << R"({"credHelpers":{")" << tls_host() << R"(":"flicktest"}})";
  const std::string path = std::getenv("PATH");
  setenv("PATH", ((tmp_ / "bin").string() + ":" + path).c_str(), 1);
  auto r = open().pull(tls("oci:gzip"));
  setenv("PATH", path.c_str(), 1);
  ASSERT_TRUE(r.ok()) << r.error().describe();
}

// Insecure means what it means for Docker: HTTPS without checking the certificate (the
// plain registries of the other tests show the fall back to plain HTTP).
TEST_F(AuthRegistry, AnInsecureRegistryIsSpokenToOverUnverifiedTls) {
  auth_file(auths(tls_host(), basic(kPassword)));
  StoreOptions o = options();
  o.insecure_registries.push_back(tls_host());
  auto r = open(o).pull(tls("oci:gzip"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  auto verified = open().pull(tls("docker:v2"));
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.error().message.find("TLS with registry " + tls_host() + " failed"), std::string::npos)
      << verified.error().describe();
}

TEST_F(AuthRegistry, NoCredentialsIsA401NamingTheRegistryAndWhereFlickLooked) {
  trust("ca");
  auto r = open().pull(tls("oci:gzip"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find("HTTP 401"), std::string::npos) << r.error().describe();
  EXPECT_NE(r.error().message.find("no credentials found for " + tls_host() + " in " +
                                   (tmp_ / "home/.docker/config.json").string()), std::string::npos)
      << r.error().describe();
}

TEST_F(AuthRegistry, RefusedCredentialsNameTheirFile) {
  trust("ca");
  fs::path f = auth_file(auths(tls_host(), basic(kWrongPassword)));
  auto r = open().pull(tls("oci:gzip"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("the credentials for " + tls_host() + " from " + f.string() + " were refused"),
            std::string::npos) << r.error().describe();
}

TEST_F(AuthRegistry, AnUntrustedCertificateIsATlsErrorNamingTheRegistry) {
  auth_file(auths(tls_host(), basic(kPassword)));
  auto system_only = open().pull(tls("oci:gzip"));
  ASSERT_FALSE(system_only.ok());
  EXPECT_EQ(system_only.error().code, Errc::network);
  EXPECT_NE(system_only.error().message.find("TLS with registry " + tls_host() + " failed"), std::string::npos)
      << system_only.error().describe();
  EXPECT_NE(system_only.error().message.find("system CA store only"), std::string::npos) << system_only.error().describe();
  trust("other-ca");
  auto wrong_ca = open().pull(tls("oci:gzip"));
  ASSERT_FALSE(wrong_ca.ok());
  EXPECT_EQ(wrong_ca.error().code, Errc::network);
  EXPECT_NE(wrong_ca.error().message.find("TLS with registry " + tls_host() + " failed"), std::string::npos)
      << wrong_ca.error().describe();
  EXPECT_NE(wrong_ca.error().message.find((tmp_ / "certs.d" / tls_host() / "ca.crt").string()), std::string::npos)
      << wrong_ca.error().describe();
}

// Every way these tests give flick a secret, right and wrong: none may show in an error, a
// log line (at debug level) or anything printed.
TEST_F(AuthRegistry, NoSecretInAnyErrorOrOutput) {
  std::string seen;
  log::set_level(log::Level::debug);
  log::set_sink([&](log::Level, std::string_view line) { seen.append(line).append("\n"); });
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  PullOptions always;  // a pull that worked must not turn the next ones into cache hits
  always.policy = PullPolicy::always;
  auto pull = [&](const std::string& ref) {
    auto r = open().pull(ref, always);
    if (!r.ok()) seen += r.error().describe() + "\n";
  };
  trust("ca");
  for (const auto& pw : {kPassword, kWrongPassword}) {
    auth_file(auths(tls_host(), basic(pw)));
    pull(tls("oci:gzip"));
    auth_file(auths(proxy_host(), basic(pw)));
    pull(proxied("private/oci:gzip"));
  }
  for (const auto& token : {kIdentityToken, kWrongIdentityToken}) {
    auth_file(auths(proxy_host(), R"({"identitytoken":")" + token + R"("})"));
    pull(proxied("private/oci:gzip"));
    pull(proxied("denied/oci:gzip"));
  }
  auth_file(auths(tls_host(), R"({"auth":")" + base64(kPassword) + R"("})"));  // no "user:"
  pull(tls("oci:gzip"));
  auth_file(auths(tls_host(), R"({"auth":")" + kPassword + R"(!"})"));  // not base64
  pull(tls("oci:gzip"));
  auth_file(auths(tls_host(), basic(kPassword)));
  trust("other-ca");
  pull(tls("oci:gzip"));
  seen += testing::internal::GetCapturedStdout() + testing::internal::GetCapturedStderr() + proxy_log();
  log::set_sink(nullptr);
  log::set_level(log::Level::warn);
  EXPECT_NE(seen.find("were refused"), std::string::npos) << seen;  // the failures did happen
  EXPECT_NE(seen.find("TLS with registry"), std::string::npos) << seen;
  EXPECT_NE(seen.find("not valid base64"), std::string::npos) << seen;
  for (const auto& secret : {kPassword, kWrongPassword, kIdentityToken, kWrongIdentityToken,
                             base64(kUser + ":" + kPassword), base64(kUser + ":" + kWrongPassword), base64(kPassword)})
    EXPECT_EQ(seen.find(secret), std::string::npos) << secret << " appears in:\n" << seen;
}

}  // namespace
}  // namespace flick
