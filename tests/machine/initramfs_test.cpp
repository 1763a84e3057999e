#include "machine/initramfs.h"

#include "cpio_reader.h"
#include "support/compress.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

namespace flick::machine {
namespace {
namespace fs = std::filesystem;
using testing::read_cpio;

using flick::testing::TempDir;
using flick::testing::write_file;

std::vector<uint8_t> slurp(const fs::path& p) {
  std::string data = flick::testing::read_file(p);
  return {data.begin(), data.end()};
}

std::string read_text(const fs::path& p) {
  auto bytes = slurp(p);
  return {bytes.begin(), bytes.end()};
}

// A synthetic modules tree shaped like Debian's: net needs failover pieces and virtio,
// virtio needs virtio_ring; rng's file is spelt with a dash; ext4 is built in.
fs::path fake_modules(const fs::path& root) {
  fs::path dir = root / "lib/modules/6.1.0-test";
  write_file(dir / "modules.dep",
        "kernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/net/core/failover.ko:\n"
        "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
        "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko "
        "kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n");
  write_file(dir / "modules.builtin", "kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n");
  for (const char* m : {"drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_mmio",
                        "net/core/failover", "drivers/net/net_failover", "drivers/net/virtio_net",
                        "drivers/char/hw_random/virtio-rng"})
    write_file(dir / "kernel" / (std::string(m) + ".ko"), std::string("ELF of ") + m);
  return dir;
}

std::vector<std::string> names(std::initializer_list<const char*> l) { return {l.begin(), l.end()}; }

TEST(ModuleLoadOrder, DependenciesFirstEachOnceBuiltinsSkipped) {
  TempDir t;
  fs::path dir = fake_modules(t.path());
  auto order = module_load_order(dir, names({"virtio_net", "ext4", "virtio_rng", "virtio-mmio"}));
  ASSERT_TRUE(order.ok()) << order.error().describe();
  EXPECT_EQ(*order, names({"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                           "kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko",
                           "kernel/drivers/net/virtio_net.ko",
                           "kernel/drivers/char/hw_random/virtio-rng.ko",
                           "kernel/drivers/virtio/virtio_mmio.ko"}));
}

TEST(ModuleLoadOrder, UnknownModuleIsAnErrorNamingIt) {
  TempDir t;
  fs::path dir = fake_modules(t.path());
  auto order = module_load_order(dir, names({"virtio_blk"}));
  ASSERT_FALSE(order.ok());
  EXPECT_EQ(order.error().code, Errc::not_found);
  EXPECT_NE(order.error().message.find("virtio_blk"), std::string::npos) << order.error().message;
}

TEST(ModuleLoadOrder, CycleAndMissingModulesDepAreErrors) {
  TempDir t;
  write_file(t.path() / "modules.dep", "a.ko: b.ko\nb.ko: a.ko\n");
  auto cyc = module_load_order(t.path(), names({"a"}));
  ASSERT_FALSE(cyc.ok());
  EXPECT_NE(cyc.error().message.find("cycle"), std::string::npos);
  auto none = module_load_order(t.path() / "nope", names({"a"}));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("modules.dep"), std::string::npos);
}

TEST(BaseInitramfs, HoldsExactlyInitConsoleModulesAndListing) {
  TempDir t;
  fs::path dir = fake_modules(t.path());
  write_file(t.path() / "flick-init", "\x7f" "ELF fake init");
  GuestKernel k{t.path() / "vmlinuz", "6.1.0-test", dir};
  auto mods = names({"virtio_mmio", "ext4", "virtio_rng"});
  auto path = build_base_initramfs(k, read_text(t.path() / "flick-init"), mods, t.path() / "cache");
  ASSERT_TRUE(path.ok()) << path.error().describe();
  EXPECT_EQ(path->parent_path(), t.path() / "cache" / "initramfs");
  auto bytes = slurp(*path);
  ASSERT_GE(bytes.size(), 2u);
  EXPECT_EQ(bytes[0], 0x1f);  // gzip magic
  EXPECT_EQ(bytes[1], 0x8b);
  std::string err;
  auto items = read_cpio(bytes, &err);
  ASSERT_TRUE(err.empty()) << err;

  std::vector<std::string> paths;
  for (const auto& [p, item] : items) {
    paths.push_back(p);
    EXPECT_EQ(item.uid, 0) << p;
    EXPECT_EQ(item.gid, 0) << p;
    EXPECT_EQ(item.mtime, 0) << p;
  }
  const std::string m = "lib/modules/6.1.0-test/kernel/drivers/";
  EXPECT_EQ(paths, names({"dev", "dev/console", "flick", "flick/modules", "init", "lib",
                          "lib/modules", "lib/modules/6.1.0-test", "lib/modules/6.1.0-test/kernel",
                          "lib/modules/6.1.0-test/kernel/drivers", (m + "char").c_str(),
                          (m + "char/hw_random").c_str(), (m + "char/hw_random/virtio-rng.ko").c_str(),
                          (m + "virtio").c_str(), (m + "virtio/virtio.ko").c_str(),
                          (m + "virtio/virtio_mmio.ko").c_str(), (m + "virtio/virtio_ring.ko").c_str()}));
  EXPECT_EQ(items["init"].mode, S_IFREG | 0755u);
  EXPECT_EQ(items["init"].data, "\x7f" "ELF fake init");
  EXPECT_EQ(items["dev/console"].mode, S_IFCHR | 0600u);
  EXPECT_EQ(items["dev/console"].rdev_major, 5u);
  EXPECT_EQ(items["dev/console"].rdev_minor, 1u);
  EXPECT_EQ(items["dev"].mode, S_IFDIR | 0755u);
  EXPECT_EQ(items[m + "virtio/virtio_mmio.ko"].data, "ELF of drivers/virtio/virtio_mmio");
  EXPECT_EQ(items[m + "virtio/virtio_mmio.ko"].mode, S_IFREG | 0644u);
  EXPECT_EQ(items["flick/modules"].data,
            "kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio.ko\n"
            "kernel/drivers/virtio/virtio_mmio.ko\nkernel/drivers/char/hw_random/virtio-rng.ko\n");
}

TEST(BaseInitramfs, ByteIdenticalWhenBuiltTwiceAndKeyedByContent) {
  TempDir t;
  fs::path dir = fake_modules(t.path());
  write_file(t.path() / "flick-init", "init v1");
  GuestKernel k{t.path() / "vmlinuz", "6.1.0-test", dir};
  auto mods = names({"virtio_net"});
  auto a = build_base_initramfs(k, read_text(t.path() / "flick-init"), mods, t.path() / "c1");
  auto b = build_base_initramfs(k, read_text(t.path() / "flick-init"), mods, t.path() / "c2");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->filename(), b->filename());
  EXPECT_EQ(slurp(*a), slurp(*b));

