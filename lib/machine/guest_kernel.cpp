#include "machine/guest_kernel.h"

#include "base/fd.h"
#include "base/flock.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

extern char** environ;

namespace flick::machine {
namespace fs = std::filesystem;

namespace {

// std::filesystem queries that report failure as "no" instead of throwing.
bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}
bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

std::string join_argv(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// PATH, then the sbin folders (depmod lives there and a non-login PATH may lack them).
std::optional<std::string> find_program(const std::string& name) {
  std::string dirs = getenv("PATH") ? getenv("PATH") : "";
  dirs += ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin";
  std::stringstream ss(dirs);
  for (std::string dir; std::getline(ss, dir, ':');) {
    if (dir.empty()) continue;
    std::string p = dir + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return std::nullopt;
}

Result<std::string> read_all(int fd, const std::string& what) {
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) return out;
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("reading the output of " + what, errno);
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

// Runs argv (no shell) and returns its stdout; a non-zero exit is an error carrying stderr.
Result<std::string> run(const std::vector<std::string>& argv, const fs::path& cwd = {}) {
  std::string cmd = join_argv(argv);
  auto program = find_program(argv[0]);
  if (!program)
    return make_error(Errc::not_found, "running `" + cmd + "`: " + argv[0] +
                                           " not found (apt, dpkg and kmod are needed to fetch "
                                           "a Debian kernel: see scripts/install-deps.sh)");
  int out_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return sys_error("pipe for `" + cmd + "`", errno);
  UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
  // stderr goes to an unlinked file, so a chatty child never blocks on a full pipe.
  UniqueFd err_file(open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!err_file) return sys_error("temporary file for the stderr of `" + cmd + "`", errno);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_file.get(), 2);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, program->c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return sys_error("starting `" + cmd + "`", rc);
  out_w.reset();
  auto out = read_all(out_r.get(), "`" + cmd + "`");
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return sys_error("waiting for `" + cmd + "`", errno);
  }
  if (!out) return std::move(out).error();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return out;
  lseek(err_file.get(), 0, SEEK_SET);
  auto err_text = read_all(err_file.get(), "`" + cmd + "`");
  std::string err = err_text ? *err_text : std::string();
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  std::string how = WIFEXITED(status) ? "status " + std::to_string(WEXITSTATUS(status))
                                      : "signal " + std::to_string(WTERMSIG(status));
  return make_error(Errc::io, "`" + cmd + "` failed with " + how + (err.empty() ? "" : ": " + err));
}

// "Candidate: 6.1.192-2" from `apt-cache policy`; nullopt for "(none)" or an unknown package.
std::optional<std::string> candidate_version(const std::string& policy) {
  std::istringstream in(policy);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string key, value;
    words >> key >> value;
    if (key == "Candidate:" && !value.empty() && value != "(none)") return value;
  }
  return std::nullopt;
}

bool is_concrete_image(std::string_view p) {
  constexpr std::string_view prefix = "linux-image-";
  return p.starts_with(prefix) && p.size() > prefix.size() && isdigit(p[prefix.size()]);
}

// The newest modification time of apt's lists: a resolution older than that may be stale.
fs::file_time_type apt_lists_time() {
  auto newest = fs::file_time_type::min();  // not {}: the file clock's epoch is in the future
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/var/lib/apt/lists", ec))
    newest = std::max(newest, e.last_write_time(ec));
  return newest;
}

bool apt_lists_present() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/var/lib/apt/lists", ec))
    if (e.path().filename().string().find("_Packages") != std::string::npos) return true;
  return false;
}

struct Resolved {
  std::string package, version;
};

