// Writes a new ext4 filesystem into an image file with libext2fs (the "execute" half of
// building a rootfs). It knows nothing about tar or layers: it is handed inode metadata, names
// and file bytes, in an order where parents come before children.
#pragma once

#include "image/file_tree.h"

#include <flick/result.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

struct struct_ext2_filsys;
struct ext2_file;

namespace flick::image {

inline constexpr uint32_t kExt4BlockSize = 4096;
inline constexpr uint32_t kExt4InodeSize = 256;
inline constexpr uint32_t kExt4RootIno = 2;

class Ext4Writer {
 public:
  // Creates (or truncates) `path` as a sparse file of `size_bytes` and formats it with room
  // for at least `inodes` inodes and a journal.
  static Result<Ext4Writer> create(const std::filesystem::path& path, uint64_t size_bytes,
                                   uint64_t inodes);
  Ext4Writer(Ext4Writer&&) noexcept;
  Ext4Writer& operator=(Ext4Writer&&) = delete;
  ~Ext4Writer();

  // Creates `meta` as `name` in directory `parent`; returns its inode number. Regular files
  // start empty (see FileData).
  Result<uint32_t> add(uint32_t parent, const std::string& name, const Inode& meta);
  // Another name for an existing non-directory inode.
  Result<void> add_link(uint32_t parent, const std::string& name, uint32_t ino, FileType type);
  // Sets mode bits, owner and times of an existing inode (the root, and directories once
  // their entries are in, since linking touches them).
  Result<void> set_attributes(uint32_t ino, const Inode& meta);

  // Writes a regular file's bytes in increasing offsets; all-zero blocks stay holes.
  class FileData {
   public:
    Result<void> write(uint64_t offset, std::span<const uint8_t> bytes);
    Result<void> finish(uint64_t size);
    FileData(FileData&&) noexcept;
    ~FileData();

   private:
    friend class Ext4Writer;
    FileData(ext2_file* f, uint32_t ino) : file_(f), ino_(ino) {}
    Result<void> write_run(uint64_t offset, const uint8_t* p, size_t len);
    ext2_file* file_;
    uint32_t ino_;
    uint64_t pos_ = 0;
  };
  Result<FileData> open_file(uint32_t ino);

  // The fast path for a file's bytes from offset 0: sets its size, then writes `data` (a
  // whole number of blocks, starting at logical block `first_block`) straight to allocated
  // extents. All-zero blocks stay holes.
  Result<void> set_size(uint32_t ino, uint64_t size);
  Result<void> write_blocks(uint32_t ino, uint64_t first_block, std::span<const uint8_t> data);

  // Adds lost+found (unless the tree has one) and flushes everything.
  Result<void> finish(bool have_lost_found);

  uint64_t free_blocks() const;

 private:
  explicit Ext4Writer(struct_ext2_filsys* fs, std::filesystem::path path);
  Result<void> link(uint32_t parent, const std::string& name, uint32_t ino, int filetype);
  Result<void> xattrs(uint32_t ino, const Inode& meta);
  struct_ext2_filsys* fs_;
  std::filesystem::path path_;
};

}  // namespace flick::image
