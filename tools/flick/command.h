// Subcommands of the `flick` tool register themselves here; main() dispatches on argv[1].
#pragma once

#include <string_view>

namespace flick::cli {

// `argc/argv` start at the subcommand's own name (argv[0] == "vm", "image", ...).
using CommandFn = int (*)(int argc, char** argv);

struct Command {
  const char* name;
  const char* summary;
  CommandFn run;
};

// Registers a command at static-initialisation time; returns true.
bool register_command(Command cmd);

}  // namespace flick::cli

#define FLICK_COMMAND(name, summary, fn) \
  static const bool flick_registered_##fn = ::flick::cli::register_command({name, summary, fn})
