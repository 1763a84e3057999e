// Gzip layers through ISA-L (GzipStream): the same entries and bytes as libarchive's zlib
// reader and as the uncompressed tar, multi-member streams, and every kind of damage a clear
// error naming the layer.
#include <flick/image.h>

#include "fixtures.h"
#include "image/layer_reader.h"
#include "image/sha256.h"

#include <archive_entry.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <iterator>

namespace flick {
namespace {

using image::GzipInflater;
using image::LayerReader;
using test::q;
using test::run;
namespace fs = std::filesystem;

// "path type size sha256-of-data holes" per entry, in archive order.
Result<std::vector<std::string>> list_layer(const fs::path& p, GzipInflater inflater) {
  FLICK_TRY_ASSIGN(auto reader, LayerReader::open_file(p, inflater));
  std::vector<std::string> out;
  while (true) {
    FLICK_TRY_ASSIGN(archive_entry* e, reader.next());
    if (!e) return out;
    // Runs come in whatever pieces the decompressor produced: hash the bytes, note the holes.
    image::Sha256 h;
    std::string holes;
    uint64_t end = 0;
    FLICK_TRY(reader.read_data([&](uint64_t off, std::span<const uint8_t> b) -> Result<void> {
      if (off != end) holes += " hole@" + std::to_string(end) + "-" + std::to_string(off);
      h.update(b.data(), b.size());
      end = off + b.size();
      return {};
    }));
    out.push_back(std::string(archive_entry_pathname(e)) + " " + std::to_string(archive_entry_filetype(e)) +
                  " " + std::to_string(archive_entry_size(e)) + " " + h.digest() + holes);
  }
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), std::streamsize(s.size()));
  ASSERT_TRUE(f.good()) << p;
}

class GzipLayer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    test::make_layers(*dir_ / "layers");
    // Big enough to span several of GzipStream's chunks and input reads: 9 MiB of
    // incompressible bytes, a run of zeros, then the small layer's entries.
    const fs::path src = *dir_ / "big-src";
    fs::create_directories(src);
    ASSERT_EQ(run("cd " + q(src) + " && head -c 9437184 /dev/urandom > random && truncate -s 5M zeros"
                  " && tar -cf ../big.tar random zeros && tar -Af ../big.tar " + q(*dir_ / "layers/base.tar")), 0);
    ASSERT_EQ(run("gzip -n -c " + q(*dir_ / "big.tar") + " > " + q(*dir_ / "big.tar.gz")), 0);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static fs::path path(const std::string& name) { return *dir_ / name; }

  // Builds `layer` and expects a clear failure naming it, with nothing left behind.
  void expect_build_failure(const fs::path& layer, Errc code, const std::string& needle) {
    const fs::path out = tmp_ / "bad.ext4";
    auto r = build_rootfs(std::vector<fs::path>{layer}, out);
    ASSERT_FALSE(r.ok()) << layer << " was accepted";
    EXPECT_EQ(r.error().code, code) << r.error().describe();
    EXPECT_NE(r.error().message.find(layer.filename().string()), std::string::npos) << r.error().describe();
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().describe();
    EXPECT_FALSE(fs::exists(out)) << "a failed build left its output behind";
  }

  static test::TempDir* dir_;
  test::TempDir tmp_;
};
test::TempDir* GzipLayer::dir_ = nullptr;

TEST_F(GzipLayer, SameEntriesAndBytesAsZlibAndTheUncompressedTar) {
  auto plain = list_layer(path("big.tar"), GzipInflater::isal);
  ASSERT_TRUE(plain.ok()) << plain.error().describe();
  ASSERT_GT(plain->size(), 20u);
  auto isal = list_layer(path("big.tar.gz"), GzipInflater::isal);
  ASSERT_TRUE(isal.ok()) << isal.error().describe();
  auto zlib = list_layer(path("big.tar.gz"), GzipInflater::libarchive);
  ASSERT_TRUE(zlib.ok()) << zlib.error().describe();
  EXPECT_EQ(*isal, *plain);
  EXPECT_EQ(*zlib, *plain);
}

TEST_F(GzipLayer, Ext4FromTheGzipLayerEqualsTheOneFromTheTar) {
  auto a = build_rootfs(std::vector<fs::path>{path("big.tar.gz")}, tmp_ / "gz.ext4");
  ASSERT_TRUE(a.ok()) << a.error().describe();
  auto b = build_rootfs(std::vector<fs::path>{path("big.tar")}, tmp_ / "tar.ext4");
  ASSERT_TRUE(b.ok()) << b.error().describe();
  test::expect_fsck_clean(tmp_ / "gz.ext4");
  test::Tree tree = test::read_ext4_tree(tmp_ / "gz.ext4");
  EXPECT_EQ(tree["/random"].size, 9u << 20);
  EXPECT_EQ(test::diff_trees(test::read_ext4_tree(tmp_ / "tar.ext4"), tree), "");
}

