// Test support: a filesystem tree as a comparable value, read from an ext4 image (through
// libext2fs, no mounting) or from a host directory (what `umoci unpack` produced).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace flick::test {

struct TreeEntry {
  char type = '?';  // f d l c b p s
  uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky
  uint32_t uid = 0, gid = 0;
  uint64_t size = 0;   // regular files and symlinks
  std::string sha256;  // regular files
  std::string link;    // symlink target
  uint32_t major = 0, minor = 0;
  std::map<std::string, std::string> xattrs;
  std::string hardlink_group;  // first path (sorted) sharing this inode, if more than one
  uint64_t ino = 0;            // not compared
  uint64_t allocated = 0;      // bytes allocated on disk; not compared
  bool operator==(const TreeEntry& o) const;
};

using Tree = std::map<std::string, TreeEntry>;

// Reads every entry of an ext4 image except /lost+found; fails the current test on error.
Tree read_ext4_tree(const std::filesystem::path& image);
Tree read_host_tree(const std::filesystem::path& dir);

// A readable list of differences ("" when equal).
std::string diff_trees(const Tree& expected, const Tree& actual);

// Runs a shell command; returns its exit status and appends its output to `out`.
int run(const std::string& cmd, std::string* out = nullptr);

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& s) const { return path_ / s; }

 private:
  std::filesystem::path path_;
};

}  // namespace flick::test
