// flick image pull|ls|rm|rootfs|prune|login|logout: the image cache and registry logins from
// the command line.
#include "command.h"
#include "shared.h"
#include "store_cmd.h"

#include <flick/image.h>
#include <flick/machine.h>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr const char* kAbout =
    "REF: busybox, library/alpine:3.19, localhost:5000/app@sha256:..., oci:DIR[:TAG],\n"
    "     oci-archive:FILE[:TAG], docker-archive:FILE. SIZE: bytes, or with K, M, G suffix.\n"
    "Environment: FLICK_HOME (cache dir), FLICK_DEFAULT_REGISTRY, FLICK_INSECURE_REGISTRIES\n"
    "(comma-separated, as --insecure), FLICK_REGISTRY_MIRRORS (comma-separated, as --registry-mirror).\n"
    "Registry logins: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,\n"
    "~/.docker/config.json (`image login` writes the first that is set, as podman login does).\n"
    "Registry CAs: <dir>/HOST[:PORT]/*.crt for the first of $FLICK_CERTS_DIR,\n"
    "~/.config/containers/certs.d, /etc/containers/certs.d, /etc/docker/certs.d with such a directory.";

// SIZE: bytes, or with a K, M or G suffix (KiB, MB, ... too).
bool parse_size(const std::string& arg, uint64_t* out) {
  const char* s = arg.c_str();
  if (!std::isdigit(static_cast<unsigned char>(*s))) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno) return false;
  uint64_t mul = 1;
  switch (*end) {
    case 'k': case 'K': mul = 1ull << 10; ++end; break;
    case 'm': case 'M': mul = 1ull << 20; ++end; break;
    case 'g': case 'G': mul = 1ull << 30; ++end; break;
    default: break;
  }
  if (*end == 'i' || *end == 'B') ++end;
  if (*end || v > UINT64_MAX / mul) return false;
  *out = v * mul;
  return true;
}

int fail(const flick::Error& e) {
  std::fprintf(stderr, "flick image: %s\n", e.describe().c_str());
  return 1;
}

// 1234567 -> "1.2 MB" (decimal units, as registries and Docker show sizes).
std::string human_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) bytes /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

// One line on the terminal, rewritten as a pull goes: bytes, layers, rate and ETA.
// Nothing at all when stderr is not a terminal.
class ProgressLine {
 public:
  ProgressLine() : tty_(::isatty(STDERR_FILENO) == 1) {}
  ~ProgressLine() { clear(); }
  bool enabled() const { return tty_; }