Result<Resolved> resolve_with_apt(const std::string& meta) {
  FLICK_TRY_ASSIGN(auto policy, run({"apt-cache", "policy", meta}));
  if (!candidate_version(policy) && !apt_lists_present()) {
    // Fresh containers ship without package lists.
    FLICK_TRY(run({"apt-get", "update", "-qq"}));
    FLICK_TRY_ASSIGN(policy, run({"apt-cache", "policy", meta}));
    if (!candidate_version(policy))
      return make_error(Errc::not_found, "apt knows no installable package " + meta);
  }
  if (!candidate_version(policy))
    return make_error(Errc::not_found, "apt knows no installable package " + meta +
                                           " (apt-cache policy; `apt-get update` if it is new)");
  std::string concrete = meta;
  if (!is_concrete_image(meta)) {
    FLICK_TRY_ASSIGN(auto depends, run({"apt-cache", "depends", meta}));
    std::istringstream in(depends);
    concrete.clear();
    for (std::string line; std::getline(in, line) && concrete.empty();) {
      std::istringstream words(line);
      std::string key, value;
      words >> key >> value;
      if (key == "Depends:" && is_concrete_image(value)) concrete = value;
    }
    if (concrete.empty())
      return make_error(Errc::not_found,
                        meta + " depends on no linux-image-<version> package (apt-cache depends)");
  }
  FLICK_TRY_ASSIGN(auto concrete_policy, run({"apt-cache", "policy", concrete}));
  auto version = candidate_version(concrete_policy);
  if (!version) return make_error(Errc::not_found, "apt has no candidate version of " + concrete);
  return Resolved{concrete, *version};
}

std::optional<Resolved> read_memo(const fs::path& memo) {
  std::ifstream in(memo);
  Resolved r;
  if (!(in >> r.package >> r.version)) return std::nullopt;
  return r;
}

Result<void> write_file_atomic(const fs::path& path, const std::string& text) {
  std::string tmp = (path.parent_path() / ("." + path.filename().string() + ".XXXXXX")).string();
  UniqueFd fd(mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) return sys_error("creating a temporary file for " + path.string(), errno);
  fchmod(fd.get(), 0644);
  if (write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    int err = errno;
    unlink(tmp.c_str());
    return sys_error("writing " + tmp, err);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return sys_error("renaming " + tmp + " to " + path.string(), err);
  }
  return {};
}

// The one release under root/lib/modules.
Result<std::string> find_release(const fs::path& root) {
  std::vector<std::string> releases;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root / "lib" / "modules", ec))
    if (e.is_directory(ec)) releases.push_back(e.path().filename().string());
  if (releases.size() != 1)
    return make_error(Errc::malformed, "expected one kernel release under " +
                                           (root / "lib" / "modules").string() + ", found " +
                                           std::to_string(releases.size()));
  return releases[0];
}

Result<GuestKernel> kernel_in_tree(const fs::path& root) {
  FLICK_TRY_ASSIGN(auto release, find_release(root));
  GuestKernel k{root / "boot" / ("vmlinuz-" + release), release,
                root / "lib" / "modules" / release};
  if (!is_file(k.vmlinuz))
    return make_error(Errc::malformed, root.string() + " holds no " + k.vmlinuz.string());
  return k;
}

Result<void> download_and_unpack(const Resolved& r, const fs::path& kernels, const fs::path& dest) {
  std::string tmpl = (kernels / ".fetch-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) return sys_error("creating a temporary folder in " + kernels.string(), errno);
  fs::path tmp = tmpl;
  struct Cleanup {
    fs::path p;
    ~Cleanup() { std::error_code ec; fs::remove_all(p, ec); }
  } cleanup{tmp};
  // apt's _apt sandbox user cannot write into root's cache; the download is a plain file.
  chmod(tmp.c_str(), 0755);
  FLICK_TRY(run({"apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
                 r.package + "=" + r.version}, tmp));
  std::vector<fs::path> debs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(tmp, ec))
    if (e.path().extension() == ".deb") debs.push_back(e.path());
  if (debs.size() != 1)
    return make_error(Errc::malformed, "apt-get download " + r.package + "=" + r.version +
                                           " left " + std::to_string(debs.size()) +
                                           " .deb files in " + tmp.string());
  fs::path unpacked = tmp / "root";
  FLICK_TRY(run({"dpkg-deb", "-x", debs[0].string(), unpacked.string()}));
  FLICK_TRY_ASSIGN(auto release, find_release(unpacked));
  // The package leaves modules.dep to its postinst, which never runs here.
  if (!is_file(unpacked / "lib" / "modules" / release / "modules.dep"))
    FLICK_TRY(run({"depmod", "-b", unpacked.string(), release}));
  if (rename(unpacked.c_str(), dest.c_str()) != 0)
    return sys_error("publishing " + unpacked.string() + " as " + dest.string(), errno);
  return {};
}

