// ImageStore: sources, caching, concurrency, interruption and pruning, on real OCI layouts.
#include <flick/image.h>

#include "fixtures.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

namespace flick {
namespace {

using test::q;
using test::run;
namespace fs = std::filesystem;

PullOptions with(PullPolicy policy) {
  PullOptions o;
  o.policy = policy;
  return o;
}

size_t count_files(const fs::path& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); it != fs::directory_iterator(); ++it) ++n;
  return n;
}

class Store : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    test::make_layers(*dir_ / "layers");
    test::make_image(*dir_ / "layout", "t", {*dir_ / "layers/base.tar", *dir_ / "layers/changes.tar"},
                     "--config.entrypoint /bin/app --config.cmd serve --config.env A=1 "
                     "--config.workingdir /srv --config.user 1000:1000 --config.exposedports 8080/tcp "
                     "--config.label org.example=yes");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static fs::path layers() { return *dir_ / "layers"; }
  static std::string image_ref() { return "oci:" + (*dir_ / "layout").string() + ":t"; }

  ImageStore open() {
    auto s = ImageStore::open(tmp_ / "store");
    EXPECT_TRUE(s.ok());
    return std::move(s).value();
  }
  // A copy of the shared layout this test may change.
  fs::path own_layout() {
    fs::path l = tmp_ / "layout";
    fs::copy(*dir_ / "layout", l, fs::copy_options::recursive);
    return l;
  }
  void expect_clean_cache() {
    EXPECT_EQ(count_files(tmp_ / "store/rootfs"), 0u) << "a failed build published a rootfs";
    EXPECT_EQ(count_files(tmp_ / "store/tmp"), 0u) << "a failed operation left temporary files";
  }

  static test::TempDir* dir_;
  test::TempDir tmp_;
};
test::TempDir* Store::dir_ = nullptr;

TEST_F(Store, RootfsIsBuiltOnceAndReturnsTheTypedConfig) {
  auto store = open();
  auto r = store.rootfs(image_ref());
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(r->path.string().rfind((tmp_ / "store").string(), 0) == 0);
  EXPECT_EQ(r->size_bytes, fs::file_size(r->path));
  test::expect_fsck_clean(r->path);
  EXPECT_EQ(test::diff_trees(test::umoci_tree(*dir_ / "layout", "t", tmp_ / "bundle"), test::read_ext4_tree(r->path)), "");
  struct stat st1;
  ASSERT_EQ(::stat(r->path.c_str(), &st1), 0);
  EXPECT_EQ(st1.st_mode & 0777, 0444u) << "published rootfs must be read-only";

  const ImageConfig& c = r->config;
  EXPECT_EQ(c.entrypoint, (std::vector<std::string>{"/bin/app"}));
  EXPECT_EQ(c.cmd, (std::vector<std::string>{"serve"}));
  EXPECT_NE(std::find(c.env.begin(), c.env.end(), "A=1"), c.env.end());
  EXPECT_EQ(c.working_dir, "/srv");
  EXPECT_EQ(c.user, "1000:1000");
  EXPECT_EQ(c.exposed_ports, (std::vector<std::string>{"8080/tcp"}));
  EXPECT_EQ(c.labels.at("org.example"), "yes");

  // Second create: same file, untouched, nothing built (another store object, as another process).
  auto again = open().rootfs(image_ref());
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_EQ(again->path, r->path);
  EXPECT_EQ(again->image_digest, r->image_digest);
  struct stat st2;
  ASSERT_EQ(::stat(r->path.c_str(), &st2), 0);
  EXPECT_EQ(st2.st_ino, st1.st_ino);
  EXPECT_EQ(st2.st_mtim.tv_nsec, st1.st_mtim.tv_nsec);
  EXPECT_EQ(count_files(tmp_ / "store/rootfs"), 1u);

  // A different size is a different cache entry.
  RootfsOptions o;
  o.size_bytes = 96 << 20;
  auto sized = store.rootfs(image_ref(), o);
  ASSERT_TRUE(sized.ok()) << sized.error().describe();
  EXPECT_NE(sized->path, r->path);
  EXPECT_EQ(fs::file_size(sized->path), uint64_t{96} << 20);

  auto list = store.list();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].image_digest, r->image_digest);
  EXPECT_EQ((*list)[0].rootfs.size(), 2u);
  EXPECT_EQ(count_files(tmp_ / "store/tmp"), 0u);
}