  void update(const flick::PullProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    if (!shown_) start_ = now, start_bytes_ = p.done_bytes;  // cached and resumed bytes are no speed
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0.2 ? double(p.done_bytes - start_bytes_) / secs : 0;
    size_t complete = 0;
    for (const auto& l : p.layers) complete += l.complete;
    std::string eta = "--";
    if (p.done_bytes >= p.total_bytes) eta = "0s";
    else if (rate > 0) eta = std::to_string(uint64_t(double(p.total_bytes - p.done_bytes) / rate + 0.5)) + "s";
    std::fprintf(stderr, "\r\033[K%s / %s, %zu/%zu layers, %s/s, ETA %s", human_bytes(double(p.done_bytes)).c_str(),
                 human_bytes(double(p.total_bytes)).c_str(), complete, p.layers.size(), human_bytes(rate).c_str(),
                 eta.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void clear() {
    if (shown_) std::fputs("\r\033[K", stderr), std::fflush(stderr);
    shown_ = false;
  }

 private:
  bool tty_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_;
  uint64_t start_bytes_ = 0;
};

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

// `flick image`'s own options, which its subcommands share.
struct ImageOptions {
  std::string store_dir;  // default: ImageStore::default_dir()
  std::string state_dir;  // the machines whose images ls shows and rm keeps; default as Host's
  std::vector<std::string> insecure;
  std::vector<std::string> mirrors;  // [REGISTRY=]MIRROR
  int max_concurrent_downloads = 0;   // 0: StoreOptions' default
};

flick::Result<flick::ImageStore> open_store(const ImageOptions& o) {
  flick::StoreOptions opts = flick::cli::store_options_from_env();
  opts.insecure_registries.insert(opts.insecure_registries.end(), o.insecure.begin(), o.insecure.end());
  for (const auto& m : o.mirrors) flick::cli::add_registry_mirror(opts, m);
  if (o.max_concurrent_downloads > 0) opts.max_concurrent_downloads = o.max_concurrent_downloads;
  return flick::ImageStore::open(
      o.store_dir.empty() ? flick::ImageStore::default_dir() : std::filesystem::path(o.store_dir), opts);
}

// The names of the machines (not destroyed) of the state directory, by their image's digest:
// lib/image knows nothing of machines, so the image commands ask the Host.
flick::Result<std::map<std::string, std::vector<std::string>>> machines_by_image(const ImageOptions& o) {
  flick::HostOptions options;
  options.state_dir = o.state_dir;
  options.cache_dir = o.store_dir;
  auto host = flick::cli::open_host(options);
  if (!host) return std::move(host).error();
  auto machines = (*host)->list();
  if (!machines) return std::move(machines).error();
  std::map<std::string, std::vector<std::string>> users;
  for (const auto& m : *machines) users[m->image().image_digest].push_back(m->name());
  return users;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// `--size`/`--headroom SIZE` into `*out`.
CLI::Option* add_size(CLI::App& app, const std::string& name, uint64_t* out, const std::string& help) {
  return flick::cli::add_value(
      app, name, "SIZE",
      [=](const std::string& v) {
        if (!parse_size(v, out)) flick::cli::usage_error(name + " takes bytes or a K, M, G size, not '" + v + "'");
      },
      help);
}

void add_pull(CLI::App& image, const std::shared_ptr<ImageOptions>& o) {
  struct Args {
    std::string ref;
    flick::PullOptions pull;
  };
  auto a = std::make_shared<Args>();
  a->pull.policy = flick::PullPolicy::always;
  auto* pull = image.add_subcommand("pull", "fetch an image into the cache");
  pull->add_option("REF", a->ref, "the image")->required()->type_name("");
  flick::cli::add_pull_policy(*pull, &a->pull.policy, "always");
  flick::cli::set_action(pull, [o, a] {
    auto store = open_store(*o);
    if (!store) return fail(store.error());
    ProgressLine line;
    flick::PullOptions options = a->pull;
    if (line.enabled()) options.progress = [&line](const flick::PullProgress& p) { line.update(p); };
    auto r = store->pull(a->ref, options);
    line.clear();
    if (!r) return fail(r.error());
    std::printf("%s %s (%llu bytes)\n", r->reference.c_str(), r->image_digest.c_str(),
                static_cast<unsigned long long>(r->blob_bytes));
    return 0;
  });
}

void add_ls(CLI::App& image, const std::shared_ptr<ImageOptions>& o) {
  auto* ls = image.add_subcommand(
      "ls", "list cached images: reference, digest, size, rootfs images built, machines that use it");
  flick::cli::set_action(ls, [o] {
    auto store = open_store(*o);
    if (!store) return fail(store.error());
    auto r = store->list();
    if (!r) return fail(r.error());
    auto users = machines_by_image(*o);
    if (!users) return fail(users.error());
    std::printf("%-50s %-71s %10s %-6s %s\n", "REFERENCE", "DIGEST", "SIZE", "ROOTFS", "MACHINES");
    for (const auto& img : *r) {
      auto it = users->find(img.image_digest);
      std::printf("%-50s %-71s %10s %-6zu %s\n", img.reference.c_str(), img.image_digest.c_str(),
                  human_bytes(double(img.blob_bytes)).c_str(), img.rootfs.size(),
                  it == users->end() ? "-" : join(it->second).c_str());
    }
    return 0;
  });
}

// The machines that would lose their image if `ref` went: those using its digest, when no
// other reference in the cache names that digest (removing one of two tags keeps the image).
std::vector<std::string> machines_needing(flick::ImageStore& store, const std::string& ref,
                                          const std::map<std::string, std::vector<std::string>>& users) {
  if (users.empty()) return {};
  auto parsed = flick::ImageReference::parse(ref, flick::cli::store_options_from_env().default_registry);
  auto images = store.list();
  if (!parsed || !images) return {};  // remove() reports what is wrong
  const std::string name = parsed->to_string();
  std::string digest;
  for (const auto& img : *images)
    if (img.reference == name) digest = img.image_digest;
  size_t naming = 0;
  for (const auto& img : *images) naming += !digest.empty() && img.image_digest == digest;
  auto it = users.find(digest);
  return naming == 1 && it != users.end() ? it->second : std::vector<std::string>();
}

void add_rm(CLI::App& image, const std::shared_ptr<ImageOptions>& o) {
  struct Args {
    std::vector<std::string> refs;
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  auto* rm = image.add_subcommand("rm", "forget images and remove what only they used");
  rm->add_option("REF", a->refs, "the images, as `image ls` names them")->required()->type_name("");
  rm->add_flag("-f,--force", a->force,
               "remove an image even when machines (not destroyed) use it: their next start builds it again");
  flick::cli::set_action(rm, [o, a] {
    auto store = open_store(*o);
    if (!store) return fail(store.error());
    flick::Result<std::map<std::string, std::vector<std::string>>> users{std::map<std::string, std::vector<std::string>>()};
    if (!a->force) users = machines_by_image(*o);
    if (!users) return fail(users.error());
    int status = 0;
    for (const auto& ref : a->refs) {
      if (auto in_use = machines_needing(*store, ref, *users); !in_use.empty()) {
        std::fprintf(stderr, "flick image: %s is used by machine%s %s (not destroyed): destroy %s first, or rm --force\n",
                     ref.c_str(), in_use.size() > 1 ? "s" : "", join(in_use).c_str(),
                     in_use.size() > 1 ? "them" : "it");
        status = 1;
        continue;
      }
      auto r = store->remove(ref);
      if (!r) {
        status = fail(r.error());
        continue;
      }
      std::printf("removed %s (%s freed)\n", ref.c_str(), human_bytes(double(r->bytes_freed)).c_str());
    }
    return status;
  });
}

void add_rootfs(CLI::App& image, const std::shared_ptr<ImageOptions>& o) {
  struct Args {
    std::string ref, output;
    flick::RootfsOptions rootfs;
    flick::PullOptions pull;
  };
  auto a = std::make_shared<Args>();
  auto* rootfs = image.add_subcommand("rootfs", "build (or reuse) the image's ext4 rootfs, copy it to FILE");
  rootfs->add_option("REF", a->ref, "the image")->required()->type_name("");
  rootfs->add_option("-o,--output", a->output, "where the copy goes")->required()->type_name("FILE");
  add_size(*rootfs, "--size", &a->rootfs.size_bytes, "the image's size (default: its content plus the headroom)");
  add_size(*rootfs, "--headroom", &a->rootfs.headroom_bytes, "free space left for the guest (default 256M)");
  flick::cli::add_pull_policy(*rootfs, &a->pull.policy, "missing");
  flick::cli::set_action(rootfs, [o, a] {
    auto store = open_store(*o);
    if (!store) return fail(store.error());
    ProgressLine line;
    flick::PullOptions options = a->pull;
    if (line.enabled()) options.progress = [&line](const flick::PullProgress& p) { line.update(p); };
    auto r = store->rootfs(a->ref, a->rootfs, options);
    line.clear();
    if (!r) return fail(r.error());
    if (!copy_sparse(r->path, a->output)) {
      std::fprintf(stderr, "flick image: copying %s to %s: %s\n", r->path.c_str(), a->output.c_str(),
                   std::strerror(errno));
      return 1;
    }
    std::printf("%s %s (%llu bytes)\n", a->output.c_str(), r->image_digest.c_str(),
                static_cast<unsigned long long>(r->size_bytes));
    return 0;
  });
}

void add_prune(CLI::App& image, const std::shared_ptr<ImageOptions>& o) {
  auto* prune = image.add_subcommand("prune", "remove unused blobs, rootfs images and leftovers");
  flick::cli::set_action(prune, [o] {
    auto store = open_store(*o);
    if (!store) return fail(store.error());
    auto r = store->prune();
    if (!r) return fail(r.error());
    std::printf("removed %llu files, %llu bytes\n", static_cast<unsigned long long>(r->files_removed),
                static_cast<unsigned long long>(r->bytes_freed));
    return 0;
  });
}

// A line from the terminal on stdin after `prompt` (on stderr), not echoed when `secret`.
// Echo goes off before the prompt shows, as with getpass(3): TCSAFLUSH discards what was
// typed before it, so a password typed at the prompt must come after.
std::string prompt_line(const char* prompt, bool secret) {
  termios saved{};
  const bool hide = secret && ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (hide) {
    termios quiet = saved;
    quiet.c_lflag &= ~tcflag_t(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::fputs(prompt, stderr);
  std::fflush(stderr);
  std::string line;
  std::getline(std::cin, line);
  if (hide) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    std::fputs("\n", stderr);
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

void add_login(CLI::App& image, const std::shared_ptr<ImageOptions>& o) {
  struct Args {
    std::string registry, username, password;
    bool password_stdin = false;
  };
  auto a = std::make_shared<Args>();
  auto* login = image.add_subcommand(
      "login", "check a user name and password with a registry and save them for pulls (as podman login)");
  login->add_option("REGISTRY", a->registry, "HOST[:PORT], e.g. ghcr.io or docker.io")->required()->type_name("");
  auto* user = login->add_option("-u,--username", a->username, "the user name (asked on a terminal when not given)")
                   ->type_name("USER");
  auto* argv = login->add_option("-p,--password", a->password,
                                 "the password; other users can read it in the process list: prefer --password-stdin")
                   ->type_name("PASSWORD");
  login->add_flag("--password-stdin", a->password_stdin, "read the password from stdin")->needs(user)->excludes(argv);
  flick::cli::set_action(login, [o, a] {
    const bool tty = ::isatty(STDIN_FILENO) == 1;
    auto usage = [](const char* what) {
      std::fprintf(stderr, "flick image login: %s\nRun with --help for more information.\n", what);
      return flick::cli::kUsageError;
    };
    if (!a->password.empty()) std::fputs("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n", stderr);
    if (a->username.empty() && !tty) return usage("no --username, and stdin is not a terminal to ask on");
    if (a->username.empty()) a->username = prompt_line("Username: ", false);
    std::string password = a->password;
    if (a->password_stdin) {
      password.assign(std::istreambuf_iterator<char>(std::cin), {});
      while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) password.pop_back();
    } else if (password.empty()) {
      if (!tty) return usage("no password: use --password-stdin, or run on a terminal to be asked");
      password = prompt_line("Password: ", true);
    }
    flick::StoreOptions opts = flick::cli::store_options_from_env();
    opts.insecure_registries.insert(opts.insecure_registries.end(), o->insecure.begin(), o->insecure.end());
    auto r = flick::registry_login(a->registry, a->username, password, opts);
    if (!r) return fail(r.error());
    const std::string where = r->helper.empty() ? r->file.string() : r->helper;
    std::printf("Login Succeeded: %s as %s, saved in %s\n", a->registry.c_str(), a->username.c_str(), where.c_str());
    return 0;
  });
}

void add_logout(CLI::App& image) {
  auto registry = std::make_shared<std::string>();
  auto* logout = image.add_subcommand("logout", "forget the saved login for a registry (as podman logout)");
  logout->add_option("REGISTRY", *registry, "HOST[:PORT], as given to login")->required()->type_name("");
  flick::cli::set_action(logout, [registry] {
    auto r = flick::registry_logout(*registry);
    if (!r) return fail(r.error());
    const std::string where = r->helper.empty() ? r->file.string() : r->helper;
    std::printf("Removed login credentials for %s from %s\n", registry->c_str(), where.c_str());
    return 0;
  });
}

void add_image_command(CLI::App& flick) {
  auto o = std::make_shared<ImageOptions>();
  auto* image = flick.add_subcommand("image", "pull images and build their ext4 root filesystems");
  image->require_subcommand(1);
  image->footer(kAbout);
  image->add_option("--store", o->store_dir, "the image cache (default $FLICK_HOME, else $XDG_CACHE_HOME/flick)")
      ->type_name("DIR");
  image->add_option("--state-dir", o->state_dir,
                    "the machines ls and rm look at (default $FLICK_STATE_DIR, ~/.local/state/flick)")
      ->type_name("DIR");
  image->add_option("--insecure", o->insecure,
                     "do not verify this registry's TLS certificate; plain http if it has no TLS (repeatable)")
      ->type_name("HOST:PORT")
      ->allow_extra_args(false);
  image->add_option("--registry-mirror", o->mirrors,
                    "ask MIRROR before REGISTRY (default docker.io); the next mirror or the registry itself "
                    "when it fails (repeatable, tried in order)")
      ->type_name("[REGISTRY=]MIRROR")
      ->allow_extra_args(false);
  image->add_option("--max-concurrent-downloads", o->max_concurrent_downloads,
                    "layers downloaded at once by a pull (default 4; 1: one after another)")
      ->type_name("N")
      ->check(CLI::Range(1, 64));
  add_pull(*image, o);
  add_ls(*image, o);
  add_rm(*image, o);
  add_rootfs(*image, o);
  add_prune(*image, o);
  add_login(*image, o);
  add_logout(*image);
  // `flick image pull --store DIR REF` as well as `flick image --store DIR pull REF`.
  for (auto* sub : image->get_subcommands({})) sub->fallthrough();
}

}  // namespace

FLICK_COMMAND("image", add_image_command);
