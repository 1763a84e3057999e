// Debian's cloud kernel, fetched into flick's cache (the one the Python tooling shares), and
// the base initramfs a machine boots with it.
#include "machine/guest_kernel.h"
#include "machine/initramfs.h"

#include "cpio_reader.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>

namespace flick::machine {
namespace {
namespace fs = std::filesystem;

std::string slurp(const fs::path& p) { return flick::testing::read_file(p); }

const GuestKernel& cloud_kernel() {
  static Result<GuestKernel> k = fetch_guest_kernel(default_cache_dir());
  if (!k.ok()) ADD_FAILURE() << k.error().describe();
  static GuestKernel empty;
  return k.ok() ? *k : empty;
}

TEST(RealKernel, FetchesTheCloudKernelAndReusesItWithoutApt) {
  const GuestKernel& k = cloud_kernel();
  ASSERT_FALSE(k.release.empty());
  EXPECT_TRUE(k.release.ends_with("-cloud-amd64")) << k.release;
  EXPECT_TRUE(fs::is_regular_file(k.vmlinuz)) << k.vmlinuz;
  ASSERT_TRUE(k.modules_dir.has_value());
  EXPECT_TRUE(fs::is_regular_file(*k.modules_dir / "modules.dep"));
  EXPECT_TRUE(k.vmlinuz.string().starts_with((default_cache_dir() / "kernels").string()));

  // The second call reads the remembered resolution: no apt-cache (~0.6 s per call here).
  auto start = std::chrono::steady_clock::now();
  auto again = fetch_guest_kernel(default_cache_dir());
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_EQ(again->vmlinuz, k.vmlinuz);
  EXPECT_LT(took, std::chrono::milliseconds(300));

  // The same kernel, described by hand, as a user would give it.
  auto by_hand = GuestKernel::from_dir(k.vmlinuz);
  ASSERT_TRUE(by_hand.ok()) << by_hand.error().describe();
  EXPECT_EQ(by_hand->release, k.release);  // read from the bzImage header
}

// apt-get download + dpkg-deb -x + depmod into an empty cache (a ~30 MB download): the path
// every new user's first machine takes, which the shared cache hides from the other tests.
TEST(RealKernel, FreshFetchIntoAnEmptyCache) {
  std::string tmpl = (fs::temp_directory_path() / "flick-kernel-cache-XXXXXX").string();
  fs::path cache = mkdtemp(tmpl.data());
  auto k = fetch_guest_kernel(cache);
  ASSERT_TRUE(k.ok()) << k.error().describe();
  EXPECT_EQ(k->release, cloud_kernel().release);
  EXPECT_TRUE(fs::is_regular_file(*k->modules_dir / "modules.dep"));
  EXPECT_EQ(fs::file_size(k->vmlinuz), fs::file_size(cloud_kernel().vmlinuz));
  size_t leftovers = 0;  // the temporary download folder is gone
  for (const auto& e : fs::directory_iterator(cache / "kernels"))
    leftovers += e.path().filename().string().starts_with(".fetch-");
  EXPECT_EQ(leftovers, 0u);
  fs::remove_all(cache);
}

TEST(RealKernel, UnknownPackageIsAnErrorNamingIt) {
  auto k = fetch_guest_kernel(default_cache_dir(), "flick-no-such-kernel-package");
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.error().describe().find("flick-no-such-kernel-package"), std::string::npos)
      << k.error().describe();
}

TEST(RealKernel, BaseInitramfsWithTheDefaultModules) {
  const GuestKernel& k = cloud_kernel();
  ASSERT_TRUE(k.modules_dir.has_value());
  std::string tmpl = (fs::temp_directory_path() / "flick-initramfs-XXXXXX").string();
  fs::path cache = mkdtemp(tmpl.data());
  auto path = build_base_initramfs(k, slurp(FLICK_INIT_BINARY), default_guest_modules(), cache);
  ASSERT_TRUE(path.ok()) << path.error().describe();
  std::string bytes = slurp(*path);
  std::string err;
  auto items = testing::read_cpio({bytes.begin(), bytes.end()}, &err);
  fs::remove_all(cache);
  ASSERT_TRUE(err.empty()) << err;

  EXPECT_EQ(items["init"].data, slurp(FLICK_INIT_BINARY));
  EXPECT_EQ(items["init"].mode, S_IFREG | 0755u);
  EXPECT_EQ(items["dev/console"].mode, S_IFCHR | 0600u);
  // virtio, virtio_ring, virtio_mmio, virtio_blk, failover, net_failover, virtio_net,
  // virtio-rng, vsock, vmw_vsock_virtio_transport_common, vmw_vsock_virtio_transport; ext4 is
  // built into the cloud kernel.
  std::istringstream listing(items["flick/modules"].data);
  std::vector<std::string> modules;
  for (std::string line; std::getline(listing, line);) modules.push_back(line);
  EXPECT_EQ(modules.size(), 11u) << items["flick/modules"].data;
  size_t ko_files = 0;
  for (const auto& [p, item] : items) ko_files += p.ends_with(".ko");
  EXPECT_EQ(ko_files, modules.size());
  for (const auto& m : modules) {
    const auto& item = items["lib/modules/" + k.release + "/" + m];
    EXPECT_EQ(item.data.substr(0, 4), "\x7f" "ELF") << m;
    EXPECT_EQ(item.data.size(), fs::file_size(*k.modules_dir / m)) << m;
  }
  ASSERT_FALSE(modules.empty());
  EXPECT_EQ(modules.back(), "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko");
  EXPECT_EQ(modules.front(), "kernel/drivers/virtio/virtio_ring.ko");
}

}  // namespace
}  // namespace flick::machine
