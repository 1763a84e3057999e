// IMAGE [CMD...] and the options that describe a machine (machine_options.h).
#include "machine_options.h"

#include "shared.h"
#include "store_cmd.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
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

namespace {

// One -p: the host's port, the guest's, and Fly's handlers for the connection.
struct PublishedPort {
  uint16_t port = 0;
  uint16_t internal = 0;
  std::vector<std::string> handlers;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  for (size_t start = 0;;) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

// -p PORT[:INTERNAL][/tcp[:HANDLER]...], as flyctl's (usage_error() otherwise).
PublishedPort parse_port(const std::string& spec) {
  const auto bad = [&spec](const std::string& why) { usage_error("--port " + spec + ": " + why); };
  const std::string syntax = "--port takes PORT[:INTERNAL][/tcp[:HANDLER]...], not '" + spec + "'";
  const size_t slash = spec.find('/');
  const auto ports = split(spec.substr(0, slash), ':');
  if (ports.size() > 2) usage_error(syntax);
  uint64_t n[2] = {0, 0};
  for (size_t i = 0; i < ports.size(); ++i) {
    const auto& p = ports[i];
    if (p.empty() || !std::all_of(p.begin(), p.end(), [](unsigned char ch) { return std::isdigit(ch); }))
      usage_error(syntax);
    if (!parse_uint(p, 65535, &n[i]) || n[i] == 0) bad(p + " is not in 1..65535");
  }
  PublishedPort out{static_cast<uint16_t>(n[0]), static_cast<uint16_t>(ports.size() > 1 ? n[1] : n[0]), {}};
  if (slash == std::string::npos) return out;
  auto proto = split(spec.substr(slash + 1), ':');  // the protocol, then the handlers
  if (proto[0] == "udp") bad("udp is not supported: flick's proxy speaks tcp only");
  if (proto[0] != "tcp") usage_error(syntax);
  for (size_t i = 1; i < proto.size(); ++i) {
    const auto& h = proto[i];
    if (h != "http" && h != "tls" && h != "pg_tls" && h != "proxy_proto")
      bad("'" + h + "' is not a handler: http, tls, pg_tls or proxy_proto");
    out.handlers.push_back(h);
  }
  return out;
}

// The -p given into c.services_json: see add_service_options(). services_json that is not an
// array is left for validate() to refuse.
void publish(const std::vector<PublishedPort>& given, MachineConfig& c) {
  using Json = nlohmann::ordered_json;
  Json services = c.services_json.empty() ? Json::array() : Json::parse(c.services_json, nullptr, false);
  if (!services.is_array()) return;
  std::vector<uint16_t> done;
  for (const auto& p : given) {
    if (std::find(done.begin(), done.end(), p.internal) != done.end()) continue;
    done.push_back(p.internal);
    Json ports = Json::array();
    for (const auto& q : given) {
      if (q.internal != p.internal) continue;
      Json port = {{"port", q.port}};
      if (!q.handlers.empty()) port["handlers"] = q.handlers;
      ports.push_back(std::move(port));
    }
    auto it = std::find_if(services.begin(), services.end(), [&p](const Json& s) {
      return s.is_object() && s.value("internal_port", Json()) == p.internal;
    });
    if (it != services.end()) (*it)["ports"] = std::move(ports);
    else services.push_back({{"protocol", "tcp"}, {"internal_port", p.internal}, {"ports", std::move(ports)}});
  }
  c.services_json = services.dump();
}

// Sets `field` of every service in c.services_json to `value`; `flag` names the option in the
// usage_error() for a config without services.
void set_every_service(MachineConfig& c, const char* flag, const char* field, const nlohmann::ordered_json& value) {
  auto services = nlohmann::ordered_json::parse(c.services_json.empty() ? "[]" : c.services_json, nullptr, false);
  if (!services.is_array()) return;  // validate() refuses it
  if (services.empty()) usage_error(std::string(flag) + ": the machine has no services: publish a port with -p");
  for (auto& s : services)
    if (s.is_object()) s[field] = value;
  c.services_json = services.dump();
}

// `name[=VALUE]`: a flag that takes a value only after '=', as flyctl's ("--autostop sh" leaves
// sh alone); alone, its value is "true". The last one given is handed to `take`.
void add_flag_value(CLI::App& cmd, const std::string& name, const std::string& value_name,
                    std::function<void(const std::string&)> take, const std::string& help) {
  cmd.add_option(
         name,
         [take = std::move(take)](const CLI::results_t& values) {
           take(values.back());
           return true;
         },
         help)
      ->expected(0)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->type_name(value_name);
}

}  // namespace

void add_service_options(CLI::App& cmd, const std::function<void(ConfigEdit)>& edit) {
  cmd.add_option_function<std::vector<std::string>>(
         "-p,--port",
         [edit](const std::vector<std::string>& specs) {
           std::vector<PublishedPort> given;
           for (const auto& spec : specs) given.push_back(parse_port(spec));
           edit([given](MachineConfig& c) { publish(given, c); });
         },
         "publish the guest's INTERNAL port (default PORT) on the host's PORT: Fly's services, one per internal "
         "port (repeatable; HANDLERs http, tls, pg_tls and proxy_proto are kept, not acted on)")
      ->type_name("PORT[:INTERNAL][/tcp[:HANDLER]...]")
      ->allow_extra_args(false);
  add_flag_value(
      cmd, "--autostart", "[=true|false]",
      [edit](const std::string& v) {
        if (v != "true" && v != "false") usage_error("--autostart takes true or false, not '" + v + "'");
        edit([on = v == "true"](MachineConfig& c) { set_every_service(c, "--autostart", "autostart", on); });
      },
      "a connection starts (or resumes) the machine: every service's autostart (alone: true)");
  add_flag_value(
      cmd, "--autostop", "[=off|stop|suspend]",
      [edit](const std::string& v) {
        const std::string mode = v == "true" ? "stop" : v == "false" ? "off" : v;  // as Fly's JSON
        if (mode != "off" && mode != "stop" && mode != "suspend")
          usage_error("--autostop takes off, stop or suspend, not '" + v + "'");
        edit([mode](MachineConfig& c) { set_every_service(c, "--autostop", "autostop", mode); });
      },
      "what is done to the machine when idle: every service's autostop (alone: stop)");
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
  add_service_options(cmd, [&c](const ConfigEdit& e) { e(c); });
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