TEST_F(Store, WrongDigestFailsAndLeavesNoBlob) {
  fs::path l = own_layout();
  std::string out;
  // Corrupt one layer blob in place (its name, the digest, stays).
  ASSERT_EQ(run("python3 -c \"import json; i=json.load(open('" + (l / "index.json").string() + "')); m=json.load(open('" +
                l.string() + "/blobs/sha256/'+i['manifests'][0]['digest'][7:])); print(m['layers'][0]['digest'][7:])\"",
                &out), 0);
  std::string hex = out.substr(0, 64);
  fs::path blob = l / "blobs/sha256" / hex;
  ASSERT_EQ(run("chmod u+w " + q(blob) + " && printf X >> " + q(blob)), 0);
  auto store = open();
  auto r = store.rootfs("oci:" + l.string() + ":t");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::integrity) << r.error().describe();
  EXPECT_NE(r.error().message.find("digest mismatch"), std::string::npos) << r.error().describe();
  EXPECT_NE(r.error().message.find(hex), std::string::npos) << r.error().describe();
  EXPECT_FALSE(fs::exists(tmp_ / "store/blobs/sha256" / hex));
  expect_clean_cache();
}

TEST_F(Store, HostileLayerFailsAndLeavesTheCacheClean) {
  fs::path l = tmp_ / "hostile";
  test::make_image(l, "t", {layers() / "base.tar", layers() / "absolute.tar"});
  auto store = open();
  auto r = store.rootfs("oci:" + l.string() + ":t");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::malformed);
  EXPECT_NE(r.error().message.find("absolute"), std::string::npos) << r.error().describe();
  expect_clean_cache();
}

