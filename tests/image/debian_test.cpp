// A realistic image: a Debian rootfs from mmdebstrap, packed with umoci. Its ext4 tree must
// equal `umoci unpack`.
#include <flick/image.h>

#include "fixtures.h"
#include "machine/guest_kernel.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace flick {
namespace {

namespace fs = std::filesystem;

// mmdebstrap takes ~35 s, so the tarball is made once into flick's cache, where
// bench/image/compare-mkfs.sh makes and finds it too (under the same lock). The rename means
// an interrupted run leaves at most the .part file, which the next run overwrites.
// Returns "" or why there is no tarball.
std::string ensure_tarball(const fs::path& tarball) {
  std::error_code ec;
  fs::create_directories(tarball.parent_path(), ec);
  const std::string lock_path = tarball.string() + ".lock";
  int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0) return "cannot open " + lock_path + ": " + std::strerror(errno);
  std::string error;
  if (::flock(lock, LOCK_EX) != 0) {
    error = "cannot lock " + lock_path + ": " + std::strerror(errno);
  } else if (!fs::exists(tarball)) {
    const fs::path part = tarball.string() + ".part";
    std::string out;
    int status = test::run("rm -f " + test::q(part) +
                               " && mmdebstrap --quiet --variant=minbase --mode=root --format=tar bookworm " +
                               test::q(part) + " http://deb.debian.org/debian",
                           &out);
    if (status != 0) {
      error = "mmdebstrap failed (exit " + std::to_string(status) + "):\n" + out;
    } else if (fs::rename(part, tarball, ec); ec) {
      error = "cannot rename " + part.string() + ": " + ec.message();
    }
  }
  ::close(lock);
  return error;
}

TEST(DebianImage, RootfsEqualsUmociUnpack) {
  fs::path tarball = machine::default_cache_dir() / "debian/debian-bookworm-minbase.tar";
  if (const char* env = std::getenv("FLICK_DEBIAN_TARBALL"); env && *env) {
    tarball = env;
    ASSERT_TRUE(fs::is_regular_file(tarball)) << "FLICK_DEBIAN_TARBALL=" << tarball << " is not a file";
  } else {
    std::string error = ensure_tarball(tarball);
    ASSERT_TRUE(error.empty()) << "no Debian rootfs tarball at " << tarball << ": " << error;
  }
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
