// IMAGE [CMD...] and the options that describe a machine (machine_options.h).
#include "machine_options.h"

#include "shared.h"
#include "store_cmd.h"

#include <cstdio>
#include <fstream>
#include <iterator>

namespace flick::cli {

// --restart no|always|on-failure[:MAX_RETRIES]
void parse_restart(const std::string& p, RestartConfig* r) {
  uint64_t n = 0;
  if (p == "no") {
    r->policy = RestartPolicy::no;
  } else if (p == "always") {
    r->policy = RestartPolicy::always;
  } else if (p.rfind("on-failure", 0) == 0) {
    r->policy = RestartPolicy::on_failure;
    if (p.size() > 10 && (p[10] != ':' || !parse_uint(p.substr(11), 1000, &n)))
      usage_error("--restart on-failure takes :MAX_RETRIES (0 to 1000), not '" + p + "'");
    if (p.size() > 10) r->max_retries = static_cast<uint32_t>(n);
  } else {
    usage_error("--restart takes no, always or on-failure[:N], not '" + p + "'");
  }
}

void parse_metadata(const std::string& kv, MachineConfig* c) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) usage_error("--metadata takes K=V, not '" + kv + "'");
  c->metadata[kv.substr(0, eq)] = kv.substr(eq + 1);
}

MachineConfig read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) usage_error("--config: cannot read " + path);
  std::string text{std::istreambuf_iterator<char>(in), {}};
  std::vector<std::string> warnings;
  auto c = MachineConfig::from_json(text, &warnings);
  if (!c) usage_error("--config " + path + ": " + c.error().message);
  for (const auto& w : warnings) std::fprintf(stderr, "flick: %s: %s\n", path.c_str(), w.c_str());
  return std::move(c).value();
}

