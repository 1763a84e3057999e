#include "runner/spawn.h"

#include "base/fd.h"
#include "runner/monitor.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

extern char** environ;

namespace flick::runner {

namespace fs = std::filesystem;

namespace {

// Variables a run may use; everything else in the caller's environment stays behind.
constexpr const char* kPassedEnv[] = {"FLICK_LOG", "FLICK_DUMP_SIGNAL", "TMPDIR", "ASAN_OPTIONS",
                                      "UBSAN_OPTIONS", "LSAN_OPTIONS", "LLVM_PROFILE_FILE"};

int anchor;  // an address inside this library, for dladdr

}  // namespace

Result<fs::path> find_vmm_program() {
  if (const char* p = std::getenv("FLICK_VMM"); p && *p) return fs::path(p);
  std::vector<fs::path> dirs;
  std::error_code ec;
  if (auto exe = fs::read_symlink("/proc/self/exe", ec); !ec) dirs.push_back(exe.parent_path());
  Dl_info info{};
  if (::dladdr(&anchor, &info) && info.dli_fname) dirs.push_back(fs::absolute(info.dli_fname, ec).parent_path());
  std::vector<fs::path> tried;
  for (const auto& d : dirs)
    for (const fs::path& candidate : {d / "flick-vmm", d / "bin" / "flick-vmm", d.parent_path() / "bin" / "flick-vmm",
                                      d.parent_path() / "libexec" / "flick" / "flick-vmm"}) {
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
      tried.push_back(candidate);
    }
#ifdef FLICK_INSTALLED_VMM
  // Where this build installs it (libexecdir need not sit beside the library's directory).
  if (::access(FLICK_INSTALLED_VMM, X_OK) == 0) return fs::path(FLICK_INSTALLED_VMM);
  tried.push_back(FLICK_INSTALLED_VMM);
#endif
#ifdef FLICK_BUILD_TREE_VMM
  // Last: this build tree's, for tests and benchmarks that run from it.
  if (::access(FLICK_BUILD_TREE_VMM, X_OK) == 0) return fs::path(FLICK_BUILD_TREE_VMM);
  tried.push_back(FLICK_BUILD_TREE_VMM);
#endif
  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t.string();
  return make_error(Errc::not_found, "flick-vmm was not found (tried " + list +
                                         "): set FLICK_VMM or HostOptions::vmm_program");
}

Result<void> spawn_run(const fs::path& program, const fs::path& spec, const fs::path& log, int run_lock,
                       std::chrono::steady_clock::time_point began, std::chrono::milliseconds timeout) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return sys_error("creating a pipe for flick-vmm", errno);
  UniqueFd ready_r(p[0]), ready_w(p[1]);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_adddup2(&fa, ready_w.get(), 3);  // dup2 clears close-on-exec
  posix_spawn_file_actions_adddup2(&fa, run_lock, 4);
  posix_spawn_file_actions_addclosefrom_np(&fa, 5);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  for (const char* name : kPassedEnv)
    if (const char* v = std::getenv(name)) env.push_back(std::string(name) + "=" + v);
  std::vector<std::string> args = {
      "flick-vmm", "run", "--spec", spec.string(), "--ready-fd", "3", "--lock-fd", "4", "--began-ns",
      std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(began.time_since_epoch()).count())};
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = 0;
  int err = ::posix_spawn(&pid, program.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (err != 0) return sys_error("starting " + program.string(), err);
  ready_w.reset();
  // flick-vmm forks its monitor and exits at once; the monitor belongs to init from then on.
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    auto r = read_ready(ready_r.get(), std::chrono::milliseconds(100));
    if (!r) return std::move(r).error();
    return make_error(Errc::io, program.string() + " failed before starting the run (see " + log.string() + ")");
  }
  return read_ready(ready_r.get(), timeout);
}

}  // namespace flick::runner
