#include "image/ext4_writer.h"

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <ext2fs/ext3_extents.h>
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstring>
#include <ctime>

namespace flick::image {

namespace {

Error ext2_error(const std::string& what, errcode_t err) {
  return make_error(err == EXT2_ET_BLOCK_ALLOC_FAIL || err == EXT2_ET_INODE_ALLOC_FAIL ||
                            err == EXT2_ET_DIR_NO_SPACE_FOR_CSUM
                        ? Errc::limit
                        : Errc::io,
                    what + ": " + error_message(err));
}

uint16_t mode_bits(FileType t) {
  switch (t) {
    case FileType::regular: return LINUX_S_IFREG;
    case FileType::directory: return LINUX_S_IFDIR;
    case FileType::symlink: return LINUX_S_IFLNK;
    case FileType::char_device: return LINUX_S_IFCHR;
    case FileType::block_device: return LINUX_S_IFBLK;
    case FileType::fifo: return LINUX_S_IFIFO;
    case FileType::socket: return LINUX_S_IFSOCK;
  }
  return 0;
}

int dirent_type(FileType t) {
  switch (t) {
    case FileType::regular: return EXT2_FT_REG_FILE;
    case FileType::directory: return EXT2_FT_DIR;
    case FileType::symlink: return EXT2_FT_SYMLINK;
    case FileType::char_device: return EXT2_FT_CHRDEV;
    case FileType::block_device: return EXT2_FT_BLKDEV;
    case FileType::fifo: return EXT2_FT_FIFO;
    case FileType::socket: return EXT2_FT_SOCK;
  }
  return EXT2_FT_UNKNOWN;
}

void set_owner_times(ext2_inode_large& in, const Inode& meta) {
  in.i_uid = uint16_t(meta.uid);
  in.osd2.linux2.l_i_uid_high = uint16_t(meta.uid >> 16);
  in.i_gid = uint16_t(meta.gid);
  in.osd2.linux2.l_i_gid_high = uint16_t(meta.gid >> 16);
  in.i_atime = in.i_ctime = in.i_mtime = uint32_t(meta.mtime);
  if (in.i_extra_isize >= 24) {  // nanoseconds and epoch bits 32-33 (ext4 "extra" times)
    uint32_t extra = (meta.mtime_nsec << 2) | (uint32_t(uint64_t(meta.mtime) >> 32) & 3);
    in.i_atime_extra = in.i_ctime_extra = in.i_mtime_extra = extra;
    in.i_crtime = uint32_t(meta.mtime);
    in.i_crtime_extra = extra;
  }
}

bool all_zero(const uint8_t* p, size_t n) {
  static const uint8_t kZero[kExt4BlockSize] = {};
  return std::memcmp(p, kZero, n) == 0;
}

}  // namespace

Ext4Writer::Ext4Writer(struct_ext2_filsys* fs, std::filesystem::path path)
    : fs_(fs), path_(std::move(path)) {}

Ext4Writer::Ext4Writer(Ext4Writer&& o) noexcept : fs_(o.fs_), path_(std::move(o.path_)) {
  o.fs_ = nullptr;
}

Ext4Writer::~Ext4Writer() {
  if (fs_) ext2fs_free(fs_);  // abandoned: the caller removes the half-written file
}

Result<Ext4Writer> Ext4Writer::create(const std::filesystem::path& path, uint64_t size_bytes,
                                      uint64_t inodes) {
  const uint64_t blocks = size_bytes / kExt4BlockSize;
  if (blocks < 4096) return make_error(Errc::invalid_argument, "ext4 image of " + std::to_string(size_bytes) + " bytes is below the 16 MiB minimum");
  {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return sys_error("creating ext4 image " + path.string(), errno);
    // A fresh sparse file reads as zeros: inode tables and the journal need no zeroing.
    int r = ::ftruncate(fd, off_t(blocks * kExt4BlockSize));
    int err = errno;
    ::close(fd);
    if (r < 0) return sys_error("sizing ext4 image " + path.string(), err);
  }

  ext2_super_block param{};
  ext2fs_blocks_count_set(&param, blocks);
  param.s_log_block_size = 2;  // 1024 << 2
  param.s_rev_level = EXT2_DYNAMIC_REV;
  param.s_inode_size = kExt4InodeSize;
  param.s_inodes_count = uint32_t(std::min<uint64_t>(inodes, UINT32_MAX - 65536));
  param.s_log_groups_per_flex = 4;
  param.s_min_extra_isize = param.s_want_extra_isize = 32;
  param.s_feature_compat = EXT2_FEATURE_COMPAT_EXT_ATTR | EXT2_FEATURE_COMPAT_DIR_INDEX;
  param.s_feature_incompat = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT3_FEATURE_INCOMPAT_EXTENTS |
                             EXT4_FEATURE_INCOMPAT_FLEX_BG;
  param.s_feature_ro_compat = EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER |
                              EXT2_FEATURE_RO_COMPAT_LARGE_FILE | EXT4_FEATURE_RO_COMPAT_HUGE_FILE |
                              EXT4_FEATURE_RO_COMPAT_DIR_NLINK | EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE |
                              EXT4_FEATURE_RO_COMPAT_METADATA_CSUM;
  if (blocks > UINT32_MAX) param.s_feature_incompat |= EXT4_FEATURE_INCOMPAT_64BIT;

  ext2_filsys fs = nullptr;
  errcode_t err = ext2fs_initialize(path.c_str(), EXT2_FLAG_64BITS, &param, unix_io_manager, &fs);
  if (err) return ext2_error("formatting " + path.string(), err);
  Ext4Writer w(fs, path);

  ext2_super_block* sb = fs->super;
  if (getrandom(sb->s_uuid, sizeof sb->s_uuid, 0) != sizeof sb->s_uuid ||
      getrandom(sb->s_hash_seed, sizeof sb->s_hash_seed, 0) != sizeof sb->s_hash_seed)
    return sys_error("generating a filesystem UUID", errno);
  sb->s_def_hash_version = EXT2_HASH_HALF_MD4;
  sb->s_flags |= (char(-1) < 0) ? EXT2_FLAGS_SIGNED_HASH : EXT2_FLAGS_UNSIGNED_HASH;
  sb->s_max_mnt_count = uint16_t(-1);
  sb->s_checksum_type = EXT2_CRC32C_CHKSUM;
  sb->s_mkfs_time = sb->s_wtime = uint32_t(time(nullptr));
  ext2fs_init_csum_seed(fs);

  if ((err = ext2fs_allocate_tables(fs))) return ext2_error("allocating ext4 group tables", err);
  for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
    ext2fs_bg_flags_set(fs, g, EXT2_BG_INODE_ZEROED);
    ext2fs_group_desc_csum_set(fs, g);
  }
  if ((err = ext2fs_mkdir(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, nullptr)))
    return ext2_error("creating the root directory", err);
  // Inodes below s_first_ino are reserved (bad blocks, journal, resize, ...).
  ext2fs_inode_alloc_stats2(fs, EXT2_BAD_INO, +1, 0);
  for (ext2_ino_t i = EXT2_ROOT_INO + 1; i < EXT2_FIRST_INODE(fs->super); ++i)
    ext2fs_inode_alloc_stats2(fs, i, +1, 0);
  ext2fs_mark_ib_dirty(fs);

