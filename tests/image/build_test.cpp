// build_rootfs against real layer tars: the ext4 tree must equal what `umoci unpack` makes
// of the same image, and hostile layers must fail cleanly.
#include <flick/image.h>

#include "fixtures.h"

#include <gtest/gtest.h>

namespace flick {
namespace {

using test::q;
using test::run;
namespace fs = std::filesystem;

class BuildRootfs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    test::make_layers(layers());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static fs::path layers() { return *dir_ / "layers"; }
  static fs::path layer(const std::string& name) { return layers() / name; }

  Result<BuildStats> build(std::vector<fs::path> l, const fs::path& out, RootfsOptions o = {}) {
    return build_rootfs(l, out, o);
  }
  void expect_failure(const std::string& layer_name, Errc code, const std::string& needle) {
    fs::path out = tmp_ / "hostile.ext4";
    auto r = build({layer("base.tar"), layer(layer_name)}, out);
    ASSERT_FALSE(r.ok()) << layer_name << " was accepted";
    EXPECT_EQ(r.error().code, code) << r.error().describe();
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().describe();
    EXPECT_FALSE(fs::exists(out)) << "a failed build left its output behind";
  }

  static test::TempDir* dir_;
  test::TempDir tmp_;
};
test::TempDir* BuildRootfs::dir_ = nullptr;

TEST_F(BuildRootfs, TreeEqualsUmociUnpackOfTheSameImage) {
  const fs::path layout = tmp_ / "layout";
  test::make_image(layout, "t", {layer("base.tar"), layer("changes.tar"), layer("through.tar"), layer("sparse.tar")});
  test::Tree expected = test::umoci_tree(layout, "t", tmp_ / "bundle");
  ASSERT_GT(expected.size(), 700u);

  // The blobs umoci wrote (gzip-compressed) are the layers, in manifest order.
  std::string out;
  std::vector<fs::path> blobs;
  ASSERT_EQ(run("python3 -c \"import json; i=json.load(open('" + (layout / "index.json").string() +
                "')); m=json.load(open('" + layout.string() + "/blobs/sha256/'+i['manifests'][0]['digest'][7:]));"
                " print('\\n'.join(l['digest'][7:] for l in m['layers']))\"", &out), 0);
  for (size_t pos = 0; pos < out.size();) {
    size_t nl = out.find('\n', pos);
    if (nl == std::string::npos) nl = out.size();
    if (nl > pos) blobs.push_back(layout / "blobs" / "sha256" / out.substr(pos, nl - pos));
    pos = nl + 1;
  }
  ASSERT_EQ(blobs.size(), 4u);

  fs::path image = tmp_ / "rootfs.ext4";
  auto r = build(blobs, image);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  test::expect_fsck_clean(image);
  test::Tree actual = test::read_ext4_tree(image);
  EXPECT_EQ(test::diff_trees(expected, actual), "");

  // Spot checks that the comparison really covered the interesting cases.
  EXPECT_FALSE(actual.count("/etc/motd"));                 // whiteout
  EXPECT_FALSE(actual.count("/gone"));                     // whiteout of a directory
  EXPECT_TRUE(actual.count("/opaque/new"));
  EXPECT_FALSE(actual.count("/opaque/old1"));              // opaque directory
  EXPECT_FALSE(actual.count("/opaque/olddir/deep"));
  EXPECT_EQ(actual["/replace-me"].type, 'd');              // file -> directory
  EXPECT_EQ(actual["/dir-to-file"].type, 'f');             // directory -> file
  EXPECT_EQ(actual["/link-to-file"].type, 'f');            // symlink -> file
  EXPECT_EQ(actual["/shared-link"].hardlink_group, "/shared");  // hardlink across layers
  EXPECT_EQ(actual["/bin/busybox-again"].hardlink_group, "/bin/ash");
  EXPECT_EQ(actual["/bin/sh-again"].hardlink_group, "/bin/sh");
  EXPECT_EQ(actual["/bin/su"].mode, 04755u);
  EXPECT_EQ(actual["/bin/wall"].mode, 02755u);
  EXPECT_EQ(actual["/tmp"].mode, 01777u);
  EXPECT_EQ(actual["/home/big-ids"].uid, 100000u);
  EXPECT_EQ(actual["/dev/big"].major, 300u);
  EXPECT_EQ(actual["/dev/big"].minor, 70000u);
  EXPECT_EQ(actual["/dev/initctl"].type, 'p');
  EXPECT_EQ(actual["/etc/xattr-file"].xattrs["user.flick"], "yes");
  EXPECT_EQ(actual["/etc/ssl"].xattrs["user.dir"], "attr on a directory");
  EXPECT_EQ(actual["/lib/long-link"].link.size(), 126u);   // slow symlink
  EXPECT_TRUE(actual.count("/home/via-symlink"));          // through a symlinked parent
  EXPECT_EQ(actual["/sparse"].size, 8u << 20);
  EXPECT_LE(actual["/sparse"].allocated, 16u * 1024) << "holes were not kept sparse";
  EXPECT_GE(r->content_bytes, uint64_t{8} << 20);
  EXPECT_GT(r->inodes, 700u);
}

TEST_F(BuildRootfs, ImageIsSizedFromContentPlusHeadroomAndWritable) {
  fs::path image = tmp_ / "sized.ext4";
  RootfsOptions o;
  o.headroom_bytes = 64 << 20;
  auto r = build({layer("base.tar"), layer("sparse.tar")}, image, o);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(fs::file_size(image), r->image_bytes);
  EXPECT_LT(r->image_bytes, uint64_t{160} << 20);
  std::string out;
  ASSERT_EQ(run("dumpe2fs -h " + q(image), &out), 0);
  EXPECT_NE(out.find("has_journal"), std::string::npos) << out;
  EXPECT_NE(out.find("extent"), std::string::npos);
  // Free space is at least the headroom: a guest can write into it.
  auto grab = [&](const std::string& key) {
    size_t p = out.find(key);
    return p == std::string::npos ? 0ull : std::stoull(out.substr(out.find_first_of("0123456789", p + key.size())));
  };
  EXPECT_GE(grab("Free blocks:") * 4096, o.headroom_bytes);
  EXPECT_GT(grab("Free inodes:"), 1000u);
  // Writable: debugfs writes a file into it and e2fsck stays clean.
  ASSERT_EQ(run("echo guest-data > " + q(tmp_ / "g") + " && debugfs -w -R 'write " + (tmp_ / "g").string() +
                " /guest-file' " + q(image)), 0);
  test::expect_fsck_clean(image);
  EXPECT_TRUE(test::read_ext4_tree(image).count("/guest-file"));
}

TEST_F(BuildRootfs, ExplicitSizeIsHonouredAndTooSmallIsAClearError) {
  fs::path image = tmp_ / "explicit.ext4";
  RootfsOptions o;
  o.size_bytes = 100 << 20;
  auto r = build({layer("base.tar")}, image, o);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(fs::file_size(image), uint64_t{100} << 20);
  test::expect_fsck_clean(image);
  ASSERT_EQ(run("cd " + q(tmp_.path()) + " && head -c 24M /dev/urandom > random && tar -cf random.tar random"), 0);
  o.size_bytes = 20 << 20;  // 24 MiB of data cannot fit
  auto small = build({layer("base.tar"), tmp_ / "random.tar"}, tmp_ / "small.ext4", o);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.error().code, Errc::limit) << small.error().describe();
  EXPECT_NE(small.error().message.find("too small"), std::string::npos) << small.error().describe();
  EXPECT_FALSE(fs::exists(tmp_ / "small.ext4"));
}

