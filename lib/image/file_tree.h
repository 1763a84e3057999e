// The merged tree of an image's layers (the "parse" half of building a rootfs).
//
// Layers are applied in order to an in-memory tree holding metadata only; a regular file
// remembers which (layer, entry) supplies its bytes. Whiteouts, opaque directories,
// replacement and hardlinks are resolved here, and every path is resolved inside the tree, so
// the writer never sees a hostile path.
#pragma once

#include <flick/image.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

struct archive_entry;

namespace flick::image {

class ContentSpool;
class LayerReader;

// A run of a regular file's bytes: `length` bytes at `offset` in the file, stored at
// `spool_offset` in the ContentSpool. Holes are the gaps between runs.
struct DataRun {
  uint64_t offset = 0;
  uint64_t spool_offset = 0;
  uint64_t length = 0;
};

enum class FileType : uint8_t { regular, directory, symlink, char_device, block_device, fifo, socket };

struct Inode {
  FileType type = FileType::regular;
  uint32_t permissions = 0;  // mode & 07777 (setuid, setgid, sticky included)
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  uint64_t size = 0;        // apparent size of a regular file
  uint64_t data_bytes = 0;  // bytes stored in the tar (less than size for sparse entries)
  std::string link_target;  // symlinks
  uint32_t rdev_major = 0, rdev_minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::vector<DataRun> runs;  // regular files: where the bytes are
  uint32_t nlink = 0;  // names in the final tree (filled by FileTree::finish)
  uint32_t ino = 0;    // ext4 inode number, assigned by the writer
};

struct Node {
  std::shared_ptr<Inode> inode;
  std::map<std::string, std::unique_ptr<Node>> children;  // directories only
  uint32_t layer = 0;  // the layer that created this name
  bool is_dir() const { return inode->type == FileType::directory; }
};

class FileTree {
 public:
  // File bytes go to `spool`; without one (parsing only, as when fuzzing) they are skipped.
  FileTree(BuildLimits limits, ContentSpool* spool);

  // Applies every entry of `layer` (the `index`-th, counting from 0 at the bottom).
  Result<void> apply_layer(LayerReader& layer, uint32_t index);
  // Computes link counts; call once after the last layer.
  void finish();

  Node& root() { return *root_; }
  uint64_t entries() const { return entries_; }

 private:
  Result<void> apply_entry(::archive_entry* e, uint32_t layer, LayerReader& reader);
  Result<void> spool_data(Inode& inode, LayerReader& reader, const std::string& path);
  std::unique_ptr<Node> root_;
  BuildLimits limits_;
  ContentSpool* spool_;
  uint64_t entries_ = 0;
  uint64_t total_bytes_ = 0;
};

}  // namespace flick::image
