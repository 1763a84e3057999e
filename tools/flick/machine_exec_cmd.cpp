// flick machine exec: runs a command in a started machine (Machine::exec), its output on this
// command's stdout and stderr, its exit status as this command's.
#include "command.h"
#include "shared.h"
#include "store_cmd.h"

#include <flick/machine.h>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <memory>
#include <string>

namespace flick::cli {

namespace {

constexpr int kExecFailed = 125;  // flick, not the command, failed (as `machine run`)

struct ExecOptions {
  HostOptions host;
  std::string app;
  std::string machine;
  ExecRequest request;
  bool json = false;
};

Result<std::string> read_stdin() {
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("reading stdin", errno);
    if (n == 0) return data;
    data.append(buf, static_cast<size_t>(n));
  }
}

int machine_exec(ExecOptions& o) {
  auto host = open_host(o.host);
  if (!host) return fail(host.error()), kExecFailed;
  const std::string scope = app_scope(o.app);
  if (auto a = check_app(**host, scope); !a) return fail(a.error()), kExecFailed;
  auto m = (*host)->get(o.machine, {}, scope);
  if (!m) return fail(m.error()), kExecFailed;
  if (!::isatty(STDIN_FILENO)) {
    auto in = read_stdin();
    if (!in) return fail(in.error()), kExecFailed;
    o.request.stdin_data = std::move(in).value();
  }
  Result<ExecResult> r = make_error(Errc::io, "");
  if (o.json) {
    r = (*m)->exec(o.request);
  } else {
    ExecOutput out;
    out.stdout_chunk = [](std::string_view s) { write_all(STDOUT_FILENO, s); };
    out.stderr_chunk = [](std::string_view s) { write_all(STDERR_FILENO, s); };
    r = (*m)->exec(o.request, out);
  }
  if (!r) return fail(r.error()), kExecFailed;
  if (o.json) {
    nlohmann::ordered_json j;  // Fly's exec response
    j["stdout"] = r->stdout_data;
    j["stderr"] = r->stderr_data;
    j["exit_code"] = r->exit_code;
    j["exit_signal"] = r->exit_signal;
    if (r->truncated) j["truncated"] = true;
    write_all(STDOUT_FILENO, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  }
  return r->exit_signal ? 128 + r->exit_signal : r->exit_code;
}

}  // namespace

void add_machine_exec_command(CLI::App& machine) {
  auto o = std::make_shared<ExecOptions>();
  auto* cmd = machine.add_subcommand("exec", "run a command in a started machine");
  cmd->footer(
      "Runs CMD beside the machine's program, as its user, in its working directory and with its\n"
      "environment unless told otherwise. Its stdout and stderr go to this command's; this\n"
      "command's stdin goes to it when stdin is not a terminal. Exits with CMD's exit code,\n"
      "128+N when signal N ended it, 125 when flick failed (a line on stderr). --json prints\n"
      "Fly's exec response instead: stdout, stderr (1 MiB each at most), exit_code, exit_signal.");
  // CMD as `machine run` takes it (machine_options.cpp): the rest of the line, unparsed.
  cmd->prefix_command();
  cmd->validate_positionals();
  cmd->add_option("ID", o->machine, "the machine: its id or name")->required()->type_name("");
  cmd->add_option("CMD")
      ->description("the program and its arguments")
      ->expected(1, CLI::detail::expected_max_vector_size)
      ->type_name("")
      ->check(CLI::Validator([](const std::string&) { return std::string("taken unparsed"); }, ""));
  add_value(
      *cmd, "--timeout", "DUR",
      [o](const std::string& v) {
        auto d = parse_duration(v);
        if (!d) usage_error("--timeout takes seconds or a duration (30s, 5m), not '" + v + "'");
        o->request.timeout = *d;
      },
      "kill CMD after this long (default 30s; 0: no limit)");
  add_values(
      *cmd, "-e,--env", "K=V",
      [o](const std::string& v) {
        auto eq = v.find('=');
        if (eq == std::string::npos || eq == 0) usage_error("--env takes K=V, not '" + v + "'");
        o->request.env[v.substr(0, eq)] = v.substr(eq + 1);
      },
      "set an environment variable (repeatable)");
  cmd->add_option("--user", o->request.user, "run as USER (name, uid, name:group or uid:gid)")->type_name("USER");
  cmd->add_option("--workdir", o->request.workdir, "working directory (absolute)")->type_name("DIR");
  add_json_flag(*cmd, &o->json);
  add_app_option(*cmd, &o->app);
  add_state_dir_option(*cmd, &o->host);
  cmd->parse_complete_callback([cmd, o] {
    auto rest = cmd->remaining();
    if (!rest.empty() && rest[0] == "--") rest.erase(rest.begin());
    else if (!rest.empty() && rest[0][0] == '-') usage_error("unknown option '" + rest[0] + "'");
    if (rest.empty()) usage_error("CMD is required: flick machine exec ID -- CMD [ARG...]");
    o->request.cmd = std::move(rest);
  });
  set_action(cmd, [o] { return machine_exec(*o); });
}

}  // namespace flick::cli
