#include "machine/guest_kernel.h"

#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

namespace flick::machine {
namespace {
namespace fs = std::filesystem;

using flick::testing::TempDir;
using flick::testing::write_file;

// Just enough of a bzImage for the setup header's kernel_version pointer (boot protocol 2.00+).
std::string fake_bzimage(const std::string& version) {
  std::string img(0x400, '\0');
  memcpy(&img[0x202], "HdrS", 4);
  uint16_t ptr = 0x300 - 0x200;
  img[0x20e] = static_cast<char>(ptr & 0xff);
  img[0x20f] = static_cast<char>(ptr >> 8);
  memcpy(&img[0x300], version.data(), version.size());
  return img;
}

TEST(GuestKernelFromDir, BzImageAloneTakesTheReleaseFromItsHeader) {
  TempDir t;
  write_file(t.path() / "bzImage", fake_bzimage("6.6.7-custom (me@host) #1 SMP"));
  auto k = GuestKernel::from_dir(t.path() / "bzImage");
  ASSERT_TRUE(k.ok()) << k.error().describe();
  EXPECT_EQ(k->vmlinuz, t.path() / "bzImage");
  EXPECT_EQ(k->release, "6.6.7-custom");
  EXPECT_FALSE(k->modules_dir.has_value());
}

TEST(GuestKernelFromDir, BzImageWithModulesFolder) {
  TempDir t;
  write_file(t.path() / "bzImage", fake_bzimage("ignored"));
  fs::path mods = t.path() / "mods" / "6.6.7-custom";
  write_file(mods / "modules.dep", "");
  auto k = GuestKernel::from_dir(t.path() / "bzImage", mods);
  ASSERT_TRUE(k.ok()) << k.error().describe();
  EXPECT_EQ(k->release, "6.6.7-custom");
  EXPECT_EQ(k->modules_dir, mods);

  auto no_dep = GuestKernel::from_dir(t.path() / "bzImage", t.path() / "mods");
  ASSERT_FALSE(no_dep.ok());
  EXPECT_NE(no_dep.error().message.find("modules.dep"), std::string::npos);
}

TEST(GuestKernelFromDir, UnpackedPackageRoot) {
  TempDir t;
  write_file(t.path() / "boot" / "vmlinuz-6.1.0-9-cloud-amd64", fake_bzimage("6.1.0-9-cloud-amd64"));
  write_file(t.path() / "lib/modules/6.1.0-9-cloud-amd64/modules.dep", "");
  auto k = GuestKernel::from_dir(t.path());
  ASSERT_TRUE(k.ok()) << k.error().describe();
  EXPECT_EQ(k->release, "6.1.0-9-cloud-amd64");
  EXPECT_EQ(k->vmlinuz, t.path() / "boot" / "vmlinuz-6.1.0-9-cloud-amd64");
  EXPECT_EQ(k->modules_dir, t.path() / "lib/modules/6.1.0-9-cloud-amd64");
}

TEST(GuestKernelFromDir, MissingKernelIsNotFound) {
  TempDir t;
  auto k = GuestKernel::from_dir(t.path() / "nope");
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.error().code, Errc::not_found);
  EXPECT_NE(k.error().message.find("nope"), std::string::npos);
}

TEST(DefaultCacheDir, FollowsFlickCacheDirThenXdg) {
  const char* old = getenv("FLICK_CACHE_DIR");
  const char* old_xdg = getenv("XDG_CACHE_HOME");
  std::string saved = old ? old : "", saved_xdg = old_xdg ? old_xdg : "";
  setenv("FLICK_CACHE_DIR", "/somewhere/flick", 1);
  EXPECT_EQ(default_cache_dir(), fs::path("/somewhere/flick"));
  unsetenv("FLICK_CACHE_DIR");
  setenv("XDG_CACHE_HOME", "/xdg", 1);
  EXPECT_EQ(default_cache_dir(), fs::path("/xdg/flick"));
  unsetenv("XDG_CACHE_HOME");
  if (old) setenv("FLICK_CACHE_DIR", saved.c_str(), 1);
  if (old_xdg) setenv("XDG_CACHE_HOME", saved_xdg.c_str(), 1);
}

}  // namespace
}  // namespace flick::machine
