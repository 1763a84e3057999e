// flick-vmm: one run of one machine (lib/runner/monitor.h). Started by the library, never by
// hand: `flick-vmm run --spec <machine dir>/run.json --ready-fd N --began-ns T`.
#include "runner/monitor.h"

#include <flick/version.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: flick-vmm run --spec FILE [--ready-fd N] [--lock-fd N] [--began-ns T] [--foreground]\n"
               "       flick-vmm --version\n"
               "Runs one machine's VM and supervises it until it settles; started by libflick.\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && (!std::strcmp(argv[1], "--version") || !std::strcmp(argv[1], "version"))) {
    std::printf("flick-vmm %s\n", FLICK_VERSION_STRING);
    return 0;
  }
  if (argc < 2 || std::strcmp(argv[1], "run") != 0) return usage();
  std::string spec_path;
  int ready_fd = -1, lock_fd = -1;
  bool foreground = false;
  auto began = std::chrono::steady_clock::now();
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    bool has_value = i + 1 < argc;
    if (a == "--spec" && has_value) spec_path = argv[++i];
    else if (a == "--ready-fd" && has_value) ready_fd = std::atoi(argv[++i]);
    else if (a == "--lock-fd" && has_value) lock_fd = std::atoi(argv[++i]);
    else if (a == "--began-ns" && has_value)
      began = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(std::strtoll(argv[++i], nullptr, 10)));
    else if (a == "--foreground") foreground = true;
    else return usage();
  }
  if (spec_path.empty()) return usage();

  std::ifstream in(spec_path);
  std::stringstream text;
  text << in.rdbuf();
  auto spec = flick::runner::RunSpec::from_json(text.str());
  if (!in || !spec) {
    std::string why = !in ? "cannot read " + spec_path : spec.error().describe();
    if (ready_fd >= 0) {
      std::string line = "error " + std::to_string(static_cast<int>(flick::Errc::malformed)) + " " + why + "\n";
      (void)!::write(ready_fd, line.data(), line.size());
    }
    std::fprintf(stderr, "flick-vmm: %s\n", why.c_str());
    return 1;
  }
  if (!foreground) {  // the monitor outlives whoever started it, in a session of its own
    pid_t pid = ::fork();
    if (pid < 0) return 1;
    if (pid > 0) return 0;
    ::setsid();
  }
  return flick::runner::run_monitor(*spec, ready_fd, lock_fd, began);
}
