// build_rootfs: merge the layers' metadata into a FileTree (pass 1), size the filesystem
// from it, create every inode, then stream each surviving file's bytes from its layer
// (pass 2). Two passes keep the image exactly as large as its content plus headroom and mean
// nothing is ever deleted inside the ext4 image.
#include <flick/image.h>

#include "image/ext4_writer.h"
#include "image/file_tree.h"
#include "image/layer_reader.h"

#include <archive_entry.h>
#include <ext2fs/ext2fs.h>

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

using ContentMap = std::vector<std::unordered_map<uint64_t, Inode*>>;

Result<void> create_tree(image::Ext4Writer& w, Node& dir, uint32_t dir_ino, ContentMap& content) {
  for (auto& [name, child] : dir.children) {
    Inode& i = *child->inode;
    if (i.ino) {  // a further name of a hardlinked inode
      FLICK_TRY(w.add_link(dir_ino, name, i.ino, i.type));
      continue;
    }
    FLICK_TRY_ASSIGN(i.ino, w.add(dir_ino, name, i));
    if (i.type == FileType::regular && i.content_layer >= 0)
      content[size_t(i.content_layer)][i.content_entry] = &i;
    if (child->is_dir()) FLICK_TRY(create_tree(w, *child, i.ino, content));
  }
  // Linking entries touched the directory: its own attributes go last.
  return w.set_attributes(dir_ino, *dir.inode);
}

Result<void> copy_contents(image::Ext4Writer& w, const std::filesystem::path& layer,
                           std::unordered_map<uint64_t, Inode*>& wanted) {
  if (wanted.empty()) return {};
  FLICK_TRY_ASSIGN(auto reader, image::LayerReader::open_file(layer));
  for (uint64_t index = 0; !wanted.empty(); ++index) {
    FLICK_TRY_ASSIGN(archive_entry* e, reader.next());
    if (!e) return make_error(Errc::malformed, "layer " + layer.string() + " changed while it was read");
    auto it = wanted.find(index);
    if (it == wanted.end()) continue;
    Inode& i = *it->second;
    if (uint64_t(archive_entry_size(e)) != i.size)
      return make_error(Errc::malformed, "layer " + layer.string() + " changed while it was read");
    FLICK_TRY_ASSIGN(auto file, w.open_file(i.ino));
    FLICK_TRY(reader.read_data([&](uint64_t off, std::span<const uint8_t> bytes) -> Result<void> {
      if (off + bytes.size() > i.size)
        return make_error(Errc::malformed, "file data beyond its size in layer " + layer.string());
      return file.write(off, bytes);
    }));
    FLICK_TRY(file.finish(i.size));
    wanted.erase(it);
  }
  return {};
}

Result<BuildStats> build(std::span<const std::filesystem::path> layers,
                         const std::filesystem::path& output, const RootfsOptions& opt) {
  FileTree tree(opt.limits);
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
  ContentMap content(layers.size());
  FLICK_TRY(create_tree(writer, tree.root(), image::kExt4RootIno, content));
  for (size_t i = 0; i < layers.size(); ++i) FLICK_TRY(copy_contents(writer, layers[i], content[i]));
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