TEST_F(Store, TruncatedGzipLayerWithAMatchingDigestFailsCleanly) {
  // The registry-side digest is right, but the stream itself is cut short.
  fs::path l = own_layout();
  ASSERT_EQ(run("python3 - " + q(l) + R"PY( <<'EOF'
import hashlib, json, os, sys
l = sys.argv[1]
def blob(d): return os.path.join(l, 'blobs', 'sha256', d[7:])
def put(data):
    d = 'sha256:' + hashlib.sha256(data).hexdigest()
    open(blob(d), 'wb').write(data)
    return d
idx = json.load(open(os.path.join(l, 'index.json')))
m = json.load(open(blob(idx['manifests'][0]['digest'])))
data = open(blob(m['layers'][-1]['digest']), 'rb').read()
cut = data[: len(data) // 2]
m['layers'][-1]['digest'] = put(cut)
m['layers'][-1]['size'] = len(cut)
raw = json.dumps(m).encode()
idx['manifests'][0]['digest'] = put(raw)
idx['manifests'][0]['size'] = len(raw)
json.dump(idx, open(os.path.join(l, 'index.json'), 'w'))
EOF
)PY"), 0);
  auto store = open();
  auto r = store.rootfs("oci:" + l.string() + ":t");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::malformed) << r.error().describe();
  expect_clean_cache();
}

TEST_F(Store, ConcurrentBuildsOfOneImageShareOneResult) {
  constexpr int kProcs = 3;
  std::vector<pid_t> kids;
  for (int i = 0; i < kProcs; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto s = ImageStore::open(tmp_ / "store");
      auto r = s.ok() ? s->rootfs(image_ref()) : Result<Rootfs>(s.error());
      ::_exit(r.ok() ? 0 : 1);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(count_files(tmp_ / "store/rootfs"), 1u);
  EXPECT_EQ(count_files(tmp_ / "store/tmp"), 0u);
  auto r = open().rootfs(image_ref());
  ASSERT_TRUE(r.ok());
  test::expect_fsck_clean(r->path);
}

TEST_F(Store, InterruptedBuildLeavesNoEntryAndPruneCleansUp) {
  fs::path l = tmp_ / "big";
  ASSERT_EQ(run("cd " + q(tmp_.path()) + " && head -c 48M /dev/urandom > blob && tar -cf big.tar blob"), 0);
  test::make_image(l, "t", {layers() / "base.tar", tmp_ / "big.tar"});
  const std::string ref = "oci:" + l.string() + ":t";
  ASSERT_TRUE(open().pull(ref).ok());
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = ImageStore::open(tmp_ / "store");
    if (s.ok()) (void)s->rootfs(ref);
    ::_exit(0);
  }
  // Kill the builder as soon as its half-written image exists.
  bool seen = false;
  for (int i = 0; i < 2000 && !seen; ++i) {
    for (const auto& e : fs::directory_iterator(tmp_ / "store/tmp"))
      seen |= e.path().extension() == ".ext4";
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ::kill(pid, SIGKILL);
  int status;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(seen) << "the build finished before it could be interrupted";
  EXPECT_EQ(count_files(tmp_ / "store/rootfs"), 0u);
  EXPECT_GE(count_files(tmp_ / "store/tmp"), 1u);

  auto store = open();
  auto pruned = store.prune();
  ASSERT_TRUE(pruned.ok());
  EXPECT_GE(pruned->files_removed, 1u);
  EXPECT_EQ(count_files(tmp_ / "store/tmp"), 0u);
  EXPECT_EQ(count_files(tmp_ / "store/locks"), 0u);
  auto r = store.rootfs(ref);  // blobs survived: still referenced
  ASSERT_TRUE(r.ok()) << r.error().describe();
  test::expect_fsck_clean(r->path);
}

TEST_F(Store, PruneRemovesWhatNoReferenceUses) {
  fs::path l = own_layout();
  const std::string ref = "oci:" + l.string() + ":t";
  auto store = open();
  auto first = store.rootfs(ref);
  ASSERT_TRUE(first.ok()) << first.error().describe();
  const size_t blobs = count_files(tmp_ / "store/blobs/sha256");
  auto nothing = store.prune();  // everything is in use (only the idle build lock goes)
  ASSERT_TRUE(nothing.ok());
  EXPECT_LE(nothing->files_removed, 1u);
  EXPECT_TRUE(fs::exists(first->path));
  EXPECT_EQ(count_files(tmp_ / "store/blobs/sha256"), blobs);

  // Re-point the tag at a new image; the old image is now unused.
  test::make_image(l, "t", {layers() / "base.tar"});
  auto second = store.pull(ref, with(PullPolicy::always));
  ASSERT_TRUE(second.ok()) << second.error().describe();
  ASSERT_NE(second->image_digest, first->image_digest);
  auto pruned = store.prune();
  ASSERT_TRUE(pruned.ok());
  EXPECT_GT(pruned->bytes_freed, 0u);
  EXPECT_FALSE(fs::exists(first->path));
  EXPECT_FALSE(fs::exists(tmp_ / "store/blobs/sha256" / first->image_digest.substr(7)));
  EXPECT_TRUE(fs::exists(tmp_ / "store/blobs/sha256" / second->image_digest.substr(7)));
  auto r = store.rootfs(ref);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->image_digest, second->image_digest);
}

TEST_F(Store, PullPolicyDecidesWhetherACachedTagIsResolvedAgain) {
  fs::path l = own_layout();
  const std::string ref = "oci:" + l.string() + ":t";
  auto store = open();
  auto never = store.pull(ref, with(PullPolicy::never));
  ASSERT_FALSE(never.ok());
  EXPECT_EQ(never.error().code, Errc::not_found);
  EXPECT_NE(never.error().describe().find("the pull policy is never"), std::string::npos) << never.error().describe();
  EXPECT_NE(never.error().describe().find(ref + " is not in the image cache"), std::string::npos) << never.error().describe();
  EXPECT_EQ(count_files(tmp_ / "store/blobs/sha256"), 0u);

  auto first = store.pull(ref);
  ASSERT_TRUE(first.ok()) << first.error().describe();
  test::make_image(l, "t", {layers() / "base.tar"});  // the tag now names another image
  for (auto policy : {PullPolicy::missing, PullPolicy::never}) {
    auto cached = store.pull(ref, with(policy));
    ASSERT_TRUE(cached.ok()) << cached.error().describe();
    EXPECT_EQ(cached->image_digest, first->image_digest);
    auto rootfs = store.rootfs(ref, {}, with(policy));
    ASSERT_TRUE(rootfs.ok()) << rootfs.error().describe();
    EXPECT_EQ(rootfs->image_digest, first->image_digest);
  }
  auto again = store.rootfs(ref, {}, with(PullPolicy::always));
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_NE(again->image_digest, first->image_digest);
  auto now = store.pull(ref, with(PullPolicy::never));
  ASSERT_TRUE(now.ok()) << now.error().describe();
  EXPECT_EQ(now->image_digest, again->image_digest);

  // A cached image missing a layer is not cached: `never` says which layer.
  ASSERT_TRUE(store.prune().ok());
  auto img = store.list();
  ASSERT_TRUE(img.ok());
  ASSERT_EQ(img->size(), 1u);
  for (const auto& e : fs::directory_iterator(tmp_ / "store/blobs/sha256")) {
    std::ifstream blob(e.path());
    if (blob.get() != '{') fs::remove(e.path());  // the layers, not the JSON documents
  }
  auto broken = store.pull(ref, with(PullPolicy::never));
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.error().describe().find("is missing from the image cache"), std::string::npos) << broken.error().describe();
  auto refetched = store.pull(ref);
  ASSERT_TRUE(refetched.ok()) << refetched.error().describe();
  EXPECT_TRUE(store.pull(ref, with(PullPolicy::never)).ok());

  EXPECT_EQ(parse_pull_policy("always").value(), PullPolicy::always);
  EXPECT_EQ(parse_pull_policy("never").value(), PullPolicy::never);
  EXPECT_EQ(parse_pull_policy("missing").value(), PullPolicy::missing);
  auto bad = parse_pull_policy("sometimes");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  EXPECT_NE(bad.error().message.find("'sometimes': expected always, missing or never"), std::string::npos);
}