  ext2fs_journal_params jp{};
  if ((err = ext2fs_get_journal_params(&jp, fs))) return ext2_error("sizing the journal", err);
  if ((err = ext2fs_add_journal_inode3(fs, &jp, ~0ULL,
                                       EXT2_MKJOURNAL_LAZYINIT | EXT2_MKJOURNAL_NO_MNT_CHECK)))
    return ext2_error("adding the journal", err);
  return w;
}

Result<void> Ext4Writer::link(uint32_t parent, const std::string& name, uint32_t ino, int filetype) {
  errcode_t err = ext2fs_link(fs_, parent, name.c_str(), ino, filetype);
  if (err == EXT2_ET_DIR_NO_SPACE) {
    if ((err = ext2fs_expand_dir(fs_, parent)))
      return ext2_error("growing a directory for '" + name + "'", err);
    err = ext2fs_link(fs_, parent, name.c_str(), ino, filetype);
  }
  if (err) return ext2_error("linking '" + name + "'", err);
  return {};
}

Result<void> Ext4Writer::xattrs(uint32_t ino, const Inode& meta) {
  if (meta.xattrs.empty()) return {};
  ext2_xattr_handle* h = nullptr;
  errcode_t err = ext2fs_xattrs_open(fs_, ino, &h);
  if (!err) err = ext2fs_xattrs_read(h);
  for (size_t i = 0; !err && i < meta.xattrs.size(); ++i)
    err = ext2fs_xattr_set(h, meta.xattrs[i].first.c_str(), meta.xattrs[i].second.data(),
                           meta.xattrs[i].second.size());
  errcode_t cerr = h ? ext2fs_xattrs_close(&h) : 0;
  if (err || cerr) return ext2_error("writing extended attributes of inode " + std::to_string(ino), err ? err : cerr);
  return {};
}

