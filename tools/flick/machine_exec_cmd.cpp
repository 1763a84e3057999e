// flick machine exec: runs a command in a started machine (Machine::exec), its output on this
// command's stdout and stderr, its exit status as this command's.
#include "command.h"
#include "machines.h"
#include "shared.h"
#include "store_cmd.h"

#include <flick/machine.h>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <tuple>

namespace flick::cli {

namespace {

constexpr int kExecFailed = 125;  // flick, not the command, failed (as `machine run`)

struct ExecOptions {
  HostOptions host;
  std::string app;
  std::string machine;
  std::string lease_nonce;
  ExecRequest request;
  bool json = false;
  bool interactive = false;
  bool tty = false;
  bool timeout_given = false;
};

// The terminal in raw mode while it lives (keys go to the guest's terminal as typed).
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (::tcgetattr(fd_, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(fd_, TCSADRAIN, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSADRAIN, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

int resize_pipe[2] = {-1, -1};  // SIGWINCH -> exec's resize_fd

void on_winch(int) {
  int saved = errno;
  ssize_t ignored = ::write(resize_pipe[1], "w", 1);
  (void)ignored;
  errno = saved;
}

std::pair<uint16_t, uint16_t> window_size() {
  winsize ws{};
  for (int fd : {STDIN_FILENO, STDOUT_FILENO})
    if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) break;
  return {ws.ws_row, ws.ws_col};
}

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

// The command's exit status (128+N for signal N), or kExecFailed; with `json`, Fly's exec
// response printed first.
int exec_ended(const Result<ExecResult>& r, bool json) {
  if (!r) return fail(r.error()), kExecFailed;
  if (json) {
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

// Runs o.request in `m` as o says; the command's exit status, or kExecFailed.
int run_exec(Machine& m, ExecOptions& o) {
  if (!o.interactive && !::isatty(STDIN_FILENO)) {
    auto in = read_stdin();
    if (!in) return fail(in.error()), kExecFailed;
    o.request.stdin_data = std::move(in).value();
  }
  // An interactive command runs until it ends, unless told otherwise.
  if ((o.interactive || o.tty) && !o.timeout_given) o.request.timeout = std::chrono::milliseconds(0);
  std::optional<RawTerminal> raw;
  ExecOutput out;
  out.stdout_chunk = [](std::string_view s) { write_all(STDOUT_FILENO, s); };
  out.stderr_chunk = [](std::string_view s) { write_all(STDERR_FILENO, s); };
  if (o.interactive) out.stdin_fd = STDIN_FILENO;
  if (o.tty) {
    o.request.tty = true;
    std::tie(o.request.rows, o.request.cols) = window_size();
    if (const char* term = std::getenv("TERM"); term && *term && !o.request.env.count("TERM")) o.request.env["TERM"] = term;
    if (::pipe2(resize_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
      struct sigaction sa {};
      sa.sa_handler = on_winch;
      sa.sa_flags = SA_RESTART;
      ::sigaction(SIGWINCH, &sa, nullptr);
      out.resize_fd = resize_pipe[0];
      out.window_size = window_size;
    }
    if (o.interactive && ::isatty(STDIN_FILENO)) raw.emplace(STDIN_FILENO);
  }
  Result<ExecResult> r = o.json ? m.exec(o.request) : m.exec(o.request, out);
  raw.reset();
  return exec_ended(r, o.json);
}

// Through flickd (--api): Fly's exec, which takes its stdin whole and answers with all the
// output once the command has ended.
int run_remote_exec(MachineRef& m, ExecOptions& o) {
  if (o.interactive || o.tty)
    return fail("flick machine exec -i/-t: not available with --api (flickd's exec is not interactive)"), kExecFailed;
  if (!::isatty(STDIN_FILENO)) {
    auto in = read_stdin();
    if (!in) return fail(in.error()), kExecFailed;
    o.request.stdin_data = std::move(in).value();
  }
  auto r = m.exec(o.request);
  if (r && !o.json) {
    write_all(STDOUT_FILENO, r->stdout_data);
    write_all(STDERR_FILENO, r->stderr_data);
  }
  return exec_ended(r, o.json);
}

int machine_exec(ExecOptions& o) {
  auto machines = open_machines(o.host);
  if (!machines) return fail(machines.error()), kExecFailed;
  auto m = (*machines)->get(o.machine, app_scope(o.app));
  if (!m) return fail(m.error()), kExecFailed;
  (*m)->set_lease_nonce(o.lease_nonce);
  if (Machine* local = (*m)->local()) return run_exec(*local, o);
  return run_remote_exec(**m, o);
}

}  // namespace

int exec_shell(Machine& m, std::vector<std::string> cmd) {
  ExecOptions o;
  o.request.cmd = std::move(cmd);
  o.interactive = o.tty = true;
  return run_exec(m, o);
}

void add_machine_exec_command(CLI::App& machine) {
  auto o = std::make_shared<ExecOptions>();
  auto* cmd = machine.add_subcommand("exec", "run a command in a started machine");
  cmd->footer(
      "Runs CMD beside the machine's program, as its user, in its working directory and with its\n"
      "environment unless told otherwise. Its stdout and stderr go to this command's; this\n"
      "command's stdin goes to it when stdin is not a terminal. Exits with CMD's exit code,\n"
      "128+N when signal N ended it, 125 when flick failed (a line on stderr). --json prints\n"
      "Fly's exec response instead: stdout, stderr (1 MiB each at most), exit_code, exit_signal.\n"
      "-it gives an interactive shell: flick machine exec -it ID -- sh");
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
        o->timeout_given = true;
      },
      "kill CMD after this long (default 30s, none with -i or -t; 0: no limit)");
  cmd->add_flag("-i,--interactive", o->interactive, "pass stdin as it comes (default: all of it first, unless a terminal)");
  cmd->add_flag("-t,--tty", o->tty,
                "give CMD a terminal (stderr comes with stdout); with -i on a terminal, flick's is put in raw mode "
                "and its size followed: flick machine exec -it ID -- sh");
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
  add_lease_nonce_option(*cmd, &o->lease_nonce);
  add_app_option(*cmd, &o->app);
  add_state_dir_option(*cmd, &o->host);
  cmd->parse_complete_callback([cmd, o] {
    auto rest = cmd->remaining();
    if (!rest.empty() && rest[0] == "--") rest.erase(rest.begin());
    else if (!rest.empty() && rest[0][0] == '-') usage_error("unknown option '" + rest[0] + "'");
    if (rest.empty()) usage_error("CMD is required: flick machine exec ID -- CMD [ARG...]");
    o->request.cmd = std::move(rest);
  });
  works_through_api(cmd);
  set_action(cmd, [o] { return machine_exec(*o); });

  auto c = std::make_shared<ExecOptions>();
  auto* console = machine.add_subcommand("console", "an interactive shell in a started machine");
  console->footer("The same as flick machine exec -it ID -- /bin/sh: exits with the shell's status.");
  console->add_option("ID", c->machine, "the machine: its id or name")->required()->type_name("");
  console->add_option("--user", c->request.user, "run as USER (name, uid, name:group or uid:gid)")->type_name("USER");
  add_app_option(*console, &c->app);
  add_state_dir_option(*console, &c->host);
  set_action(console, [c] {
    c->request.cmd = {"/bin/sh"};
    c->interactive = c->tty = true;
    return machine_exec(*c);
  });
}

}  // namespace flick::cli