TEST_F(Store, RemoveForgetsTheReferenceAndWhatOnlyItUsed) {
  fs::path l = own_layout();
  test::make_image(l, "small", {layers() / "base.tar"});  // shares base.tar's blob with :t
  const std::string t = "oci:" + l.string() + ":t", small = "oci:" + l.string() + ":small";
  auto store = open();
  auto big = store.rootfs(t);
  ASSERT_TRUE(big.ok()) << big.error().describe();
  auto kept = store.rootfs(small);
  ASSERT_TRUE(kept.ok()) << kept.error().describe();
  const size_t blobs_before = count_files(tmp_ / "store/blobs/sha256");

  auto removed = store.remove(t);
  ASSERT_TRUE(removed.ok()) << removed.error().describe();
  EXPECT_GT(removed->bytes_freed, 0u);
  EXPECT_FALSE(fs::exists(big->path));
  EXPECT_FALSE(fs::exists(tmp_ / "store/blobs/sha256" / big->image_digest.substr(7)));
  // manifest, config and the changes layer went; base.tar's blob stays for :small
  EXPECT_EQ(count_files(tmp_ / "store/blobs/sha256"), blobs_before - 3);
  EXPECT_TRUE(fs::exists(kept->path));
  auto list = store.list();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].reference, small);
  EXPECT_TRUE(store.rootfs(small, {}, with(PullPolicy::never)).ok());

  auto again = store.remove(t);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, Errc::not_found);
  EXPECT_NE(again.error().message.find("no image " + t + " in the image cache at " + (tmp_ / "store").string()),
            std::string::npos) << again.error().describe();
  ASSERT_TRUE(store.remove(small).ok());
  EXPECT_EQ(count_files(tmp_ / "store/blobs/sha256"), 0u);
  EXPECT_EQ(count_files(tmp_ / "store/rootfs"), 0u);
  EXPECT_EQ(count_files(tmp_ / "store/images"), 0u);
}