  sleep(1);  // a gzip header timestamp would now differ
  write_file(t.path() / "flick-init", "init v2");
  auto c = build_base_initramfs(k, read_text(t.path() / "flick-init"), mods, t.path() / "c1");
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->filename(), a->filename());  // a new flick-init is a new archive
  write_file(t.path() / "flick-init", "init v1");
  auto d = build_base_initramfs(k, read_text(t.path() / "flick-init"), mods, t.path() / "c3");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(slurp(*d), slurp(*a));
}

TEST(BaseInitramfs, KernelWithoutModulesGetsAnEmptyListing) {
  TempDir t;
  write_file(t.path() / "flick-init", "init");
  GuestKernel k{t.path() / "vmlinuz", "", std::nullopt};
  auto path = build_base_initramfs(k, read_text(t.path() / "flick-init"), default_guest_modules(), t.path());
  ASSERT_TRUE(path.ok()) << path.error().describe();
  std::string err;
  auto items = read_cpio(slurp(*path), &err);
  ASSERT_TRUE(err.empty()) << err;
  EXPECT_EQ(items.size(), 5u);  // dev, dev/console, flick, flick/modules, init
  EXPECT_EQ(items["flick/modules"].data, "");
}

TEST(BaseInitramfs, EmptyInitIsAnError) {
  TempDir t;
  GuestKernel k{t.path() / "vmlinuz", "", std::nullopt};
  auto path = build_base_initramfs(k, "", {}, t.path());
  ASSERT_FALSE(path.ok());
  EXPECT_NE(path.error().describe().find("flick-init"), std::string::npos) << path.error().describe();
}

