// build_rootfs: decompress each layer once, merging its metadata into a FileTree and its
// file bytes into a ContentSpool (pass 1); size the filesystem from the merged tree; then
// create every inode and copy each surviving file's bytes from the spool (pass 2). Sizing
// from the final tree keeps the image as large as its content plus headroom, and nothing is
// ever deleted inside the ext4 image.
#include <flick/image.h>

#include "image/content_spool.h"
#include "image/ext4_writer.h"
#include "image/file_tree.h"
#include "image/layer_reader.h"

#include <ext2fs/ext2fs.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

namespace flick {

namespace {

using image::FileTree;
using image::FileType;
using image::Inode;
using image::Node;
using image::kExt4BlockSize;

struct Usage {
  uint64_t blocks = 0;
  uint64_t inodes = 0;
  uint64_t content = 0;
};

uint64_t div_ceil(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

void measure(const Node& n, Usage& u, std::unordered_set<const Inode*>& seen) {
  const Inode& i = *n.inode;
  if (seen.insert(&i).second) {
    ++u.inodes;
    if (i.type == FileType::regular) {
      uint64_t data = div_ceil(i.data_bytes, kExt4BlockSize);
      u.blocks += data + (data > 4 ? data / 256 + 1 : 0);  // extent tree blocks
      u.content += i.size;
    } else if (i.type == FileType::symlink && i.link_target.size() >= 60) {
      u.blocks += 1;  // slow symlink: target in a data block
    }
    size_t xattr_bytes = 0;
    for (const auto& [k, v] : i.xattrs) xattr_bytes += k.size() + v.size() + 20;
    if (xattr_bytes > 96) u.blocks += div_ceil(xattr_bytes, kExt4BlockSize);
  }
  if (n.is_dir()) {
    uint64_t bytes = 24;  // "." and ".."
    for (const auto& [name, c] : n.children) {
      bytes += 8 + (name.size() + 3) / 4 * 4;
      measure(*c, u, seen);
    }
    u.blocks += div_ceil(bytes, kExt4BlockSize - 12);  // 12: checksum tail of each block
  }
}

struct Geometry {
  uint64_t bytes = 0;
  uint64_t inodes = 0;
};

Result<Geometry> plan(const Usage& u, const RootfsOptions& opt) {
  const uint64_t headroom = opt.size_bytes ? 0 : opt.headroom_bytes;
  const uint64_t used_inodes = u.inodes + 16;  // reserved inodes and lost+found
  uint64_t inodes = used_inodes + used_inodes / 8 + headroom / 16384 + 64;
  uint64_t data = u.blocks + u.blocks / 64 + 64;
  auto total_for = [&](uint64_t inode_count) {
    uint64_t itable = div_ceil(inode_count * image::kExt4InodeSize, kExt4BlockSize);
    uint64_t base = data + itable + div_ceil(headroom, kExt4BlockSize);
    base += div_ceil(base, 32768) * 4 + 256;  // bitmaps, descriptors, superblock backups
    int journal = ext2fs_default_journal_size(base);
    return base + uint64_t(journal > 0 ? journal : 1024);
  };
  uint64_t blocks = total_for(inodes);
  if (opt.size_bytes) {
    uint64_t want = opt.size_bytes / kExt4BlockSize;
    if (want < total_for(used_inodes))
      return make_error(Errc::limit, "an image of " + std::to_string(opt.size_bytes) +
                                         " bytes is too small for the content (needs about " +
                                         std::to_string(total_for(used_inodes) * kExt4BlockSize) +
                                         " bytes)");
    blocks = want;
    inodes = std::max(inodes, blocks * kExt4BlockSize / 16384);
  }
  blocks = std::max<uint64_t>(div_ceil(blocks, 256) * 256, 4096);  // whole MiB, at least 16 MiB
  return Geometry{blocks * kExt4BlockSize, inodes};
}

Result<void> write_content(image::Ext4Writer& w, image::ContentSpool& spool, const Inode& i) {
  std::vector<uint8_t> buf;
  constexpr uint64_t kChunk = 1 << 20;  // a whole number of blocks
  if (i.runs.size() == 1 && i.runs[0].offset == 0) {  // the common case: no holes in the tar
    const auto& run = i.runs[0];
    FLICK_TRY(w.set_size(i.ino, i.size));
    for (uint64_t done = 0; done < run.length; done += kChunk) {
      const size_t n = size_t(std::min(run.length - done, kChunk));
      // Whole blocks; only the tail past the file's end needs zeros (the rest is read over).
      buf.resize(div_ceil(n, kExt4BlockSize) * kExt4BlockSize);
      std::fill(buf.begin() + std::ptrdiff_t(n), buf.end(), 0);
      FLICK_TRY(spool.read(run.spool_offset + done, {buf.data(), n}));
      FLICK_TRY(w.write_blocks(i.ino, done / kExt4BlockSize, buf));
    }
    return {};
  }
  FLICK_TRY_ASSIGN(auto file, w.open_file(i.ino));
  for (const auto& run : i.runs) {
    for (uint64_t done = 0; done < run.length;) {
      const size_t n = size_t(std::min<uint64_t>(run.length - done, 1 << 20));
      buf.resize(n);
      FLICK_TRY(spool.read(run.spool_offset + done, buf));
      FLICK_TRY(file.write(run.offset + done, buf));
      done += n;
    }
  }
  return file.finish(i.size);
}

Result<void> create_tree(image::Ext4Writer& w, image::ContentSpool& spool, Node& dir, uint32_t dir_ino) {
  for (auto& [name, child] : dir.children) {
    Inode& i = *child->inode;
    if (i.ino) {  // a further name of a hardlinked inode
      FLICK_TRY(w.add_link(dir_ino, name, i.ino, i.type));
      continue;
    }
    FLICK_TRY_ASSIGN(i.ino, w.add(dir_ino, name, i));
    if (i.type == FileType::regular && i.size) FLICK_TRY(write_content(w, spool, i));
    if (child->is_dir()) FLICK_TRY(create_tree(w, spool, *child, i.ino));
  }
  // Linking entries touched the directory: its own attributes go last.
  return w.set_attributes(dir_ino, *dir.inode);
}

Result<BuildStats> build(std::span<const std::filesystem::path> layers,
                         const std::filesystem::path& output, const RootfsOptions& opt) {
  auto dir = output.parent_path().empty() ? std::filesystem::path(".") : output.parent_path();
  FLICK_TRY_ASSIGN(auto spool, image::ContentSpool::create(dir));
  FileTree tree(opt.limits, &spool);
  for (size_t i = 0; i < layers.size(); ++i) {
    FLICK_TRY_ASSIGN(auto reader, image::LayerReader::open_file(layers[i]));
    FLICK_TRY(tree.apply_layer(reader, uint32_t(i)));
  }
  tree.finish();

  Usage usage;
  std::unordered_set<const Inode*> seen;
  measure(tree.root(), usage, seen);
  FLICK_TRY_ASSIGN(Geometry geo, plan(usage, opt));

  FLICK_TRY_ASSIGN(auto writer, image::Ext4Writer::create(output, geo.bytes, geo.inodes));
  tree.root().inode->ino = image::kExt4RootIno;
  FLICK_TRY(create_tree(writer, spool, tree.root(), image::kExt4RootIno));
  FLICK_TRY(writer.finish(tree.root().children.count("lost+found") != 0));

  BuildStats stats;
  stats.image_bytes = geo.bytes;
  stats.entries = tree.entries();
  stats.inodes = usage.inodes;
  stats.content_bytes = usage.content;
  return stats;
}

}  // namespace

Result<BuildStats> build_rootfs(std::span<const std::filesystem::path> layers,
                                const std::filesystem::path& output, const RootfsOptions& options) {
  auto r = build(layers, output, options);
  if (!r.ok()) {
    std::error_code ec;
    std::filesystem::remove(output, ec);
    return std::move(r).error().with_context("building rootfs " + output.string());
  }
  return r;
}

}  // namespace flick
