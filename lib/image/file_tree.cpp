#include "image/file_tree.h"

#include "image/content_spool.h"
#include "image/layer_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <deque>

namespace flick::image {

namespace {

constexpr int kMaxSymlinkHops = 40;  // as Linux's MAXSYMLINKS
constexpr size_t kMaxNameLength = 255;  // ext4 directory entry name limit

std::shared_ptr<Inode> new_directory(uint32_t permissions) {
  auto i = std::make_shared<Inode>();
  i->type = FileType::directory;
  i->permissions = permissions;
  return i;
}

Error entry_error(Errc code, const std::string& where, const std::string& path, const std::string& why) {
  return make_error(code, "applying entry '" + path + "' of " + where + ": " + why);
}

// Splits an entry path into components; rejects anything that could name a place outside
// the image ("..", absolute paths) rather than guessing what the layer meant.
Result<std::vector<std::string>> split_entry_path(const std::string& path, const std::string& where,
                                                  const BuildLimits& limits) {
  if (path.size() > limits.max_path_length)
    return entry_error(Errc::limit, where, path.substr(0, 64) + "...",
                       "path longer than the limit of " + std::to_string(limits.max_path_length) + " bytes");
  if (!path.empty() && path.front() == '/')
    return entry_error(Errc::malformed, where, path, "absolute paths are not allowed in a layer");
  std::vector<std::string> comps;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    std::string c = path.substr(start, slash - start);
    start = slash + 1;
    if (c.empty() || c == ".") continue;
    if (c == "..") return entry_error(Errc::malformed, where, path, "'..' components are not allowed in a layer");
    if (c.size() > kMaxNameLength)
      return entry_error(Errc::limit, where, path, "a component is longer than 255 bytes");
    comps.push_back(std::move(c));
  }
  return comps;
}

std::deque<std::string> split_target(const std::string& target) {
  std::deque<std::string> out;
  size_t start = 0;
  while (start <= target.size()) {
    size_t slash = target.find('/', start);
    if (slash == std::string::npos) slash = target.size();
    if (slash > start) out.push_back(target.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

// Resolves `todo` as a chain of directories starting at `stack` (root first), following
// symlinks inside the tree. ".." never climbs above the root, and an absolute symlink target
// restarts at the image root: nothing resolves outside the image. Creates missing
// directories when `create` is set; otherwise returns nullptr for a missing one.
Result<std::vector<Node*>> walk_dirs(std::vector<Node*> stack, std::deque<std::string> todo,
                                     uint32_t layer, bool create, const std::string& where,
                                     const std::string& path) {
  int hops = 0;
  while (!todo.empty()) {
    std::string c = std::move(todo.front());
    todo.pop_front();
    if (c == ".") continue;
    if (c == "..") {
      if (stack.size() > 1) stack.pop_back();
      continue;
    }
    Node* dir = stack.back();
    auto it = dir->children.find(c);
    if (it == dir->children.end()) {
      if (!create) return std::vector<Node*>{};
      auto n = std::make_unique<Node>();
      n->inode = new_directory(0755);
      n->layer = layer;
      it = dir->children.emplace(c, std::move(n)).first;
    }
    Node* n = it->second.get();
    if (n->inode->type == FileType::symlink) {
      if (++hops > kMaxSymlinkHops)
        return entry_error(Errc::malformed, where, path, "too many levels of symbolic links");
      const std::string& t = n->inode->link_target;
      if (!t.empty() && t.front() == '/') stack.resize(1);
      auto tc = split_target(t);
      todo.insert(todo.begin(), tc.begin(), tc.end());
      continue;
    }
    if (!n->is_dir())
      return entry_error(Errc::malformed, where, path, "parent component '" + c + "' is not a directory");
    stack.push_back(n);
  }
  return stack;
}

// Opaque directory: hide everything lower layers put under `dir` (OCI image spec, layer.md
// "Opaque Whiteout"); names this layer re-created stay, minus their lower-layer contents.
void hide_lower(Node& dir, uint32_t layer) {
  for (auto it = dir.children.begin(); it != dir.children.end();) {
    if (it->second->layer < layer) {
      it = dir.children.erase(it);
      continue;
    }
    if (it->second->is_dir()) hide_lower(*it->second, layer);
    ++it;
  }
}

}  // namespace

FileTree::FileTree(BuildLimits limits, ContentSpool* spool)
    : root_(std::make_unique<Node>()), limits_(limits), spool_(spool) {
  root_->inode = new_directory(0755);
}

Result<void> FileTree::apply_layer(LayerReader& layer, uint32_t index) {
  while (true) {
    FLICK_TRY_ASSIGN(archive_entry* e, layer.next());
    if (!e) return {};
    if (++entries_ > limits_.max_entries)
      return make_error(Errc::limit, "layer " + layer.name() + " exceeds the limit of " +
                                         std::to_string(limits_.max_entries) + " entries");
    FLICK_TRY(apply_entry(e, index, layer));
  }
}

Result<void> FileTree::spool_data(Inode& i, LayerReader& reader, const std::string& path) {
  if (!spool_) return {};
  return reader.read_data([&](uint64_t off, std::span<const uint8_t> bytes) -> Result<void> {
    if (off + bytes.size() > i.size)
      return entry_error(Errc::malformed, reader.name(), path, "file data beyond its size");
    FLICK_TRY_ASSIGN(uint64_t at, spool_->append(bytes));
    if (!i.runs.empty()) {
      DataRun& last = i.runs.back();
      if (last.offset + last.length == off && last.spool_offset + last.length == at) {
        last.length += bytes.size();
        return {};
      }
    }
    i.runs.push_back({off, at, bytes.size()});
    return {};
  });
}

Result<void> FileTree::apply_entry(archive_entry* e, uint32_t layer, LayerReader& reader) {
  const std::string& where = reader.name();
  const char* raw = archive_entry_pathname(e);
  if (!raw) return make_error(Errc::malformed, "an entry of " + where + " has no path");
  const std::string path = raw;
  FLICK_TRY_ASSIGN(auto comps, split_entry_path(path, where, limits_));

  if (comps.empty()) {  // "./": metadata of the root directory
    if (archive_entry_filetype(e) != AE_IFDIR)
      return entry_error(Errc::malformed, where, path, "the root can only be a directory");
    Inode& r = *root_->inode;
    r.permissions = archive_entry_perm(e) & 07777;
    r.uid = uint32_t(archive_entry_uid(e));
    r.gid = uint32_t(archive_entry_gid(e));
    r.mtime = archive_entry_mtime(e);
    return {};
  }

  std::string name = comps.back();
  comps.pop_back();
  const bool is_whiteout = name.rfind(".wh.", 0) == 0;
  FLICK_TRY_ASSIGN(auto stack, walk_dirs({root_.get()}, {comps.begin(), comps.end()}, layer,
                                         !is_whiteout, where, path));
  if (is_whiteout) {
    if (stack.empty()) return {};  // nothing below to hide
    Node& parent = *stack.back();
    if (name == ".wh..wh..opq") {
      hide_lower(parent, layer);
    } else if (name.rfind(".wh..wh.", 0) != 0) {  // other .wh..wh. names are aufs metadata
      auto it = parent.children.find(name.substr(4));
      if (it != parent.children.end() && it->second->layer < layer) parent.children.erase(it);
    }
    return {};
  }
  Node& parent = *stack.back();

  if (const char* hl = archive_entry_hardlink(e)) {
    const std::string target_path = hl;
    FLICK_TRY_ASSIGN(auto tcomps, split_entry_path(target_path, where, limits_));
    if (tcomps.empty())
      return entry_error(Errc::malformed, where, path, "hardlink to the root directory");
    std::string tname = tcomps.back();
    tcomps.pop_back();
    FLICK_TRY_ASSIGN(auto tstack, walk_dirs({root_.get()}, {tcomps.begin(), tcomps.end()}, layer,
                                            false, where, path));
    Node* target = nullptr;
    if (!tstack.empty()) {
      auto it = tstack.back()->children.find(tname);
      if (it != tstack.back()->children.end()) target = it->second.get();
    }
    if (!target)
      return entry_error(Errc::malformed, where, path,
                         "hardlink target '" + target_path + "' does not exist in the image");
    if (target->is_dir())
      return entry_error(Errc::malformed, where, path, "hardlink to a directory '" + target_path + "'");
    auto shared = target->inode;
    auto n = std::make_unique<Node>();
    n->inode = std::move(shared);
    n->layer = layer;
    parent.children[name] = std::move(n);
    return {};
  }

  auto inode = std::make_shared<Inode>();
  Inode& i = *inode;
  i.permissions = archive_entry_perm(e) & 07777;
  i.uid = uint32_t(archive_entry_uid(e));
  i.gid = uint32_t(archive_entry_gid(e));
  i.mtime = archive_entry_mtime(e);
  i.mtime_nsec = uint32_t(archive_entry_mtime_nsec(e));
  const char* xname = nullptr;
  const void* xvalue = nullptr;
  size_t xsize = 0;
  archive_entry_xattr_reset(e);
  while (archive_entry_xattr_next(e, &xname, &xvalue, &xsize) == ARCHIVE_OK) {
    // An empty pax value deletes the keyword (POSIX pax "extended header"), so an empty
    // SCHILY.xattr record names no attribute.
    if (xsize) i.xattrs.emplace_back(xname, std::string(static_cast<const char*>(xvalue), xsize));
  }

  switch (archive_entry_filetype(e)) {
    case AE_IFREG: {
      i.type = FileType::regular;
      i.size = uint64_t(std::max<la_int64_t>(archive_entry_size(e), 0));
      total_bytes_ += i.size;
      if (total_bytes_ > limits_.max_total_bytes)
        return entry_error(Errc::limit, where, path,
                           "regular files add up to more than the limit of " +
                               std::to_string(limits_.max_total_bytes) + " bytes");
      i.data_bytes = i.size;
      if (archive_entry_sparse_reset(e) > 0) {
        i.data_bytes = 0;
        la_int64_t off = 0, len = 0;
        while (archive_entry_sparse_next(e, &off, &len) == ARCHIVE_OK) i.data_bytes += uint64_t(len);
      }
      FLICK_TRY(spool_data(i, reader, path));
      break;
    }
    case AE_IFDIR: {
      auto it = parent.children.find(name);
      if (it != parent.children.end() && it->second->is_dir()) {
        // An existing directory keeps its contents; this entry updates its metadata.
        Inode& d = *it->second->inode;
        d.permissions = i.permissions;
        d.uid = i.uid;
        d.gid = i.gid;
        d.mtime = i.mtime;
        d.mtime_nsec = i.mtime_nsec;
        d.xattrs = std::move(i.xattrs);
        it->second->layer = layer;
        return {};
      }
      i.type = FileType::directory;
      break;
    }
    case AE_IFLNK: {
      i.type = FileType::symlink;
      i.permissions = 0777;  // symlink modes are not used by Linux and always read 0777
      const char* t = archive_entry_symlink(e);
      i.link_target = t ? t : "";
      if (i.link_target.empty() || i.link_target.size() >= 4096)
        return entry_error(Errc::malformed, where, path, "symlink target is empty or too long");
      break;
    }
    case AE_IFCHR:
    case AE_IFBLK:
      i.type = archive_entry_filetype(e) == AE_IFCHR ? FileType::char_device : FileType::block_device;
      i.rdev_major = uint32_t(archive_entry_rdevmajor(e));
      i.rdev_minor = uint32_t(archive_entry_rdevminor(e));
      break;
    case AE_IFIFO: i.type = FileType::fifo; break;
    case AE_IFSOCK: i.type = FileType::socket; break;
    default:
      return entry_error(Errc::unsupported, where, path, "unknown tar entry type");
  }
  auto n = std::make_unique<Node>();
  n->inode = std::move(inode);
  n->layer = layer;
  parent.children[name] = std::move(n);  // replaces an earlier entry of any type
  return {};
}

static void count_links(Node& n) {
  n.inode->nlink = 0;
  for (auto& [_, c] : n.children) count_links(*c);
}

static void add_links(Node& n) {
  if (n.is_dir()) {
    n.inode->nlink = 2;
    for (auto& [_, c] : n.children) {
      if (c->is_dir()) ++n.inode->nlink;
      add_links(*c);
    }
  } else {
    ++n.inode->nlink;
  }
}

void FileTree::finish() {
  count_links(*root_);
  add_links(*root_);
}

}  // namespace flick::image