// The kernel version string the x86 boot protocol points to (setup header kernel_version).
std::string bzimage_release(const fs::path& vmlinuz) {
  std::ifstream in(vmlinuz, std::ios::binary);
  std::vector<char> head(0x10000);
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  size_t n = static_cast<size_t>(in.gcount());
  if (n < 0x210 || memcmp(&head[0x202], "HdrS", 4) != 0) return {};
  size_t off = 0x200 + (static_cast<uint8_t>(head[0x20e]) | static_cast<uint8_t>(head[0x20f]) << 8);
  std::string s;
  for (size_t i = off; i < n && head[i] != '\0' && head[i] != ' '; ++i) s += head[i];
  return s;
}

}  // namespace

fs::path default_cache_dir() {
  if (const char* d = getenv("FLICK_CACHE_DIR"); d && *d) return d;
  if (const char* x = getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "flick";
  const char* home = getenv("HOME");
  return fs::path(home && *home ? home : "/root") / ".cache" / "flick";
}

Result<GuestKernel> GuestKernel::from_dir(const fs::path& kernel,
                                          std::optional<fs::path> modules_dir) {
  std::error_code ec;
  if (fs::is_directory(kernel, ec) && !modules_dir) return kernel_in_tree(kernel);
  if (!fs::is_regular_file(kernel, ec))
    return make_error(Errc::not_found, "guest kernel " + kernel.string() + " is not a file");
  GuestKernel k{kernel, {}, {}};
  if (modules_dir) {
    if (!fs::is_regular_file(*modules_dir / "modules.dep", ec))
      return make_error(Errc::not_found, "kernel modules folder " + modules_dir->string() +
                                             " has no modules.dep (run depmod -b <root> <release>)");
    k.modules_dir = *modules_dir;
    k.release = modules_dir->filename().string();
  } else {
    k.release = bzimage_release(kernel);
  }
  return k;
}

Result<GuestKernel> fetch_guest_kernel(const fs::path& cache_dir, std::string_view package) {
  const std::string meta(package);
  const fs::path kernels = cache_dir / "kernels";
  std::error_code ec;
  fs::create_directories(kernels, ec);
  if (ec) return make_error(Errc::io, "creating " + kernels.string() + ": " + ec.message());

  // The resolution is remembered (same file as the Python tooling) until apt's lists change.
  const fs::path memo = kernels / ("." + meta + ".resolved");
  auto remembered = read_memo(memo);
  std::optional<Resolved> resolved;
  if (remembered && is_dir(kernels / (remembered->package + "_" + remembered->version))) {
    auto memo_time = fs::last_write_time(memo, ec);
    if (!ec && memo_time > apt_lists_time()) resolved = remembered;
  }
  if (!resolved) {
    auto r = resolve_with_apt(meta);
    if (!r) {
      // Offline or apt broken: a kernel unpacked earlier still boots.
      if (remembered && is_dir(kernels / (remembered->package + "_" + remembered->version)))
        resolved = remembered;
      else
        return std::move(r).error().with_context("resolving guest kernel package " + meta);
    } else {
      resolved = *r;
      FLICK_TRY(write_file_atomic(memo, resolved->package + " " + resolved->version + "\n"));
    }
  }

  const fs::path dest = kernels / (resolved->package + "_" + resolved->version);
  if (!is_dir(dest)) {
    FLICK_TRY_ASSIGN(auto lock, lock_exclusive(kernels / ("." + resolved->package + ".lock")));
    if (!is_dir(dest)) {  // another process may have finished while we waited
      auto done = download_and_unpack(*resolved, kernels, dest);
      if (!done)
        return std::move(done).error().with_context("fetching guest kernel " + resolved->package +
                                                    " " + resolved->version);
    }
  }
  FLICK_TRY_ASSIGN(auto kernel, kernel_in_tree(dest));
  if (!is_file(*kernel.modules_dir / "modules.dep"))
    FLICK_TRY(run({"depmod", "-b", dest.string(), kernel.release}));
  return kernel;
}

}  // namespace flick::machine
