// A realistic image: a Debian rootfs from mmdebstrap (bench/image/compare-mkfs.sh caches one
// in <build>/bench-cache), packed with umoci. Its ext4 tree must equal `umoci unpack`.
#include <flick/image.h>

#include "fixtures.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace flick {
namespace {

namespace fs = std::filesystem;

TEST(DebianImage, RootfsEqualsUmociUnpack) {
  const char* env = std::getenv("FLICK_DEBIAN_TARBALL");
  const fs::path tarball = env ? fs::path(env) : fs::path(FLICK_BINARY_DIR) / "bench-cache/debian-bookworm-minbase.tar";
  if (!fs::exists(tarball)) GTEST_SKIP() << "no Debian rootfs tarball at " << tarball << " (run bench/image/compare-mkfs.sh)";
  test::TempDir tmp;
  test::make_image(tmp / "layout", "debian", {tarball});
  auto expected = test::umoci_tree(tmp / "layout", "debian", tmp / "bundle");
  ASSERT_GT(expected.size(), 5000u);
  auto store = ImageStore::open(tmp / "store");
  ASSERT_TRUE(store.ok());
  auto r = store->rootfs("oci:" + (tmp / "layout").string() + ":debian");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  test::expect_fsck_clean(r->path);
  EXPECT_EQ(test::diff_trees(expected, test::read_ext4_tree(r->path)), "");
}

}  // namespace
}  // namespace flick
