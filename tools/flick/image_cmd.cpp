// flick image pull|ls|rootfs|prune: the image cache from the command line.
#include "args.h"
#include "command.h"

#include <flick/image.h>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: flick image [--store DIR] [--insecure HOST:PORT]... <command>\n\n"
               "  pull REF                      fetch an image into the cache\n"
               "  ls                            list cached images\n"
               "  rootfs REF -o FILE [--size SIZE] [--headroom SIZE]\n"
               "                                build (or reuse) the image's ext4 rootfs, copy it to FILE\n"
               "  prune                         remove unused blobs, rootfs images and leftovers\n\n"
               "REF: busybox, library/alpine:3.19, localhost:5000/app@sha256:..., oci:DIR[:TAG],\n"
               "     oci-archive:FILE[:TAG], docker-archive:FILE. SIZE: bytes, or with K, M, G suffix.\n"
               "Environment: FLICK_HOME (cache dir), FLICK_DEFAULT_REGISTRY, FLICK_INSECURE_REGISTRIES\n"
               "(comma-separated hosts spoken to over plain http).\n"
               "Registry logins: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,\n"
               "~/.docker/config.json (podman login / docker login write them). Registry CAs: <dir>/HOST[:PORT]/*.crt\n"
               "for the first of $FLICK_CERTS_DIR, ~/.config/containers/certs.d, /etc/containers/certs.d,\n"
               "/etc/docker/certs.d with such a directory.\n");
}

bool parse_size(const char* s, uint64_t* out) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (end == s) return false;
  uint64_t mul = 1;
  switch (*end) {
    case 'k': case 'K': mul = 1ull << 10; ++end; break;
    case 'm': case 'M': mul = 1ull << 20; ++end; break;
    case 'g': case 'G': mul = 1ull << 30; ++end; break;
    default: break;
  }
  if (*end == 'i' || *end == 'B') ++end;
  if (*end) return false;
  *out = v * mul;
  return true;
}

int fail(const flick::Error& e) {
  std::fprintf(stderr, "flick image: %s\n", e.describe().c_str());
  return 1;
}

// Copies keeping holes: a reflink where the filesystem allows, else data extents only.
bool copy_sparse(const std::string& from, const std::string& to) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return false;
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) { ::close(in); return false; }
  bool ok = ::ioctl(out, FICLONE, in) == 0;
  if (!ok) {
    off_t size = ::lseek(in, 0, SEEK_END);
    ok = ::ftruncate(out, size) == 0;
    off_t pos = 0;
    while (ok && pos < size) {
      off_t data = ::lseek(in, pos, SEEK_DATA);
      if (data < 0) break;  // only a hole remains
      off_t hole = ::lseek(in, data, SEEK_HOLE);
      off_t src = data, dst = data;
      while (ok && src < hole) {
        ssize_t n = ::copy_file_range(in, &src, out, &dst, size_t(hole - src), 0);
        ok = n > 0;
      }
      pos = hole;
    }
  }
  ::close(in);
  return ::close(out) == 0 && ok;
}

int image_main(int argc, char** argv) {
  flick::StoreOptions opts = flick::cli::store_options_from_env();
  std::filesystem::path store_dir = flick::ImageStore::default_dir();
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; ++i) {
    if (!std::strcmp(argv[i], "--store") && i + 1 < argc) store_dir = argv[++i];
    else if (!std::strcmp(argv[i], "--insecure") && i + 1 < argc) opts.insecure_registries.push_back(argv[++i]);
    else if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help")) { usage(stdout); return 0; }
    else { usage(stderr); return 2; }
  }
  if (i >= argc) { usage(stderr); return 2; }
  std::string cmd = argv[i++];
  auto store = flick::ImageStore::open(store_dir, opts);
  if (!store) return fail(store.error());

  if (cmd == "pull" && i + 1 == argc) {
    auto r = store->pull(argv[i]);
    if (!r) return fail(r.error());
    std::printf("%s %s (%llu bytes)\n", r->reference.c_str(), r->image_digest.c_str(),
                static_cast<unsigned long long>(r->blob_bytes));
    return 0;
  }
  if (cmd == "ls" && i == argc) {
    auto r = store->list();
    if (!r) return fail(r.error());
    std::printf("%-50s %-20s %12s %s\n", "REFERENCE", "DIGEST", "BLOB BYTES", "ROOTFS");
    for (const auto& img : *r)
      std::printf("%-50s %-20s %12llu %zu\n", img.reference.c_str(), img.image_digest.substr(0, 19).c_str(),
                  static_cast<unsigned long long>(img.blob_bytes), img.rootfs.size());
    return 0;
  }
  if (cmd == "rootfs" && i < argc) {
    std::string ref = argv[i++], output;
    flick::RootfsOptions ro;
    for (; i < argc; ++i) {
      if (!std::strcmp(argv[i], "-o") && i + 1 < argc) output = argv[++i];
      else if (!std::strcmp(argv[i], "--size") && i + 1 < argc && parse_size(argv[i + 1], &ro.size_bytes)) ++i;
      else if (!std::strcmp(argv[i], "--headroom") && i + 1 < argc && parse_size(argv[i + 1], &ro.headroom_bytes)) ++i;
      else { usage(stderr); return 2; }
    }
    if (output.empty()) { usage(stderr); return 2; }
    auto r = store->rootfs(ref, ro);
    if (!r) return fail(r.error());
    if (!copy_sparse(r->path, output)) {
      std::fprintf(stderr, "flick image: copying %s to %s: %s\n", r->path.c_str(), output.c_str(), std::strerror(errno));
      return 1;
    }
    std::printf("%s %s (%llu bytes)\n", output.c_str(), r->image_digest.c_str(),
                static_cast<unsigned long long>(r->size_bytes));
    return 0;
  }
  if (cmd == "prune" && i == argc) {
    auto r = store->prune();
    if (!r) return fail(r.error());
    std::printf("removed %llu files, %llu bytes\n", static_cast<unsigned long long>(r->files_removed),
                static_cast<unsigned long long>(r->bytes_freed));
    return 0;
  }
  usage(stderr);
  return 2;
}

}  // namespace

FLICK_COMMAND("image", "pull images and build their ext4 root filesystems", image_main);