TEST_F(GzipLayer, MultiMemberStreamIsReadWhole) {
  // The tar cut at an odd byte, each part its own gzip member, the members concatenated.
  const std::string tar = read_bytes(path("big.tar"));
  const size_t cut = tar.size() / 3 + 7;
  write_bytes(tmp_ / "part1", tar.substr(0, cut));
  write_bytes(tmp_ / "part2", tar.substr(cut));
  ASSERT_EQ(run("gzip -n -c " + q(tmp_ / "part1") + " > " + q(tmp_ / "multi.tar.gz") + " && gzip -n -1 -c " +
                q(tmp_ / "part2") + " >> " + q(tmp_ / "multi.tar.gz")), 0);
  auto plain = list_layer(path("big.tar"), GzipInflater::isal);
  ASSERT_TRUE(plain.ok()) << plain.error().describe();
  auto multi = list_layer(tmp_ / "multi.tar.gz", GzipInflater::isal);
  ASSERT_TRUE(multi.ok()) << multi.error().describe();
  EXPECT_EQ(*multi, *plain);
}

TEST_F(GzipLayer, CorruptByteIsAClearError) {
  std::string gz = read_bytes(path("big.tar.gz"));
  gz[gz.size() / 2] = char(gz[gz.size() / 2] ^ 0x55);
  write_bytes(tmp_ / "corrupt.tar.gz", gz);
  // Depending on where the flip lands, the deflate data or the CRC-32 gives it away.
  auto r = list_layer(tmp_ / "corrupt.tar.gz", GzipInflater::isal);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("gzip stream"), std::string::npos) << r.error().describe();
  expect_build_failure(tmp_ / "corrupt.tar.gz", r.error().code, "corrupt.tar.gz");
}

TEST_F(GzipLayer, CorruptHeaderIsAClearError) {
  std::string gz = read_bytes(path("big.tar.gz"));
  gz[2] = 9;  // compression method: not deflate
  write_bytes(tmp_ / "method.tar.gz", gz);
  expect_build_failure(tmp_ / "method.tar.gz", Errc::malformed, "not deflate");
}

TEST_F(GzipLayer, WrongTrailerCrcIsAnIntegrityError) {
  // Every tar entry decompresses fine; only the CRC-32 at the end disagrees.
  std::string gz = read_bytes(path("big.tar.gz"));
  gz[gz.size() - 8] = char(gz[gz.size() - 8] ^ 1);
  write_bytes(tmp_ / "crc.tar.gz", gz);
  expect_build_failure(tmp_ / "crc.tar.gz", Errc::integrity, "CRC-32");
}

TEST_F(GzipLayer, WrongTrailerLengthIsAnIntegrityError) {
  std::string gz = read_bytes(path("big.tar.gz"));
  gz[gz.size() - 4] = char(gz[gz.size() - 4] ^ 1);
  write_bytes(tmp_ / "isize.tar.gz", gz);
  expect_build_failure(tmp_ / "isize.tar.gz", Errc::integrity, "length");
}

TEST_F(GzipLayer, TruncatedStreamIsAClearError) {
  const std::string gz = read_bytes(path("big.tar.gz"));
  // Cut in the middle, and cut only the trailer (the tar itself is complete).
  for (size_t keep : {gz.size() / 2, gz.size() - 4}) {
    SCOPED_TRACE(keep);
    write_bytes(tmp_ / "cut.tar.gz", gz.substr(0, keep));
    expect_build_failure(tmp_ / "cut.tar.gz", Errc::malformed, "truncated");
  }
}

TEST_F(GzipLayer, ZeroPaddingAfterTheLastMemberIsIgnoredAsByZlib) {
  std::string gz = read_bytes(path("big.tar.gz")) + std::string(1024, '\0');
  write_bytes(tmp_ / "padded.tar.gz", gz);
  auto plain = list_layer(path("big.tar"), GzipInflater::isal);
  ASSERT_TRUE(plain.ok()) << plain.error().describe();
  auto isal = list_layer(tmp_ / "padded.tar.gz", GzipInflater::isal);
  ASSERT_TRUE(isal.ok()) << isal.error().describe();
  auto zlib = list_layer(tmp_ / "padded.tar.gz", GzipInflater::libarchive);
  ASSERT_TRUE(zlib.ok()) << zlib.error().describe();
  EXPECT_EQ(*isal, *plain);
  EXPECT_EQ(*zlib, *plain);
}

size_t thread_count() {
  std::string out;
  EXPECT_EQ(run("ls /proc/" + std::to_string(::getpid()) + "/task | wc -l", &out), 0);
  return std::stoul(out);
}

TEST_F(GzipLayer, ReaderStoppedEarlyLeavesNoThreadBehind) {
  // Readers dropped before, during and after the stream must stop and join the inflating
  // thread: a leak shows in the thread count, a missed wake-up as a hang.
  const size_t before = thread_count();
  for (int i = 0; i < 20; ++i) {
    auto reader = LayerReader::open_file(path("big.tar.gz"));
    ASSERT_TRUE(reader.ok()) << reader.error().describe();
    if (i % 2) {
      auto e = reader->next();
      ASSERT_TRUE(e.ok() && *e) << "no first entry";
    }
  }
  EXPECT_EQ(thread_count(), before) << "threads still running";
}

}  // namespace
}  // namespace flick