void add_machine_options(CLI::App& cmd, MachineOptions& o) {
  MachineConfig& c = o.config;
  // CMD. The first argument after IMAGE that is not an option ends CLI11's parse of this
  // command (a prefix command): it and the rest of the line are left, unparsed, in remaining(),
  // so CMD may have options of its own. The CMD positional never takes a value (its check
  // refuses every one, and validate_positionals() makes CLI11 pass over it); it names CMD in
  // --help and keeps a "--" after IMAGE inside this command, where CLI11 would otherwise hand
  // the rest of the line back to `flick machine`, having no positional left to fill.
  cmd.prefix_command();
  cmd.validate_positionals();
  cmd.add_option("IMAGE", c.image, "the image: busybox, localhost:5000/app:1, oci:DIR[:TAG], ...")
      ->required()
      ->type_name("");
  cmd.add_option("CMD")
      ->description("the program and its arguments (default: the image's)")
      ->expected(1, CLI::detail::expected_max_vector_size)
      ->type_name("")
      ->check(CLI::Validator([](const std::string&) { return std::string("taken unparsed"); }, ""));

  // Before the other options: CLI11 applies options in the order they are added, so the
  // flags given beside --config override its fields (IMAGE, given first, is kept).
  add_value(
      cmd, "--config", "FILE",
      [&c](const std::string& path) {
        std::string image = c.image;
        c = read_config_file(path);
        if (!image.empty()) c.image = image;
      },
      "a machine config in Fly's JSON (as the Machines API's `config`); the options given override it");
  add_number(cmd, "--cpus", "N", &c.guest.cpus, 1, 254, "1 to 254", "vCPUs (default 1)");
  add_number(cmd, "--memory", "MB", &c.guest.memory_mb, 0, 1u << 20, "megabytes", "guest memory (default 256)");
  add_number(cmd, "--rootfs-size", "MB", &c.guest.rootfs_size_mb, 0, 1u << 20, "megabytes",
             "the root filesystem's size (default: the image's content plus 256 MB)");
  add_values(
      cmd, "-e,--env", "K=V",
      [&c](const std::string& v) {
        auto eq = v.find('=');
        if (eq == std::string::npos) usage_error("--env takes K=V, not '" + v + "'");
        c.env[v.substr(0, eq)] = v.substr(eq + 1);
      },
      "set an environment variable (repeatable)");
  add_values(
      cmd, "-v,--volume", "VOL:/PATH",
      [&c](const std::string& v) {
        auto colon = v.find(':');
        if (colon == std::string::npos) usage_error("--volume takes VOL:/PATH, not '" + v + "'");
        c.mounts.push_back({v.substr(0, colon), v.substr(colon + 1)});
      },
      "mount volume VOL (a name or id) at PATH, creating it (1 GB) if needed (repeatable)");
  add_values(
      cmd, "--metadata", "K=V", [&c](const std::string& v) { parse_metadata(v, &c); },
      "set a metadata key, which the guest reads in /flick/metadata.json (repeatable)");
  cmd.add_option("--user", c.init.user, "run as USER (name, uid, name:group or uid:gid)")->type_name("USER");
  cmd.add_option("--workdir", c.init.workdir, "working directory")->type_name("DIR");
  add_value(
      cmd, "--entrypoint", "PROG", [&c](const std::string& v) { c.init.entrypoint = {v}; },
      "replace the image's entrypoint");
  add_value(
      cmd, "--restart", "POLICY", [&c](const std::string& v) { parse_restart(v, &c.restart); },
      "no (default), always, on-failure[:MAX_RETRIES]");
  add_number(cmd, "--stop-signal", "N", &c.stop_config.signal, 1, 64, "1 to 64",
             "signal stop() sends first (default 2, SIGINT)");
  add_value(
      cmd, "--stop-timeout", "SECONDS",
      [&c](const std::string& v) {
        uint64_t n = 0;
        if (!parse_uint(v, 86400, &n)) usage_error("--stop-timeout takes seconds, not '" + v + "'");
        c.stop_config.timeout = std::chrono::seconds(n);
      },
      "then SIGKILL after this long (default 5)");
  add_value(
      cmd, "--start-timeout", "SECONDS",
      [&c](const std::string& v) {
        uint64_t n = 0;
        if (!parse_uint(v, 86400, &n) || n == 0) usage_error("--start-timeout takes seconds, not '" + v + "'");
        c.start_timeout = std::chrono::seconds(n);
      },
      "fail if the program has not started by then (default 60)");
  cmd.add_flag("--rm", o.rm, "destroy the machine when it stops");
  cmd.add_flag("--no-network", o.no_network, "no link to the host (default: one when flick may create TAPs)");
  cmd.add_option("--name", o.name, "the machine's name, unique in its app (default: its id)")->type_name("NAME");
  add_app_option(cmd, &o.app);
  cmd.add_option("--kernel", o.host.kernel, "guest kernel (bzImage, vmlinux or an unpacked kernel package)")
      ->type_name("PATH");
  cmd.add_option("--kernel-modules", o.host.kernel_modules, "its lib/modules/<release>")->type_name("DIR");
  add_values(
      cmd, "--kernel-arg", "ARG", [&c](const std::string& v) { c.guest.kernel_args.push_back(v); },
      "append to the kernel command line (repeatable)");
  add_state_dir_option(cmd, &o.host);
  add_pull_policy(cmd, &c.pull, "missing");

  // After the options: CMD is what CLI11 left, less the "--" that began it. A word it left
  // that looks like an option came before CMD, so it is one flick does not know.
  cmd.parse_complete_callback([&cmd, &c] {
    auto rest = cmd.remaining();
    if (!rest.empty() && rest[0] == "--") {
      rest.erase(rest.begin());
    } else if (!rest.empty() && rest[0][0] == '-') {
      usage_error("unknown option '" + rest[0] + "'");
    }
    if (!rest.empty()) c.init.cmd = std::move(rest);  // else --config's, if any
    if (auto valid = c.validate(); !valid) usage_error(valid.error().message);
  });
}

Result<void> check_image(Host& host, const MachineConfig& config) {
  if (config.mounts.empty()) return {};
  PullOptions p;
  p.policy = config.pull;
  if (auto r = host.images().rootfs(config.image, {}, p); !r) return std::move(r).error().with_context("image " + config.image);
  return {};
}

Result<void> ensure_volumes(Host& host, const MachineConfig& c, const std::string& app) {
  auto existing = host.list_volumes(app);
  if (!existing) return std::move(existing).error();
  for (const auto& m : c.mounts) {
    bool found = false;
    for (const auto& v : *existing) found = found || v.name == m.volume || v.id == m.volume;
    if (found) continue;
    auto made = host.create_volume({m.volume, 1, app});
    if (!made && made.error().code != Errc::exists) return std::move(made).error();
    if (made) {
      std::fprintf(stderr, "flick: created volume %s (%s, 1 GB)\n", m.volume.c_str(), made->id.c_str());
      existing->push_back(*made);
    }
  }
  return {};
}

}  // namespace flick::cli
