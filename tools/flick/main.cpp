// flick: a thin command-line shell over the library.
#include "command.h"

#include <flick/version.h>

#include <cstdio>
#include <cstring>
#include <vector>

namespace flick::cli {

static std::vector<Command>& commands() {
  static std::vector<Command> c;
  return c;
}

bool register_command(Command cmd) {
  commands().push_back(cmd);
  return true;
}

}  // namespace flick::cli

static void usage(FILE* out) {
  std::fprintf(out, "usage: flick <command> [args...]\n\ncommands:\n");
  for (const auto& c : flick::cli::commands()) std::fprintf(out, "  %-8s %s\n", c.name, c.summary);
  std::fprintf(out, "  %-8s %s\n", "version", "print the version");
}

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "version") || !std::strcmp(argv[1], "--version")) {
    std::printf("flick %s\n", FLICK_VERSION_STRING);
    return 0;
  }
  for (const auto& c : flick::cli::commands())
    if (!std::strcmp(argv[1], c.name)) return c.run(argc - 1, argv + 1);
  std::fprintf(stderr, "flick: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