// A pull held up on its last layer (a FIFO in the layout, which the test feeds) while an
// image sharing its first layer is removed and the cache is pruned, as `flick image rm` and
// `flick image prune` in another process would: the blobs the pull has already imported or
// found present are pinned, so it ends with a complete image.
TEST_F(Store, RemoveAndPruneDuringAPullLeaveItsBlobsAlone) {
  fs::path l = own_layout();
  test::make_image(l, "small", {layers() / "base.tar"});  // shares base.tar's blob with :t
  const std::string t = "oci:" + l.string() + ":t", small = "oci:" + l.string() + ":small";
  auto store = open();
  ASSERT_TRUE(store.pull(small).ok());
  std::string last;  // the hex digest of :t's last layer (changes.tar, not in :small)
  ASSERT_EQ(run("python3 -c 'import json, sys; l = sys.argv[1]; idx = json.load(open(l + \"/index.json\"))\n"
                "m = [m for m in idx[\"manifests\"] if m[\"annotations\"][\"org.opencontainers.image.ref.name\"] == \"t\"][0]\n"
                "print(json.load(open(l + \"/blobs/sha256/\" + m[\"digest\"][7:]))[\"layers\"][-1][\"digest\"][7:], end=\"\")' " +
                    q(l), &last), 0);
  const fs::path fifo = l / "blobs/sha256" / last;
  std::stringstream bytes;
  bytes << std::ifstream(fifo, std::ios::binary).rdbuf();
  const std::string layer = bytes.str();
  ASSERT_FALSE(layer.empty());
  fs::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);

  std::optional<Result<PulledImage>> pulled;
  std::atomic<bool> done = false;
  std::jthread puller([&] {
    pulled.emplace(open().pull(t));  // another ImageStore on the directory, as another process
    done = true;
  });
  // Opening the FIFO's write end succeeds once the pull has opened it to read the layer.
  int fd = -1;
  for (int i = 0; i < 30000 && fd < 0 && !done; ++i) {
    fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GE(fd, 0) << "the pull never reached its last layer";
  auto removed = store.remove(small);
  EXPECT_TRUE(removed.ok()) << removed.error().describe();
  auto pruned = store.prune();
  EXPECT_TRUE(pruned.ok()) << pruned.error().describe();
  EXPECT_EQ(::fcntl(fd, F_SETFL, 0), 0);  // blocking writes from here
  EXPECT_EQ(::write(fd, layer.data(), layer.size()), ssize_t(layer.size()));
  ::close(fd);
  puller.join();

  ASSERT_TRUE(pulled->ok()) << pulled->error().describe();
  EXPECT_TRUE(fs::exists(tmp_ / "store/blobs/sha256" / (*pulled)->image_digest.substr(7))) << "the manifest went";
  auto r = store.rootfs(t, {}, with(PullPolicy::never));  // the config and every layer are there
  ASSERT_TRUE(r.ok()) << r.error().describe();
  test::expect_fsck_clean(r->path);
  EXPECT_EQ(count_files(tmp_ / "store/pins"), 0u) << "the pull left its pin";
  EXPECT_EQ(count_files(tmp_ / "store/tmp"), 0u);
}

// True once some process or thread waits for a flock() on the file at `path` (/proc/locks shows
// a blocked request as "N: -> FLOCK ... MAJOR:MINOR:INODE ...").
bool someone_waits_for(const fs::path& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  const std::string inode = ":" + std::to_string(st.st_ino) + " ";
  std::ifstream locks("/proc/locks");
  for (std::string line; std::getline(locks, line);)
    if (line.find("-> FLOCK") != std::string::npos && line.find(inode) != std::string::npos) return true;
  return false;
}

// `image rm` and a prune while a rootfs build waits for its lock (another process builds the
// same rootfs) leave it the image record and layers it builds from; the pin goes with it.
TEST_F(Store, RemoveAndPruneWhileARootfsBuildWaitsKeepWhatItBuildsFrom) {
  auto store = open();
  auto pulled = store.pull(image_ref());
  ASSERT_TRUE(pulled.ok()) << pulled.error().describe();
  const RootfsOptions options;  // the build's key: the image's hex digest and the headroom
  const fs::path lock = tmp_ / "store/locks" /
                        (pulled->image_digest.substr(7) + "-h" + std::to_string(options.headroom_bytes) + ".lock");
  int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);  // "another process" is building it

  std::optional<Result<Rootfs>> built;
  std::jthread builder([&] { built.emplace(open().rootfs(image_ref(), options)); });
  bool waiting = false;
  for (int i = 0; i < 3000 && !(waiting = someone_waits_for(lock)); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(waiting) << "the build never waited for its lock";
  auto removed = store.remove(image_ref());
  EXPECT_TRUE(removed.ok()) << removed.error().describe();
  auto pruned = store.prune();
  EXPECT_TRUE(pruned.ok()) << pruned.error().describe();
  ::close(fd);  // "the other process" died without publishing
  builder.join();

  ASSERT_TRUE(built->ok()) << built->error().describe();
  test::expect_fsck_clean((*built)->path);
  EXPECT_EQ(count_files(tmp_ / "store/pins"), 0u) << "the build left its pin";
  ASSERT_TRUE(store.prune().ok());  // and with the pin gone, nothing names the image any more
  EXPECT_EQ(count_files(tmp_ / "store/rootfs"), 0u);
  EXPECT_EQ(count_files(tmp_ / "store/blobs/sha256"), 0u);
}