TEST_F(BuildRootfs, RejectsDotDotPaths) {
  expect_failure("dotdot.tar", Errc::malformed, "'..'");
  expect_failure("dotdot-inner.tar", Errc::malformed, "'..'");
}

TEST_F(BuildRootfs, RejectsAbsolutePaths) { expect_failure("absolute.tar", Errc::malformed, "absolute"); }

TEST_F(BuildRootfs, RejectsHardlinksOutsideTheImage) {
  expect_failure("hardlink-outside.tar", Errc::malformed, "'..'");
  expect_failure("hardlink-missing.tar", Errc::malformed, "does not exist in the image");
}

TEST_F(BuildRootfs, RejectsSymlinkLoops) { expect_failure("symlink-loop.tar", Errc::malformed, "symbolic links"); }

TEST_F(BuildRootfs, WritesThroughASymlinkToRootStayInsideTheImage) {
  // `evil -> /` then `evil/etc/flick-escape-probe`: resolved in the image, as umoci does.
  ASSERT_FALSE(fs::exists("/etc/flick-escape-probe"));
  fs::path image = tmp_ / "symlink-root.ext4";
  auto r = build({layer("base.tar"), layer("symlink-root.tar")}, image);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_FALSE(fs::exists("/etc/flick-escape-probe"));
  EXPECT_FALSE(fs::exists("/flick-escape-probe2"));
  test::expect_fsck_clean(image);
  auto tree = test::read_ext4_tree(image);
  EXPECT_EQ(tree["/evil"].link, "/");
  EXPECT_EQ(tree["/etc/flick-escape-probe"].type, 'f');
  EXPECT_EQ(tree["/flick-escape-probe2"].type, 'f');
  EXPECT_EQ(tree["/etc/passwd"].size, 30u);  // layer 1's file is still there

  const fs::path layout = tmp_ / "layout";
  test::make_image(layout, "evil", {layer("base.tar"), layer("symlink-root.tar")});
  EXPECT_EQ(test::diff_trees(test::umoci_tree(layout, "evil", tmp_ / "bundle"), tree), "");
}

