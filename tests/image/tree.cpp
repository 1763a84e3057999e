#include "tree.h"

#include "image/sha256.h"

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

namespace flick::test {

bool TreeEntry::operator==(const TreeEntry& o) const {
  return type == o.type && mode == o.mode && uid == o.uid && gid == o.gid && size == o.size &&
         sha256 == o.sha256 && link == o.link && major == o.major && minor == o.minor &&
         xattrs == o.xattrs && hardlink_group == o.hardlink_group;
}

static std::string describe(const TreeEntry& e) {
  std::ostringstream s;
  s << e.type << " mode=" << std::oct << e.mode << std::dec << " " << e.uid << ":" << e.gid
    << " size=" << e.size;
  if (!e.sha256.empty()) s << " " << e.sha256.substr(7, 12);
  if (!e.link.empty()) s << " -> " << e.link;
  if (e.type == 'c' || e.type == 'b') s << " dev=" << e.major << "," << e.minor;
  for (const auto& [k, v] : e.xattrs) s << " " << k << "=" << v;
  if (!e.hardlink_group.empty()) s << " linkgroup=" << e.hardlink_group;
  return s.str();
}

std::string diff_trees(const Tree& expected, const Tree& actual) {
  std::string out;
  for (const auto& [p, e] : expected) {
    auto it = actual.find(p);
    if (it == actual.end()) out += "missing " + p + " (" + describe(e) + ")\n";
    else if (!(it->second == e)) out += "differs " + p + ": expected " + describe(e) + ", got " + describe(it->second) + "\n";
  }
  for (const auto& [p, e] : actual)
    if (!expected.count(p)) out += "extra " + p + " (" + describe(e) + ")\n";
  return out;
}

static void group_hardlinks(Tree& t) {
  std::map<uint64_t, std::vector<std::string>> by_ino;
  for (const auto& [p, e] : t)
    if (e.type != 'd') by_ino[e.ino].push_back(p);
  for (auto& [_, paths] : by_ino)
    if (paths.size() > 1)
      for (const auto& p : paths) t[p].hardlink_group = paths.front();  // map order: sorted
}

namespace {

struct Ext4Walk {
  ext2_filsys fs;
  Tree tree;
};

struct Child {
  std::string name;
  ext2_ino_t ino;
};

int collect(ext2_ino_t, int, ext2_dir_entry* d, int, int, char*, void* priv) {
  auto* kids = static_cast<std::vector<Child>*>(priv);
  std::string name(d->name, size_t(ext2fs_dirent_name_len(d)));
  if (name != "." && name != "..") kids->push_back({name, d->inode});
  return 0;
}

int collect_xattr(char* name, char* value, size_t len, void* priv) {
  (*static_cast<std::map<std::string, std::string>*>(priv))[name] = std::string(value, len);
  return 0;
}

std::string read_ext4_data(ext2_filsys fs, ext2_ino_t ino, uint64_t size) {
  ext2_file_t f;
  std::string out;
  if (ext2fs_file_open(fs, ino, 0, &f)) return "<unreadable>";
  std::vector<char> buf(1 << 16);
  while (out.size() < size) {
    unsigned int got = 0;
    if (ext2fs_file_read(f, buf.data(), unsigned(buf.size()), &got) || got == 0) break;
    out.append(buf.data(), got);
  }
  ext2fs_file_close(f);
  return out;
}

void walk_ext4(Ext4Walk& w, ext2_ino_t dir, const std::string& prefix) {
  std::vector<Child> kids;
  ASSERT_EQ(ext2fs_dir_iterate2(w.fs, dir, 0, nullptr, collect, &kids), 0);
  for (const auto& k : kids) {
    const std::string path = prefix + "/" + k.name;
    if (path == "/lost+found") continue;
    ext2_inode_large in{};
    ASSERT_EQ(ext2fs_read_inode_full(w.fs, k.ino, reinterpret_cast<ext2_inode*>(&in), sizeof in), 0);
    TreeEntry e;
    e.ino = k.ino;
    e.mode = in.i_mode & 07777;
    e.uid = inode_uid(in);
    e.gid = inode_gid(in);
    e.allocated = ext2fs_get_stat_i_blocks(w.fs, reinterpret_cast<ext2_inode*>(&in)) * 512;
    ext2_xattr_handle* h = nullptr;
    if (!ext2fs_xattrs_open(w.fs, k.ino, &h)) {
      if (!ext2fs_xattrs_read(h)) ext2fs_xattrs_iterate(h, collect_xattr, &e.xattrs);
      ext2fs_xattrs_close(&h);
    }
    switch (in.i_mode & LINUX_S_IFMT) {
      case LINUX_S_IFREG: {
        e.type = 'f';
        e.size = EXT2_I_SIZE(&in);
        e.sha256 = image::sha256_digest(read_ext4_data(w.fs, k.ino, e.size));
        break;
      }
      case LINUX_S_IFDIR: e.type = 'd'; break;
      case LINUX_S_IFLNK:
        e.type = 'l';
        e.size = EXT2_I_SIZE(&in);
        e.link = ext2fs_is_fast_symlink(reinterpret_cast<ext2_inode*>(&in))
                     ? std::string(reinterpret_cast<const char*>(in.i_block), e.size)
                     : read_ext4_data(w.fs, k.ino, e.size);
        break;
      case LINUX_S_IFCHR:
      case LINUX_S_IFBLK:
        e.type = (in.i_mode & LINUX_S_IFMT) == LINUX_S_IFCHR ? 'c' : 'b';
        if (in.i_block[0]) {
          e.major = (in.i_block[0] >> 8) & 255;
          e.minor = in.i_block[0] & 255;
        } else {
          e.major = (in.i_block[1] & 0xfff00) >> 8;
          e.minor = (in.i_block[1] & 0xff) | ((in.i_block[1] >> 12) & 0xfff00);
        }
        break;
      case LINUX_S_IFIFO: e.type = 'p'; break;
      case LINUX_S_IFSOCK: e.type = 's'; break;
    }
    w.tree[path] = e;
    if (e.type == 'd') walk_ext4(w, k.ino, path);
  }
}

}  // namespace

Tree read_ext4_tree(const std::filesystem::path& image) {
  Ext4Walk w{};
  errcode_t err = ext2fs_open(image.c_str(), 0, 0, 0, unix_io_manager, &w.fs);
  EXPECT_EQ(err, 0) << "opening " << image;
  if (err) return {};
  walk_ext4(w, EXT2_ROOT_INO, "");
  ext2fs_close_free(&w.fs);
  group_hardlinks(w.tree);
  return w.tree;
}

static std::string read_host_file(const std::filesystem::path& p) {
  FILE* f = std::fopen(p.c_str(), "rb");
  std::string out;
  if (!f) return "<unreadable>";
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

Tree read_host_tree(const std::filesystem::path& dir) {
  Tree t;
  for (auto it = std::filesystem::recursive_directory_iterator(dir); it != std::filesystem::recursive_directory_iterator(); ++it) {
    const auto& p = it->path();
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    TreeEntry e;
    e.ino = st.st_ino;
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.allocated = uint64_t(st.st_blocks) * 512;
    if (S_ISREG(st.st_mode)) {
      e.type = 'f';
      e.size = uint64_t(st.st_size);
      e.sha256 = image::sha256_digest(read_host_file(p));
    } else if (S_ISDIR(st.st_mode)) {
      e.type = 'd';
    } else if (S_ISLNK(st.st_mode)) {
      e.type = 'l';
      e.size = uint64_t(st.st_size);
      std::vector<char> buf(8192);
      ssize_t n = ::readlink(p.c_str(), buf.data(), buf.size());
      e.link.assign(buf.data(), size_t(std::max<ssize_t>(n, 0)));
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      e.type = S_ISCHR(st.st_mode) ? 'c' : 'b';
      e.major = major(st.st_rdev);
      e.minor = minor(st.st_rdev);
    } else if (S_ISFIFO(st.st_mode)) {
      e.type = 'p';
    } else if (S_ISSOCK(st.st_mode)) {
      e.type = 's';
    }
    char names[65536];
    ssize_t len = ::llistxattr(p.c_str(), names, sizeof names);
    for (ssize_t off = 0; off < len; off += ssize_t(std::strlen(names + off)) + 1) {
      char value[65536];
      ssize_t vl = ::lgetxattr(p.c_str(), names + off, value, sizeof value);
      if (vl >= 0) e.xattrs[names + off] = std::string(value, size_t(vl));
    }
    t[p.string().substr(dir.string().size())] = e;  // relative() would follow symlinks
  }
  group_hardlinks(t);
  return t;
}

int run(const std::string& cmd, std::string* out) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  std::string text;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  int status = ::pclose(p);
  if (out) *out += text;
  int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (rc != 0 && !out) std::fprintf(stderr, "command failed (%d): %s\n%s\n", rc, cmd.c_str(), text.c_str());
  return rc;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "flick-image-test-XXXXXX").string();
  char* d = ::mkdtemp(tmpl.data());
  path_ = d ? d : "";
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty() && !std::getenv("FLICK_KEEP_TEST_DIRS")) std::filesystem::remove_all(path_, ec);
}

}  // namespace flick::test
