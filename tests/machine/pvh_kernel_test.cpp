// Extracting a bzImage's PVH-bootable vmlinux: a synthetic bzImage around the PVH test guest,
// compressed, and the ways it can fail to qualify.
#include "machine/pvh_kernel.h"

#include "support/compress.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace {

using namespace flick::machine;
using flick::testing::read_file;
using flick::testing::TempDir;
using flick::testing::write_file;
namespace fs = std::filesystem;

std::string gzip(const std::string& data) {
  return flick::testing::compress(data, archive_write_add_filter_gzip);
}

// Setup sectors with a boot protocol 2.15 header, then `payload` where payload_offset says.
std::string bzimage(const std::string& payload, uint16_t version = 0x20f) {
  std::string image(2 * 512, '\0');
  image[0x1f1] = 1;  // setup_sects
  std::memcpy(&image[0x202], "HdrS", 4);
  std::memcpy(&image[0x206], &version, 2);
  uint32_t offset = 16, length = static_cast<uint32_t>(payload.size());
  std::memcpy(&image[0x248], &offset, 4);
  std::memcpy(&image[0x24c], &length, 4);
  return image + std::string(offset, '\0') + payload;
}

TEST(PvhKernel, ExtractsAndCachesTheVmlinuxOfABzImage) {
  std::string elf = read_file(FLICK_TESTGUEST_PVH);
  ASSERT_TRUE(has_pvh_entry(elf));
  TempDir t;
  write_file(t.path() / "bzImage", bzimage(gzip(elf)));
  auto out = pvh_vmlinux(t.path() / "bzImage", t.path() / "cache");
  ASSERT_TRUE(out.ok()) << out.error().describe();
  ASSERT_TRUE(*out);
  EXPECT_EQ((*out)->parent_path(), t.path() / "cache" / "vmlinux");
  EXPECT_EQ(read_file(**out), elf);
  auto again = pvh_vmlinux(t.path() / "bzImage", t.path() / "cache");
  ASSERT_TRUE(again.ok() && *again);
  EXPECT_EQ(**again, **out);
}

TEST(PvhKernel, NothingForKernelsWithoutAPvhEntry) {
  TempDir t;
  std::string elf = read_file(FLICK_TESTGUEST_PVH);
  EXPECT_FALSE(has_pvh_entry(""));
  EXPECT_FALSE(has_pvh_entry(std::string(64, '\x7f')));
  EXPECT_FALSE(has_pvh_entry(elf.substr(0, 200)));  // program headers cut off
  auto none = [&](const std::string& image) {
    write_file(t.path() / "k", image);
    auto r = pvh_vmlinux(t.path() / "k", t.path() / "cache");
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r.ok() && !*r;
  };
  EXPECT_TRUE(none(elf));                                   // already an ELF
  EXPECT_TRUE(none(bzimage(gzip(elf), 0x206)));             // too old to say where its payload is
  EXPECT_TRUE(none(bzimage(gzip("not an ELF at all"))));    // no PVH entry inside
  EXPECT_TRUE(none(bzimage(gzip(elf)).substr(0, 1100)));    // payload cut off
  EXPECT_FALSE(fs::exists(t.path() / "cache" / "vmlinux"));

  write_file(t.path() / "bad", bzimage(gzip(elf).substr(0, 100)));  // a truncated stream
  auto bad = pvh_vmlinux(t.path() / "bad", t.path() / "cache");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("decompressing the kernel"), std::string::npos) << bad.error().message;
}

}  // namespace