TEST_F(BuildRootfs, SparseTarBombHitsTheSizeLimit) {
  auto src = tmp_ / "bomb";
  fs::create_directories(src);
  ASSERT_EQ(run("cd " + q(src) + " && truncate -s 10G huge && tar --sparse -cf ../bomb.tar huge"), 0);
  ASSERT_LT(fs::file_size(tmp_ / "bomb.tar"), 64u * 1024);
  fs::path out = tmp_ / "bomb.ext4";
  auto r = build({tmp_ / "bomb.tar"}, out);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::limit);
  EXPECT_NE(r.error().message.find("limit"), std::string::npos) << r.error().describe();
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(BuildRootfs, EntryCountAndPathLengthLimits) {
  RootfsOptions o;
  o.limits.max_entries = 100;
  auto r = build({layer("base.tar")}, tmp_ / "a.ext4", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::limit);
  EXPECT_NE(r.error().message.find("100 entries"), std::string::npos) << r.error().describe();
  o = {};
  o.limits.max_path_length = 20;
  r = build({layer("base.tar")}, tmp_ / "b.ext4", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::limit);
  EXPECT_NE(r.error().message.find("longer than"), std::string::npos) << r.error().describe();
}

TEST_F(BuildRootfs, TruncatedGzipStreamIsAClearError) {
  ASSERT_EQ(run("gzip -c " + q(layer("base.tar")) + " > " + q(tmp_ / "full.tar.gz")), 0);
  auto full = fs::file_size(tmp_ / "full.tar.gz");
  ASSERT_EQ(run("head -c " + std::to_string(full / 2) + " " + q(tmp_ / "full.tar.gz") + " > " + q(tmp_ / "cut.tar.gz")), 0);
  auto ok = build({tmp_ / "full.tar.gz"}, tmp_ / "ok.ext4");
  ASSERT_TRUE(ok.ok()) << ok.error().describe();
  fs::path out = tmp_ / "cut.ext4";
  auto r = build({tmp_ / "cut.tar.gz"}, out);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::malformed);
  EXPECT_NE(r.error().message.find("cut.tar.gz"), std::string::npos) << r.error().describe();
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(BuildRootfs, ZstdLayersAreRead) {
  ASSERT_EQ(run("zstd -q -c " + q(layer("base.tar")) + " > " + q(tmp_ / "base.tar.zst")), 0);
  auto a = build({tmp_ / "base.tar.zst"}, tmp_ / "z.ext4");
  ASSERT_TRUE(a.ok()) << a.error().describe();
  auto b = build({layer("base.tar")}, tmp_ / "p.ext4");
  ASSERT_TRUE(b.ok()) << b.error().describe();
  EXPECT_EQ(test::diff_trees(test::read_ext4_tree(tmp_ / "p.ext4"), test::read_ext4_tree(tmp_ / "z.ext4")), "");
}

}  // namespace
}  // namespace flick