// A pin file someone holds locked (a pull in flight) keeps the blobs it names; one nobody holds
// (a killed pull's) keeps nothing, and prune() removes it.
TEST_F(Store, PruneKeepsWhatALivePinNamesAndRemovesDeadPins) {
  auto store = open();
  const fs::path blobs = tmp_ / "store/blobs/sha256", pins = tmp_ / "store/pins";
  const std::string live(64, 'a'), dead(64, 'b');
  std::ofstream(blobs / live) << "fetched by a pull in flight";
  std::ofstream(blobs / dead) << "fetched by a pull that was killed";
  std::ofstream(pins / "live.pin") << "sha256:" << live << "\n";
  std::ofstream(pins / "dead.pin") << "sha256:" << dead << "\n";
  int fd = ::open((pins / "live.pin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);

  auto pruned = store.prune();
  ASSERT_TRUE(pruned.ok()) << pruned.error().describe();
  EXPECT_TRUE(fs::exists(blobs / live));
  EXPECT_TRUE(fs::exists(pins / "live.pin"));
  EXPECT_FALSE(fs::exists(blobs / dead));
  EXPECT_FALSE(fs::exists(pins / "dead.pin"));

  ::close(fd);  // the pull is gone without writing its records
  ASSERT_TRUE(store.prune().ok());
  EXPECT_EQ(count_files(blobs), 0u);
  EXPECT_EQ(count_files(pins), 0u);
}

TEST_F(Store, ArchivesGiveTheSameRootfsAsTheLayout) {
  const std::string oci_archive = (tmp_ / "img.oci.tar").string();
  const std::string docker_archive = (tmp_ / "img.docker.tar").string();
  ASSERT_EQ(run("skopeo copy -q " + q(image_ref()) + " " + q("oci-archive:" + oci_archive + ":t")), 0);
  ASSERT_EQ(run("skopeo copy -q " + q(image_ref()) + " " + q("docker-archive:" + docker_archive + ":flick/test:t")), 0);
  auto store = open();
  auto base = store.rootfs(image_ref());
  ASSERT_TRUE(base.ok()) << base.error().describe();
  auto want = test::read_ext4_tree(base->path);

  auto oa = store.rootfs("oci-archive:" + oci_archive + ":t");
  ASSERT_TRUE(oa.ok()) << oa.error().describe();
  EXPECT_EQ(oa->image_digest, base->image_digest);  // same manifest bytes
  EXPECT_EQ(test::diff_trees(want, test::read_ext4_tree(oa->path)), "");

  auto da = store.rootfs("docker-archive:" + docker_archive);
  ASSERT_TRUE(da.ok()) << da.error().describe();
  EXPECT_EQ(test::diff_trees(want, test::read_ext4_tree(da->path)), "");
  EXPECT_EQ(da->config.entrypoint, base->config.entrypoint);
  auto tagged = store.pull("docker-archive:" + docker_archive + ":flick/test:t");
  ASSERT_TRUE(tagged.ok()) << tagged.error().describe();
  EXPECT_EQ(tagged->image_digest, da->image_digest);
  auto missing = store.pull("docker-archive:" + docker_archive + ":other:tag");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
}

TEST_F(Store, UnknownTagAndMissingLayoutAreNotFound) {
  auto store = open();
  auto r = store.pull("oci:" + (*dir_ / "layout").string() + ":nope");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::not_found);
  EXPECT_NE(r.error().message.find("nope"), std::string::npos);
  auto m = store.pull("oci:" + (tmp_ / "absent").string());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, Errc::not_found);
}

}  // namespace
}  // namespace flick