// `data` compressed with xz, as Debian trixie and Fedora ship modules.
std::string xz(const std::string& data) { return flick::testing::compress(data, archive_write_add_filter_xz); }

TEST(BaseInitramfs, CompressedModulesAreStoredPlain) {
  TempDir t;
  fs::path dir = t.path() / "lib/modules/6.12-test";
  std::string a = "\x7f" "ELF module a, long enough to be worth compressing: aaaaaaaaaaaaaaaaaaaaaaaa";
  write_file(dir / "kernel/a.ko.xz", xz(a));
  write_file(dir / "kernel/b.ko.xz", xz("\x7f" "ELF b"));
  write_file(dir / "kernel/c.ko.xz", "not xz at all");
  write_file(dir / "modules.dep", "kernel/a.ko.xz:\nkernel/b.ko.xz: kernel/a.ko.xz\nkernel/c.ko.xz:\n");
  ASSERT_NE(xz(a), a);
  write_file(t.path() / "init", "init");
  GuestKernel k{t.path() / "vmlinuz", "6.12-test", dir};
  auto path = build_base_initramfs(k, read_text(t.path() / "init"), names({"b"}), t.path());
  ASSERT_TRUE(path.ok()) << path.error().describe();
  std::string err;
  auto items = read_cpio(slurp(*path), &err);
  ASSERT_TRUE(err.empty()) << err;
  EXPECT_EQ(items["lib/modules/6.12-test/kernel/a.ko"].data, a);
  EXPECT_EQ(items["lib/modules/6.12-test/kernel/b.ko"].data, "\x7f" "ELF b");
  EXPECT_EQ(items["flick/modules"].data, "kernel/a.ko\nkernel/b.ko\n");
  EXPECT_EQ(items.count("lib/modules/6.12-test/kernel/a.ko.xz"), 0u);

  auto bad = build_base_initramfs(k, read_text(t.path() / "init"), names({"c"}), t.path());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("c.ko.xz"), std::string::npos) << bad.error().message;
}

TEST(ConfigArchive, RoundTripsUncompressed) {
  std::string json = R"({"root":{"device":"/dev/vda"},"process":{"argv":["/bin/true"]}})";
  auto bytes = config_archive(json);
  ASSERT_TRUE(bytes.ok()) << bytes.error().describe();
  ASSERT_GE(bytes->size(), 6u);
  EXPECT_EQ(std::string(bytes->begin(), bytes->begin() + 6), "070701");  // newc magic
  EXPECT_EQ(bytes->size() % 4, 0u);  // concatenation with the base archive stays aligned
  std::string err;
  auto items = read_cpio(*bytes, &err);
  ASSERT_TRUE(err.empty()) << err;
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items["flick"].mode, S_IFDIR | 0755u);
  EXPECT_EQ(items["flick/config.json"].mode, S_IFREG | 0644u);
  EXPECT_EQ(items["flick/config.json"].data, json);

  TempDir t;
  ASSERT_TRUE(write_config_archive(json, t.path() / "config.cpio").ok());
  EXPECT_EQ(slurp(t.path() / "config.cpio"), *bytes);
  EXPECT_FALSE(write_config_archive(json, t.path() / "missing" / "config.cpio").ok());
}

}  // namespace
}  // namespace flick::machine