Result<uint32_t> Ext4Writer::add(uint32_t parent, const std::string& name, const Inode& meta) {
  ext2_ino_t ino = 0;
  const uint16_t mode = uint16_t(mode_bits(meta.type) | (meta.permissions & 07777));
  errcode_t err = ext2fs_new_inode(fs_, parent, mode, nullptr, &ino);
  if (err) return ext2_error("allocating an inode for '" + name + "'", err);

  if (meta.type == FileType::directory) {
    if ((err = ext2fs_mkdir(fs_, parent, ino, nullptr)))
      return ext2_error("creating directory '" + name + "'", err);
    FLICK_TRY(set_attributes(ino, meta));
  } else if (meta.type == FileType::symlink) {
    std::string target = meta.link_target;
    if ((err = ext2fs_symlink(fs_, parent, ino, nullptr, target.data())))
      return ext2_error("creating symlink '" + name + "'", err);
    FLICK_TRY(set_attributes(ino, meta));
  } else {
    ext2_inode_large in{};
    in.i_extra_isize = sizeof(ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
    in.i_mode = mode;
    in.i_links_count = uint16_t(meta.nlink ? meta.nlink : 1);
    set_owner_times(in, meta);
    if (meta.type == FileType::regular) {
      auto* eh = reinterpret_cast<ext3_extent_header*>(in.i_block);
      eh->eh_magic = ext2fs_cpu_to_le16(EXT3_EXT_MAGIC);
      eh->eh_max = ext2fs_cpu_to_le16((sizeof in.i_block - sizeof *eh) / sizeof(ext3_extent));
      in.i_flags |= EXT4_EXTENTS_FL;
    } else if (meta.type == FileType::char_device || meta.type == FileType::block_device) {
      const uint32_t ma = meta.rdev_major, mi = meta.rdev_minor;
      if (ma < 256 && mi < 256) {  // old 16-bit encoding, as the kernel's old_encode_dev
        in.i_block[0] = ma * 256 + mi;
      } else {
        in.i_block[1] = (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
      }
    }
    if ((err = ext2fs_write_inode_full(fs_, ino, reinterpret_cast<ext2_inode*>(&in), sizeof in)))
      return ext2_error("writing inode of '" + name + "'", err);
    ext2fs_inode_alloc_stats2(fs_, ino, +1, 0);
  }
  FLICK_TRY(link(parent, name, ino, dirent_type(meta.type)));
  FLICK_TRY(xattrs(ino, meta));
  return uint32_t(ino);
}

Result<void> Ext4Writer::add_link(uint32_t parent, const std::string& name, uint32_t ino, FileType type) {
  return link(parent, name, ino, dirent_type(type));
}

Result<void> Ext4Writer::set_attributes(uint32_t ino, const Inode& meta) {
  ext2_inode_large in{};
  errcode_t err = ext2fs_read_inode_full(fs_, ino, reinterpret_cast<ext2_inode*>(&in), sizeof in);
  if (err) return ext2_error("reading inode " + std::to_string(ino), err);
  in.i_mode = uint16_t((in.i_mode & LINUX_S_IFMT) | (meta.permissions & 07777));
  // ext2fs_symlink starts a symlink at one link; a hardlinked symlink has more.
  if (meta.type == FileType::symlink && meta.nlink > 1) in.i_links_count = uint16_t(meta.nlink);
  set_owner_times(in, meta);
  if ((err = ext2fs_write_inode_full(fs_, ino, reinterpret_cast<ext2_inode*>(&in), sizeof in)))
    return ext2_error("writing inode " + std::to_string(ino), err);
  if (ino == kExt4RootIno) FLICK_TRY(xattrs(ino, meta));
  return {};
}

Result<Ext4Writer::FileData> Ext4Writer::open_file(uint32_t ino) {
  ext2_file_t f = nullptr;
  errcode_t err = ext2fs_file_open(fs_, ino, EXT2_FILE_WRITE, &f);
  if (err) return ext2_error("opening inode " + std::to_string(ino) + " for writing", err);
  return FileData(f, ino);
}

Result<void> Ext4Writer::set_size(uint32_t ino, uint64_t size) {
  ext2_inode_large in{};
  errcode_t err = ext2fs_read_inode_full(fs_, ino, reinterpret_cast<ext2_inode*>(&in), sizeof in);
  if (!err) err = ext2fs_inode_size_set(fs_, reinterpret_cast<ext2_inode*>(&in), size);
  if (!err) err = ext2fs_write_inode_full(fs_, ino, reinterpret_cast<ext2_inode*>(&in), sizeof in);
  if (err) return ext2_error("setting the size of inode " + std::to_string(ino), err);
  return {};
}

Result<void> Ext4Writer::write_blocks(uint32_t ino, uint64_t first_block, std::span<const uint8_t> data) {
  const uint64_t blocks = data.size() / kExt4BlockSize;
  auto zero = [&](uint64_t b) { return all_zero(data.data() + b * kExt4BlockSize, kExt4BlockSize); };
  for (uint64_t b = 0; b < blocks;) {
    if (zero(b)) {
      ++b;
      continue;
    }
    uint64_t e = b + 1;
    while (e < blocks && !zero(e)) ++e;
    // Allocate the run as initialized extents, then write each extent with one I/O.
    errcode_t err = ext2fs_fallocate(fs_, EXT2_FALLOCATE_FORCE_INIT, ino, nullptr, ~0ULL, first_block + b, e - b);
    if (err) return ext2_error("allocating blocks of inode " + std::to_string(ino), err);
    ext2_extent_handle_t h = nullptr;
    if ((err = ext2fs_extent_open(fs_, ino, &h))) return ext2_error("reading extents of inode " + std::to_string(ino), err);
    for (uint64_t l = b; l < e && !err;) {
      ext2fs_extent ex{};
      err = ext2fs_extent_goto(h, first_block + l);
      if (!err) err = ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &ex);
      if (err) break;
      const uint64_t off = first_block + l - ex.e_lblk;
      const uint64_t n = std::min<uint64_t>(ex.e_len - off, e - l);
      err = io_channel_write_blk64(fs_->io, ex.e_pblk + off, int(n), data.data() + l * kExt4BlockSize);
      l += n;
    }
    ext2fs_extent_free(h);
    if (err) return ext2_error("writing blocks of inode " + std::to_string(ino), err);
    b = e;
  }
  return {};
}

Ext4Writer::FileData::FileData(FileData&& o) noexcept : file_(o.file_), ino_(o.ino_), pos_(o.pos_) {
  o.file_ = nullptr;
}

Ext4Writer::FileData::~FileData() {
  if (file_) ext2fs_file_close(file_);
}

Result<void> Ext4Writer::FileData::write_run(uint64_t offset, const uint8_t* p, size_t len) {
  errcode_t err = 0;
  if (offset != pos_ && (err = ext2fs_file_llseek(file_, offset, EXT2_SEEK_SET, nullptr)))
    return ext2_error("seeking in inode " + std::to_string(ino_), err);
  while (len) {
    unsigned int done = 0;
    unsigned int chunk = unsigned(std::min<size_t>(len, 1u << 30));
    if ((err = ext2fs_file_write(file_, p, chunk, &done)))
      return ext2_error("writing inode " + std::to_string(ino_), err);
    p += done;
    len -= done;
    offset += done;
  }
  pos_ = offset;
  return {};
}

Result<void> Ext4Writer::FileData::write(uint64_t offset, std::span<const uint8_t> bytes) {
  // Write runs of non-zero blocks; a whole block of zeros is left as a hole.
  const uint8_t* p = bytes.data();
  uint64_t off = offset;
  const uint64_t end = offset + bytes.size();
  uint64_t run_start = off;
  while (off < end) {
    uint64_t block_end = std::min<uint64_t>((off / kExt4BlockSize + 1) * kExt4BlockSize, end);
    bool full_block = off % kExt4BlockSize == 0 && block_end - off == kExt4BlockSize;
    if (full_block && all_zero(p + (off - offset), kExt4BlockSize)) {
      if (off > run_start) FLICK_TRY(write_run(run_start, p + (run_start - offset), off - run_start));
      run_start = block_end;
    }
    off = block_end;
  }
  if (end > run_start) FLICK_TRY(write_run(run_start, p + (run_start - offset), end - run_start));
  return {};
}

Result<void> Ext4Writer::FileData::finish(uint64_t size) {
  errcode_t err = ext2fs_file_set_size2(file_, size);
  if (!err) err = ext2fs_file_close(file_);
  file_ = nullptr;
  if (err) return ext2_error("finishing inode " + std::to_string(ino_), err);
  return {};
}

Result<void> Ext4Writer::finish(bool have_lost_found) {
  errcode_t err = 0;
  if (!have_lost_found && (err = ext2fs_mkdir(fs_, EXT2_ROOT_INO, 0, "lost+found")))
    return ext2_error("creating lost+found", err);
  fs_->super->s_wtime = uint32_t(time(nullptr));
  ext2_filsys fs = fs_;
  fs_ = nullptr;
  if ((err = ext2fs_close_free(&fs))) return ext2_error("writing out " + path_.string(), err);
  return {};
}

uint64_t Ext4Writer::free_blocks() const { return ext2fs_free_blocks_count(fs_->super); }

}  // namespace flick::image
